from django.apps import AppConfig


class RunbooksConfig(AppConfig):
    name = "runbooks"
    label = "runbooks"
