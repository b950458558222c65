from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from portal.errors import PortalError
from portal.oncall.models import ContactKind
from portal.oncall.services import contact_method_add


class Command(BaseCommand):
    help = "Register a person's contact method: contact_method add <username> <email|sms|voice|slack> <value> [--verified]"

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="add a contact method (unverified ones are sent a code)")
        add.add_argument("username")
        add.add_argument("kind", choices=ContactKind.values)
        add.add_argument("value")
        add.add_argument("--verified", action="store_true", help="mark it verified (setup scripts; no code is sent)")

    def handle(self, *args, action, username, kind, value, verified=False, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user {username!r}")
        try:
            method = contact_method_add(user=user, kind=kind, value=value, verified=verified, actor="system:contact_method")
        except PortalError as exc:
            raise CommandError(exc.detail) from exc
        state = "verified" if method.is_verified else "unverified: a code was sent"
        self.stdout.write(f"{username}: {method} ({state})")
