from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    """Outgoing webhooks: signed JSON events to URLs a lead registers (chat, ticketing, status tools)."""

    name = "portal.webhooks"
    label = "webhooks"
    verbose_name = "Outgoing webhooks"
    default_auto_field = "django.db.models.BigAutoField"
