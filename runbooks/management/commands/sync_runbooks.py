"""manage.py sync_runbooks [--directory DIR]: load runbooks/library/*.yaml; a changed file makes a new version."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from runbooks.loader import sync_library


class Command(BaseCommand):
    help = "Load the runbook library; each changed file becomes a new version. Broken files load nothing."

    def add_arguments(self, parser):
        parser.add_argument("--directory", help="Library folder (default: runbooks/library)")

    def handle(self, *args, directory=None, **options):
        report = sync_library(directory=directory, actor="system:sync_runbooks")
        for label in report.created:
            self.stdout.write(f"created {label}")
        for label in report.updated:
            self.stdout.write(f"updated {label}")
        for label in report.unchanged:
            self.stdout.write(f"unchanged {label}")
        for error in report.errors:
            self.stderr.write(f"error {error}")
        if report.errors:
            raise CommandError(f"{len(report.errors)} runbook file(s) not loaded; the previous versions stay in force")
