"""Re-encrypt every EncryptedTextField value with the current (first) FIELD_ENCRYPTION_KEY.

Rotation: FIELD_ENCRYPTION_KEY=new,old -> restart -> `manage.py rotate_field_keys` ->
FIELD_ENCRYPTION_KEY=new -> restart. Safe to run again; rows are locked while they are rewritten.
"""

from __future__ import annotations

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from portal.cloud.fields import EncryptedTextField, UndecryptableValue


def encrypted_fields() -> list[tuple[type, list[str]]]:
    out = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            out.append((model, names))
    return out


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field value with the first key of FIELD_ENCRYPTION_KEY."

    def handle(self, *args, **options):
        failures: list[str] = []
        total = 0
        for model, names in encrypted_fields():
            manager = model._base_manager
            count = 0
            for pk in manager.values_list("pk", flat=True):
                try:
                    with transaction.atomic():
                        values = manager.select_for_update().filter(pk=pk).values(*names).first()
                        if values is None:
                            continue  # deleted meanwhile
                        changed = {name: value for name, value in values.items() if value}
                        if changed:
                            # update() encrypts again through get_prep_value, with the first key.
                            manager.filter(pk=pk).update(**changed)
                            count += 1
                except UndecryptableValue as exc:
                    failures.append(f"{model._meta.label} pk={pk}: {exc}")
            total += count
            self.stdout.write(f"{model._meta.label}: {count} row(s) re-encrypted ({', '.join(names)})")
        if failures:
            raise CommandError("some values could not be decrypted with any key; nothing else was lost:\n" + "\n".join(failures))
        self.stdout.write(self.style.SUCCESS(f"{total} row(s) now use the current key"))
