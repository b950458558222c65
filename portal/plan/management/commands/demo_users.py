import json
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from portal.accounts.roles import ROLES
from portal.accounts.services import user_create_or_update
from portal.oncall.seed import seed_demo_rotation


class Command(BaseCommand):
    help = "Create one demo user per role (viewer, responder, lead, admin) and print the logins. Not in production."

    def handle(self, *args, **options):
        if settings.PRODUCTION:
            raise CommandError("demo users are never created in production")
        path = settings.DATA_DIR / "demo-logins.json"
        logins = json.loads(path.read_text()) if path.exists() else {}
        for role in ROLES:
            username = f"demo-{role}"
            password = logins.get(username) or f"{role}-{secrets.token_urlsafe(9)}"
            user_create_or_update(username=username, role=role, password=password, validate=False)
            logins[username] = password
        seed_demo_rotation([f"demo-{role}" for role in ROLES if role != "viewer"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(logins, indent=2))
        path.chmod(0o600)
        self.stdout.write(f"Demo logins (also in {path}):")
        for username, password in logins.items():
            self.stdout.write(f"  {username:16} {password}")
