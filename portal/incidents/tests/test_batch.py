"""A storm's backlog applied in batches: a worker that takes one pending Alertmanager delivery takes the
others with it, and nothing is lost, doubled or misattributed on the way."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.incidents import ingest
from portal.incidents.models import Alert, AlertDelivery, AlertEvent, Incident


def _body(name: str, fingerprint: str, status: str = "firing") -> dict:
    return {"receiver": "portal", "status": status, "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}',
            "groupLabels": {"alertname": name}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": [{"status": status, "labels": {"alertname": name, "severity": "critical", "service": "api"},
                        "annotations": {"summary": f"{name} is {status}"}, "startsAt": "2026-11-27T18:00:00Z",
                        "endsAt": "2026-11-27T18:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prom", "fingerprint": fingerprint}]}


def _pending(body: dict) -> AlertDelivery:
    """A delivery stored whose task has not run yet (as under a storm: the queue is behind)."""
    return AlertDelivery.objects.create(source="alertmanager", payload=body, alert_count=len(body.get("alerts", [])))


@pytest.mark.django_db
def test_one_task_applies_the_pending_backlog_and_the_others_find_theirs_done():
    deliveries = [_pending(_body(f"Batch{i}", f"batch-{i}")) for i in range(12)]
    with CaptureQueriesContext(connection) as batched:
        assert ingest.delivery_process(delivery_id=deliveries[5].pk) == "processed"
    assert AlertDelivery.objects.filter(status="processed").count() == 12
    assert Incident.objects.count() == 12 and Alert.objects.count() == 12
    # Each alert's report names the delivery it came in.
    for d in deliveries:
        assert list(AlertEvent.objects.filter(delivery=d).values_list("alert__fingerprint", flat=True)) == [d.payload["alerts"][0]["fingerprint"]]
    # Their own tasks, arriving later, have nothing left to do and change nothing.
    assert [ingest.delivery_process(delivery_id=d.pk) for d in deliveries] == ["skipped"] * 12
    assert Incident.objects.count() == 12
    # One batch costs far fewer statements than twelve deliveries applied one by one.
    singles = [_pending(_body(f"Single{i}", f"single-{i}")) for i in range(12)]
    with CaptureQueriesContext(connection) as one_by_one:
        for d in singles:
            assert ingest._process_one(d.pk) == "processed"
    assert len(batched.captured_queries) < 0.8 * len(one_by_one.captured_queries)


@pytest.mark.django_db
def test_a_task_whose_delivery_is_done_applies_what_is_pending_now():
    done = _pending(_body("Early", "early-1"))
    assert ingest.delivery_process(delivery_id=done.pk) == "processed"
    later = [_pending(_body(f"Late{i}", f"late-{i}")) for i in range(3)]
    # The first delivery's task delivered a second time: its own delivery is done, the backlog is not.
    assert ingest.delivery_process(delivery_id=done.pk) == "skipped"
    assert {d.pk for d in later} <= set(AlertDelivery.objects.filter(status="processed").values_list("pk", flat=True))
    assert Incident.objects.count() == 4 and AlertEvent.objects.filter(delivery=done).count() == 1
    assert ingest.delivery_process(delivery_id=done.pk) == "skipped"
    assert Incident.objects.count() == 4 and AlertEvent.objects.count() == 4


@pytest.mark.django_db
def test_a_bad_delivery_in_the_batch_is_rejected_with_its_reason_and_the_rest_applied():
    good = _pending(_body("Good", "good-1"))
    bad = _pending({"version": "4", "alerts": "not a list"})
    later = _pending(_body("Later", "later-1"))
    assert ingest.delivery_process(delivery_id=bad.pk) == "rejected"
    bad.refresh_from_db()
    assert bad.status == "rejected" and bad.error
    assert set(AlertDelivery.objects.filter(status="processed").values_list("pk", flat=True)) == {good.pk, later.pk}
    assert set(Alert.objects.values_list("name", flat=True)) == {"Good", "Later"} and Incident.objects.count() == 2


@pytest.mark.django_db
def test_firing_then_resolved_in_one_batch_ends_as_two_deliveries_apart_would():
    fired = _pending(_body("Flap", "flap-1"))
    resolved = _pending(_body("Flap", "flap-1", status="resolved"))
    assert ingest.delivery_process(delivery_id=resolved.pk) == "processed"
    incident = Incident.objects.get()
    assert incident.status == "resolved" and incident.resolve_reason == "all alerts resolved"
    assert Alert.objects.get().status == "resolved"
    assert [e.delivery_id for e in AlertEvent.objects.order_by("pk")] == [fired.pk, resolved.pk]
    assert list(incident.timeline.order_by("pk").values_list("kind", flat=True))[:3] == ["opened", "alert_firing", "alert_resolved"]


@pytest.mark.django_db
def test_when_the_batch_fails_each_of_its_deliveries_is_applied_alone(monkeypatch):
    first = _pending(_body("Alone", "alone-1"))
    second = _pending(_body("Other", "other-1"))
    broken = _pending(_body("Broken", "broken-1"))
    real = ingest._apply_alerts_of

    def fail_batches(source, deliveries):
        if len(deliveries) > 1:
            raise RuntimeError("one delivery of the batch broke it")
        if deliveries[0][0].pk == broken.pk:
            raise RuntimeError("this one breaks alone too")
        return real(source, deliveries)

    monkeypatch.setattr(ingest, "_apply_alerts_of", fail_batches)
    assert ingest.delivery_process(delivery_id=first.pk) == "processed"
    statuses = dict(AlertDelivery.objects.values_list("pk", "status"))
    # The two that apply alone are applied; the one that fails alone too is left for its task or the sweep.
    assert statuses == {first.pk: "processed", second.pk: "processed", broken.pk: "pending"}
    assert sorted(Alert.objects.values_list("name", flat=True)) == ["Alone", "Other"] and Incident.objects.count() == 2


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_workers_racing_over_one_backlog_apply_each_delivery_once(require_postgres):
    # Thirty deliveries, ten of them a repeat of another's alert: three workers take tasks at once.
    bodies = [_body(f"Race{i % 20}", f"race-{i % 20}") for i in range(30)]
    deliveries = [_pending(b) for b in bodies]
    outcomes, errors = [], []
    barrier = threading.Barrier(3)

    def worker(ids):
        try:
            barrier.wait(timeout=10)
            for pk in ids:
                outcomes.append(ingest.delivery_process(delivery_id=pk))
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            connection.close()

    ids = [d.pk for d in deliveries]
    threads = [threading.Thread(target=worker, args=(ids[k::3],)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert AlertDelivery.objects.filter(status="processed").count() == 30
    assert Incident.objects.count() == 20 and Alert.objects.count() == 20
    assert AlertEvent.objects.count() == 30  # every report recorded once, none twice
    assert sorted(AlertEvent.objects.values_list("delivery_id", flat=True)) == sorted(ids)
    assert outcomes.count("processed") >= 1 and set(outcomes) <= {"processed", "skipped"}
