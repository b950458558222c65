"""The audit table refuses UPDATE and DELETE in the database itself, not only in the ORM.

PostgreSQL: a row trigger raises on UPDATE or DELETE. TRUNCATE does not fire it, which keeps
the test runner's flush working; there is deliberately no TRUNCATE trigger (the portal never
truncates, and a database owner can always drop a trigger: grants are the stronger fence).
SQLite: the same two refusals with RAISE(ABORT); `manage.py flush` (portal.audit's override)
lifts the DELETE trigger inside its own transaction, because Django flushes SQLite with DELETE.

Careful: Django rebuilds a SQLite table to alter it (new table, copy, drop), which drops its
triggers. A later migration that alters AuditEvent must create them again (see CREATE_SQLITE);
portal/audit/tests/test_append_only.py fails if they are missing.
"""

from django.db import migrations

TABLE = "audit_auditevent"

CREATE_POSTGRESQL = [
    f"""
    CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit log is append-only: % on {TABLE} refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END
    $$
    """,
    f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}",
    f"""
    CREATE TRIGGER {TABLE}_append_only BEFORE UPDATE OR DELETE ON {TABLE}
    FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only()
    """,
]
DROP_POSTGRESQL = [
    f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE}",
    f"DROP FUNCTION IF EXISTS {TABLE}_append_only()",
]
CREATE_SQLITE = [
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_no_update BEFORE UPDATE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE on {TABLE} refused'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS {TABLE}_no_delete BEFORE DELETE ON {TABLE}
    BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE on {TABLE} refused'); END""",
]
DROP_SQLITE = [f"DROP TRIGGER IF EXISTS {TABLE}_no_update", f"DROP TRIGGER IF EXISTS {TABLE}_no_delete"]


def _run(statements_by_vendor):
    def run(apps, schema_editor):
        for sql in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql, params=None)  # no placeholders: the SQL has a literal %

    return run


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"postgresql": CREATE_POSTGRESQL, "sqlite": CREATE_SQLITE}),
            _run({"postgresql": DROP_POSTGRESQL, "sqlite": DROP_SQLITE}),
            elidable=False,
        ),
    ]
