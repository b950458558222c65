from django.core.management.base import BaseCommand, CommandError

from portal.accounts.models import TokenScope
from portal.accounts.services import AccountError, api_token_create


class Command(BaseCommand):
    help = "Create an API token; the token is printed once and stored hashed."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--scope", required=True, choices=TokenScope.values)

    def handle(self, *args, name, scope, **options):
        try:
            _, raw = api_token_create(name=name, scope=scope)
        except AccountError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(raw)
