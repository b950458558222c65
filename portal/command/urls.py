from django.urls import path

from portal.command import views

app_name = "command"

urlpatterns = [
    path("declare/", views.declare, name="declare"),
    path("panel/", views.panel, name="panel"),
    path("action-items/", views.action_items, name="action_items"),
    path("action-items/<uuid:item_id>/state/", views.action_state, name="action_state"),
    path("incidents/<uuid:public_id>/", views.incident, name="incident"),
    path("incidents/<uuid:public_id>/roles/<slug:role>/take/", views.role_take, name="role_take"),
    path("incidents/<uuid:public_id>/sev/", views.sev_change, name="sev_change"),
    path("incidents/<uuid:public_id>/promote/", views.promote, name="promote"),
    path("incidents/<uuid:public_id>/merge/", views.merge, name="merge"),
    path("incidents/<uuid:public_id>/updates/", views.update_post, name="update_post"),
    path("incidents/<uuid:public_id>/subscribers/", views.subscriber_add, name="subscriber_add"),
    path("incidents/<uuid:public_id>/review/", views.review, name="review"),
    path("incidents/<uuid:public_id>/review.md", views.review_markdown, name="review_markdown"),
    path("incidents/<uuid:public_id>/review/print/", views.review_print, name="review_print"),
    path("incidents/<uuid:public_id>/actions/", views.action_add, name="action_add"),
]

# Mounted at /status/ by portal/urls.py (namespace "status").
status_patterns = [
    path("", views.status_staff, name="staff"),
    path("public/", views.status_public, name="public"),
]
