from django.urls import path

from portal.heartbeats import views

app_name = "heartbeats"
urlpatterns = [
    path("", views.heartbeat_list, name="list"),
    path("<slug:slug>/pause/", views.pause, name="pause"),
    path("<slug:slug>/resume/", views.resume, name="resume"),
    path("<slug:slug>/token/", views.token_reset, name="token"),
]
