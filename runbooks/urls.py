from django.urls import path

from runbooks import views

app_name = "runbooks"

urlpatterns = [
    path("", views.library, name="library"),
    path("runs/<uuid:public_id>/", views.run_page, name="run"),
    path("runs/<uuid:public_id>/body/", views.run_body, name="run_body"),
    path("runs/<uuid:public_id>/export.md", views.run_export, name="run_export"),
    path("runs/<uuid:public_id>/abandon/", views.run_abandon, name="run_abandon"),
    path("runs/<uuid:public_id>/steps/<slug:step_id>/", views.step_record, name="step_record"),
    path("runs/<uuid:public_id>/steps/<slug:step_id>/check/", views.step_check, name="step_check"),
    path("runs/<uuid:public_id>/steps/<slug:step_id>/action/", views.step_action, name="step_action"),
    path("runs/<uuid:public_id>/steps/<slug:step_id>/escalate/", views.step_escalate, name="step_escalate"),
    path("incidents/<uuid:incident_id>/runs/", views.incident_runs, name="incident_runs"),
    path("<slug:slug>/", views.detail, name="detail"),
    path("<slug:slug>/start/", views.start, name="start"),
]
