from django.core.management.base import BaseCommand, CommandError

from portal.accounts.models import TokenScope
from portal.accounts.services import AccountError, api_token_create, expiry_in_days


class Command(BaseCommand):
    help = "Create an API token; the token is printed once and stored hashed."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument("--scope", required=True, choices=TokenScope.values)
        parser.add_argument("--expires-days", type=int, default=None, help="the token gets 401 after this many days")
        parser.add_argument("--environment", action="append", default=[], metavar="NAME",
                            help="a production environment an actions or lead token may change (repeatable)")

    def handle(self, *args, name, scope, expires_days=None, environment=(), **options):
        try:
            _, raw = api_token_create(name=name, scope=scope, expires_at=expiry_in_days(expires_days),
                                      environments=environment)
        except AccountError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(raw)
