from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "portal.health"
    label = "health"

    def ready(self) -> None:
        from portal.health.metrics import scrape
        from portal.metrics import register_scrape_hook

        register_scrape_hook(scrape)
