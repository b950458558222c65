from django.urls import path

from portal.incidents import views

app_name = "incidents"

urlpatterns = [
    path("", views.incident_list, name="list"),
    path("panel/", views.panel, name="panel"),
    path("rejected/", views.rejected_deliveries, name="rejected"),
    path("bulk/", views.incident_bulk, name="bulk"),
    path("silences/", views.silence_list, name="silences"),
    path("silences/new/", views.silence_create, name="silence_create"),
    path("silences/<uuid:public_id>/delete/", views.silence_delete, name="silence_delete"),
    path("silences/banner/", views.silence_banner, name="silence_banner"),
    path("maintenance/new/", views.maintenance_create, name="maintenance_create"),
    path("maintenance/<uuid:public_id>/delete/", views.maintenance_delete, name="maintenance_delete"),
    path("grouping/", views.grouping_rules, name="grouping"),
    path("<uuid:public_id>/", views.incident_detail, name="detail"),
    path("<uuid:public_id>/live/", views.incident_live, name="live"),
    path("<uuid:public_id>/causes/", views.incident_causes, name="causes"),
    path("<uuid:public_id>/changes/", views.incident_changes, name="changes"),
    path("<uuid:public_id>/signal.json", views.incident_signal, name="signal"),
    path("<uuid:public_id>/timeline/", views.incident_timeline, name="timeline"),
    path("<uuid:public_id>/export.md", views.incident_export, name="export"),
    path("<uuid:public_id>/acknowledge/", views.incident_acknowledge, name="acknowledge"),
    path("<uuid:public_id>/resolve/", views.incident_resolve, name="resolve"),
    path("<uuid:public_id>/reopen/", views.incident_reopen, name="reopen"),
    path("<uuid:public_id>/assign/", views.incident_assign, name="assign"),
    path("<uuid:public_id>/notes/", views.incident_note, name="note"),
    path("<uuid:public_id>/postmortem/", views.incident_postmortem, name="postmortem"),
]
