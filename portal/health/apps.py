from django.apps import AppConfig


class HealthConfig(AppConfig):
    name = "portal.health"
    label = "health"

    def ready(self) -> None:
        # Inside ready(): metrics.py imports the models, which cannot load before the app registry does.
        from portal.health.metrics import scrape
        from portal.metrics import register_scrape_hook

        register_scrape_hook(scrape)
