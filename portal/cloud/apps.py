from django.apps import AppConfig


class CloudConfig(AppConfig):
    name = "portal.cloud"
    label = "cloud"

    def ready(self) -> None:
        # Worker processes build their AWS clients when they start (the signal handlers live there).
        import portal.warmup  # noqa: F401
