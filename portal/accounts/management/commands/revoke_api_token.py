from django.core.management.base import BaseCommand, CommandError

from portal.accounts.models import ApiToken
from portal.accounts.services import api_token_revoke


class Command(BaseCommand):
    help = "Revoke an API token by name: its next call gets 401."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        token = ApiToken.objects.filter(name=name).first()
        if token is None:
            raise CommandError(f"no token named {name!r}")
        if api_token_revoke(token=token, actor="system:manage.py"):
            self.stdout.write(f"revoked token {name}")
        else:
            self.stdout.write(f"token {name} was already revoked")
