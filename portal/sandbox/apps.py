from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """The local AWS sandbox (moto, the platform, the traffic simulator, drills, fake status pages).

    It stands above the product: it imports portal.cloud and portal.health, never the other way round.
    Installed when settings.SANDBOX_ENABLED (everywhere but production by default).
    """

    name = "portal.sandbox"
    label = "sandbox"
