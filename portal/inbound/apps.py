from django.apps import AppConfig


class InboundConfig(AppConfig):
    """Answers to pages from where the person is: Twilio (SMS, voice), email links, Slack."""

    name = "portal.inbound"
    label = "inbound"
    verbose_name = "Inbound answers"

    def ready(self) -> None:
        # Celery's autodiscovery imports `tasks.py` only; the Slack tasks live in slack_tasks.py. Imported
        # here (app loading: the models must be ready first) so web and worker processes register them.
        from portal.inbound import slack_tasks  # noqa: F401
