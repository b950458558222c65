from django.apps import AppConfig


class HeartbeatsConfig(AppConfig):
    name = "portal.heartbeats"
    label = "heartbeats"
    verbose_name = "Heartbeats"
