from django.urls import path

from deployments import views, views_freezes, views_templates

app_name = "deployments"

urlpatterns = [
    path("", views.index, name="index"),
    path("live/", views.live, name="live"),
    path("panel/", views.panel, name="panel"),
    path("banner/", views.banner, name="banner"),
    path("chart.json", views.chart_data, name="chart"),
    path("new/", views.create, name="create"),
    path("rollback/", views.rollback, name="rollback"),
    path("scale/", views.scale, name="scale"),
    path("scale/<uuid:public_id>/approve/", views.approve_scale, name="approve_scale"),
    path("automation/", views.automation, name="automation"),
    path("images/", views.images, name="images"),
    path("rds-failover/", views.rds_failover, name="rds_failover"),
    path("freezes/", views_freezes.index, name="freezes"),
    path("freezes/new/", views_freezes.create, name="freeze_create"),
    path("freezes/<uuid:public_id>/lift/", views_freezes.lift, name="freeze_lift"),
    path("dora/", views_freezes.dora_partial, name="dora"),
    path("templates/", views_templates.templates, name="templates"),
    path("<uuid:public_id>/", views.detail, name="detail"),
    path("<uuid:public_id>/<str:action>/", views.control, name="control"),
]
