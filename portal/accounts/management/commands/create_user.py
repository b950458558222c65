import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from portal.accounts.roles import ROLES
from portal.accounts.services import AccountError, user_create_or_update


class Command(BaseCommand):
    help = "Create (or update) a portal user with one role. Password from --password or PORTAL_PASSWORD."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", required=True, choices=ROLES)
        parser.add_argument("--password", help="defaults to the PORTAL_PASSWORD environment variable")
        parser.add_argument("--email", default="")

    def handle(self, *args, username, role, password=None, email="", **options):
        password = password or os.environ.get("PORTAL_PASSWORD")
        if not password:
            raise CommandError("give the password with --password or the PORTAL_PASSWORD environment variable")
        try:
            _, created = user_create_or_update(username=username, role=role, password=password, email=email)
        except ValidationError as exc:
            raise CommandError("password rejected: " + " ".join(exc.messages)) from exc
        except AccountError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"{'created' if created else 'updated'} user {username} with role {role}")
