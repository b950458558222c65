from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """The local AWS sandbox (moto, the platform, the traffic simulator, drills, fake status pages).

    It stands above the product: it imports portal.cloud and portal.health, never the other way round.
    Installed when settings.SANDBOX_ENABLED (everywhere but production by default).
    """

    name = "portal.sandbox"
    label = "sandbox"

    def ready(self) -> None:
        # Imported here: the thresholds module loads models, which the app registry allows only now.
        from portal.health import thresholds

        # The product names no sandbox task: the sandbox asks to hear threshold changes and is listed as a reader.
        thresholds.listen("portal.sandbox.tasks.alarms_sync", thresholds.Reader(
            "Sandbox CloudWatch alarms", "portal.sandbox.platform",
            "one alarm per threshold, put again when a threshold changes; the simulator fires them at these values"))
        thresholds.listen("portal.sandbox.tasks.prometheus_rules_sync", thresholds.Reader(
            "Sandbox Prometheus rules", "portal.sandbox.prometheus",
            "the exported rules file, written again and reloaded when a threshold changes (when Prometheus is installed)"))
