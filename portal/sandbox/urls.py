"""The drills page's routes, kept under /environments/ and the `cloud` namespace (portal/urls.py adds them)."""

from django.urls import path

from portal.sandbox import views

drill_patterns = [
    path("drills/", views.drills, name="drills"),
    path("drills/start/", views.drill_start_view, name="drill_start"),
    path("drills/stop-all/", views.drills_stop_all, name="drills_stop_all"),
    path("drills/<uuid:public_id>/stop/", views.drill_stop_view, name="drill_stop"),
]

# /sandbox/ pages (portal/urls.py adds them when the sandbox is installed).
sandbox_patterns = [
    path("messages/", views.messages_page, name="messages"),
    path("messages/<int:pk>/answer/", views.message_answer, name="message_answer"),
]
