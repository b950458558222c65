from django.apps import AppConfig


class ChecklistConfig(AppConfig):
    name = "portal.checklist"
    label = "checklist"
