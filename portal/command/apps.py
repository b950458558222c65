from django.apps import AppConfig


class CommandConfig(AppConfig):
    name = "portal.command"
    label = "command"
    verbose_name = "Incident command"
