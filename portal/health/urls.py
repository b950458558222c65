from django.urls import path

from portal.health import views

app_name = "health"

urlpatterns = [
    path("", views.index, name="index"),
    path("grid/", views.grid, name="grid"),
    path("panel/", views.panel, name="panel"),
    path("slo-panel/", views.slo_panel, name="slo_panel"),
    path("thresholds/", views.thresholds, name="thresholds"),
    path("thresholds/<slug:slug>/", views.threshold_update, name="threshold_update"),
    path("checks/<slug:slug>/", views.check_detail, name="check"),
    path("checks/<slug:slug>/run/", views.check_run_now, name="run_now"),
    path("checks/<slug:slug>/enabled/", views.check_set_enabled, name="set_enabled"),
]
