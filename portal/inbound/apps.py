from django.apps import AppConfig


class InboundConfig(AppConfig):
    """Answers to pages from where the person is: Twilio (SMS, voice), email links, Slack."""

    name = "portal.inbound"
    label = "inbound"
    verbose_name = "Inbound answers"
