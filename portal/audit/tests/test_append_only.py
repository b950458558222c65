"""The audit table refuses UPDATE and DELETE in the database, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record


def _row() -> AuditEvent:
    return audit_record(actor="system:test", verb="test.append_only", target=("test", "1"), after={"n": 1})


def _raw(sql: str, pk: int) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [pk])


@pytest.mark.django_db
def test_raw_sql_update_of_an_audit_row_is_refused_by_the_database():
    event = _row()
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("UPDATE audit_auditevent SET verb = 'forged', result = 'ok' WHERE id = %s", event.pk)
    event = AuditEvent.objects.get(pk=event.pk)
    assert (event.verb, event.after) == ("test.append_only", {"n": 1})


@pytest.mark.django_db
def test_raw_sql_delete_of_an_audit_row_is_refused_by_the_database():
    event = _row()
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("DELETE FROM audit_auditevent WHERE id = %s", event.pk)
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db
def test_orm_bulk_paths_are_refused_too():
    event = _row()
    with pytest.raises(Exception, match="append-only"):
        AuditEvent.objects.filter(pk=event.pk).update(verb="forged")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk)._raw_delete(connection.alias)
    assert AuditEvent.objects.get(pk=event.pk).verb == "test.append_only"


def test_update_refused_on_postgresql(require_postgres, db):
    """The issue's own claim, on the production database: an UPDATE on the audit table fails."""
    event = _row()
    with pytest.raises(DatabaseError, match="append-only: UPDATE"):
        _raw("UPDATE audit_auditevent SET actor_label = 'someone-else' WHERE id = %s", event.pk)
    with pytest.raises(DatabaseError, match="append-only: DELETE"):
        _raw("DELETE FROM audit_auditevent WHERE id = %s", event.pk)


@pytest.mark.django_db(transaction=True)
def test_flush_still_empties_the_database_and_the_triggers_come_back():
    """Transactional tests and live-server tests flush between tests: flush is the one privileged path."""
    _row()
    call_command("flush", verbosity=0, interactive=False)
    assert AuditEvent.objects.count() == 0
    event = _row()
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("DELETE FROM audit_auditevent WHERE id = %s", event.pk)
    with pytest.raises(DatabaseError, match="append-only"):
        _raw("UPDATE audit_auditevent SET verb = 'x' WHERE id = %s", event.pk)


def test_live_server_tests_flush_between_tests(live_server):
    import requests

    _row()
    assert requests.get(live_server.url + "/healthz", timeout=5).status_code == 200
    # The teardown flush of this test is what must not fail (and the next test starts empty).


@pytest.mark.django_db(transaction=True)
def test_after_a_live_server_flush_the_table_is_empty():
    assert AuditEvent.objects.filter(verb="test.append_only").count() == 0
