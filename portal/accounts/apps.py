from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "portal.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        # Imported here, not at the top: these modules use the models, which exist only once apps are loaded.
        from portal.accounts import reauth  # noqa: F401  (connects the login-time receiver)
        from portal.accounts.roles import ensure_roles

        # Groups and their permissions must exist after every migrate (fresh DBs, test DBs).
        post_migrate.connect(lambda **kw: ensure_roles(), sender=self, weak=False, dispatch_uid="ensure_roles")
