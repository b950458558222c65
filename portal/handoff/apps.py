from django.apps import AppConfig


class HandoffConfig(AppConfig):
    name = "portal.handoff"
    label = "handoff"
    verbose_name = "Shift handoff"
