from django.urls import path

from portal.handoff import views

app_name = "handoff"
urlpatterns = [
    path("", views.panel, name="panel"),  # the partial /oncall/ loads
    path("notes/", views.note_write, name="note_write"),
]
