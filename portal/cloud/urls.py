from django.urls import path

from portal.cloud import views

app_name = "cloud"
urlpatterns = [
    path("", views.environment_list, name="list"),
    path("new/", views.environment_new, name="new"),
    path("drift-for/<slug:slug>/", views.checklist_item_drift, name="drift_item"),
    path("<slug:name>/", views.environment_detail_view, name="detail"),
    path("<slug:name>/live/", views.environment_live, name="live"),
    path("<slug:name>/drift/", views.environment_drift_view, name="drift"),
    path("<slug:name>/edit/", views.environment_edit, name="edit"),
]
