from django.apps import AppConfig


class PhasesConfig(AppConfig):
    name = "portal.phases"
    label = "phases"
