from django.urls import path

from portal.cloud import views

app_name = "cloud"
urlpatterns = [
    path("", views.environment_list, name="list"),
    path("new/", views.environment_new, name="new"),
    path("drills/", views.drills, name="drills"),
    path("drills/start/", views.drill_start_view, name="drill_start"),
    path("drills/stop-all/", views.drills_stop_all, name="drills_stop_all"),
    path("drills/<uuid:public_id>/stop/", views.drill_stop_view, name="drill_stop"),
    path("<slug:name>/", views.environment_detail_view, name="detail"),
    path("<slug:name>/live/", views.environment_live, name="live"),
    path("<slug:name>/edit/", views.environment_edit, name="edit"),
]
