from django.apps import AppConfig


class PlanConfig(AppConfig):
    name = "portal.plan"
    label = "plan"
    verbose_name = "Infrastructure plan"
