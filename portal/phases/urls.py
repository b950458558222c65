from django.urls import path

from portal.phases import views

app_name = "phases"
urlpatterns = [
    path("", views.page, name="page"),
    path("panel/", views.panel, name="panel"),
    path("move/", views.move, name="move"),
    path("users/", views.enter_users, name="enter_users"),
    path("range-scope/", views.range_scope, name="range_scope"),
    path("<slug:slug>/focus/<int:position>/", views.focus, name="focus"),
    path("charts/users.json", views.chart_users, name="chart_users"),
    path("charts/instances.json", views.chart_instances, name="chart_instances"),
    path("charts/cost.json", views.chart_cost, name="chart_cost"),
]
