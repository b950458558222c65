from django.urls import path

from portal.webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("", views.webhook_list, name="list"),
    path("new/", views.webhook_create, name="create"),
    path("<uuid:public_id>/enabled/", views.webhook_enable, name="enable"),
    path("<uuid:public_id>/delete/", views.webhook_delete, name="delete"),
]
