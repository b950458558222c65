from django.core.management.base import BaseCommand

from portal.plan.loader import seed_all


class Command(BaseCommand):
    help = "Load the infrastructure plan's data (idempotent; edited rows are kept unless --reset)."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="overwrite rows an operator edited")

    def handle(self, *args, reset=False, **options):
        stats = seed_all(reset=reset)
        self.stdout.write(
            f"seed_defaults: {stats.created} created, {stats.updated} updated, {stats.unchanged} unchanged, "
            f"{stats.kept_edited} kept as edited"
        )
        for note in stats.notes:
            self.stdout.write(f"  {note}")
