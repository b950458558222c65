"""Dedup under concurrency, proven on PostgreSQL (SQLite serializes writers and would prove nothing)."""

import json
import threading

import pytest
from django.db import connection
from django.test import Client

from portal.incidents import escalation, ingest, services
from portal.incidents.models import Alert, AlertDelivery, Incident
from portal.incidents.tests.conftest import load

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]
AM = "/api/v1/alerts/alertmanager"


def _post_all(bodies, token):
    barrier = threading.Barrier(len(bodies))
    statuses, errors = [], []

    def worker(body):
        try:
            c = Client()
            barrier.wait(timeout=10)
            r = c.post(AM, data=body, content_type="application/json", headers={"Authorization": f"Bearer {token}"})
            statuses.append(r.status_code)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    return statuses


def test_same_payload_three_times(require_postgres, make_token):
    token = make_token("alerts:write")
    c = Client()
    for _ in range(3):
        r = c.post(AM, data=json.dumps(load("alertmanager/firing-v0.25.json")), content_type="application/json",
                   headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    assert Incident.objects.count() == 1 and Alert.objects.count() == 1


def test_twenty_identical_payloads_concurrently(require_postgres, make_token):
    token = make_token("alerts:write")
    body = json.dumps(load("alertmanager/firing-v0.25.json"))
    statuses = _post_all([body] * 20, token)
    assert statuses == [200] * 20
    assert AlertDelivery.objects.filter(status="processed").count() == 20
    assert Incident.objects.exclude(status="resolved").count() == 1
    assert Incident.objects.count() == 1 and Alert.objects.count() == 1
    assert Incident.objects.get().timeline.filter(kind="alert_firing").count() == 1


def test_concurrent_batches_sharing_alerts(require_postgres, make_token):
    """Overlapping batches of one group from 10 threads: 100 alerts, one incident, no deadlock."""
    token = make_token("alerts:write")
    batch = load("alertmanager/batch-100.json")
    bodies = []
    for i in range(10):
        part = dict(batch, alerts=batch["alerts"][i * 5 : i * 5 + 60])
        bodies.append(json.dumps(part))
    assert _post_all(bodies, token) == [200] * 10
    assert Incident.objects.count() == 1
    assert Alert.objects.count() == 100
    assert set(Alert.objects.values_list("incident_id", flat=True)) == {Incident.objects.get().pk}


def test_concurrent_internal_alerts(require_postgres):
    errors = []
    barrier = threading.Barrier(10)

    def worker():
        try:
            barrier.wait(timeout=10)
            ingest.alert_ingest_internal(source="health", fingerprint="rds", name="RDSDown", severity="critical",
                                           firing=True, summary="down", labels={})
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert Incident.objects.count() == 1 and Alert.objects.count() == 1


def test_ack_racing_the_escalation_never_pages_after_the_ack(require_postgres, responder):
    from datetime import timedelta

    from django.utils import timezone

    from portal.incidents.models import Notification
    from portal.incidents.seed import seed
    from portal.plan.loader import load_plan

    seed(load_plan(), reset=False)
    for i in range(6):
        inc = ingest.alert_ingest_internal(source="health", fingerprint=f"race{i}", name=f"Race{i}", severity="critical",
                                             firing=True, summary="", labels={}).incident
        Incident.objects.filter(pk=inc.pk).update(next_escalation_at=timezone.now() - timedelta(seconds=1))
        barrier = threading.Barrier(2)
        errors = []

        def escalate(pk=inc.pk):
            try:
                barrier.wait(timeout=10)
                escalation.incident_escalate(incident_id=pk)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
            finally:
                connection.close()

        def ack(obj=inc):
            try:
                barrier.wait(timeout=10)
                services.incident_acknowledge(incident=obj, actor=responder)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
            finally:
                connection.close()

        threads = [threading.Thread(target=escalate), threading.Thread(target=ack)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        inc.refresh_from_db()
        assert inc.status == "acknowledged"
        for n in Notification.objects.filter(incident=inc, level=2):
            assert n.status in ("cancelled", "sent")
            if n.status == "sent":
                assert n.sent_at <= inc.acknowledged_at
