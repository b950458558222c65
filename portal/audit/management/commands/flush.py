"""`manage.py flush`, which Django's test runner also calls between transactional tests.

Django empties SQLite tables with DELETE, which the audit table's append-only trigger refuses
(PostgreSQL flushes with TRUNCATE, which the row trigger does not see). Emptying the whole
database is the one privileged path: the SQLite DELETE trigger is dropped and created again in
the same transaction as the flush, so no other statement ever runs without it.
"""

from __future__ import annotations

from django.core.management.commands.flush import Command as DjangoFlush
from django.db import connections, transaction

TABLE = "audit_auditevent"


class Command(DjangoFlush):
    def handle(self, **options):
        connection = connections[options["database"]]
        if connection.vendor != "sqlite":
            return super().handle(**options)
        if options["interactive"]:
            # Ask before the transaction: the question must not hold the database's write lock.
            answer = input(f'This will IRREVERSIBLY DESTROY all data in "{connection.settings_dict["NAME"]}", '
                           "the audit log included.\nType 'yes' to continue, or 'no' to cancel: ")
            if answer != "yes":
                self.stdout.write("Flush cancelled.")
                return None
            options = {**options, "interactive": False}
        with transaction.atomic(using=options["database"]):
            with connection.cursor() as cursor:
                cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s "
                               "AND sql LIKE %s", [TABLE, "%BEFORE DELETE%"])
                triggers = cursor.fetchall()
                for name, _sql in triggers:
                    cursor.execute(f'DROP TRIGGER "{name}"')
            super().handle(**options)
            with connection.cursor() as cursor:
                for _name, sql in triggers:
                    cursor.execute(sql)
        return None
