"""Polling: flap damping, alerts through the incidents pipeline, claiming, hanging checks, rollups, watchdog."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from werkzeug import Response

from portal.health import dispatch, maintenance, services
from portal.health.models import Check, CheckResult, CheckRollup, Heartbeat
from portal.health.runners import Outcome
from portal.incidents.models import Alert, Incident

FAIL = Outcome(False, "answered HTTP 503 Service Unavailable")
OK = Outcome(True, "answered HTTP 200 in 12 ms", 12.0)


def record(check, outcome, at=None):
    now = at or timezone.now()
    return services.check_record_result(check_id=check.pk, outcome=outcome, started_at=now, now=now)


def open_incidents_for(check):
    return Incident.objects.filter(alerts__fingerprint=f"health:check:{check.slug}").exclude(status="resolved").distinct()


def test_flap_damping_fail_fail_ok_fail_opens_nothing(make_check):
    check = make_check(fail_threshold=3)
    for outcome in (FAIL, FAIL, OK, FAIL):
        record(check, outcome)
    check.refresh_from_db()
    assert check.status == Check.Status.OK
    assert check.consecutive_failures == 1
    assert not check.alert_raised
    assert not Alert.objects.filter(fingerprint=f"health:check:{check.slug}").exists()
    assert CheckResult.objects.filter(check_obj=check).count() == 4


def test_three_failures_open_an_incident_and_recovery_resolves_it(make_check):
    check = make_check(fail_threshold=3, recover_threshold=2, severity="critical", name="Twilio")
    for outcome in (FAIL, FAIL):
        record(check, outcome)
    assert not open_incidents_for(check).exists()
    record(check, FAIL)
    check.refresh_from_db()
    assert check.status == Check.Status.FAILING and check.alert_raised
    alert = Alert.objects.get(fingerprint=f"health:check:{check.slug}")
    assert alert.status == "firing" and alert.severity == "critical"
    assert "503" in alert.summary
    incident = open_incidents_for(check).get()
    assert incident.severity == "critical"
    # One success is not enough to recover (recover_threshold=2).
    record(check, OK)
    check.refresh_from_db()
    assert check.status == Check.Status.FAILING
    record(check, OK)
    check.refresh_from_db()
    assert check.status == Check.Status.OK and not check.alert_raised
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_a_failed_alert_ingest_is_retried_by_the_next_poll(make_check, monkeypatch):
    import portal.incidents.ingest as inc

    check = make_check(fail_threshold=1)
    real = inc.alert_ingest_internal

    def broken(**kw):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(inc, "alert_ingest_internal", broken)
    record(check, FAIL)
    check.refresh_from_db()
    assert check.status == Check.Status.FAILING and not check.alert_raised
    monkeypatch.setattr(inc, "alert_ingest_internal", real)
    assert services.alerts_reconcile() == 1
    check.refresh_from_db()
    assert check.alert_raised
    assert open_incidents_for(check).exists()


def test_claim_moves_the_schedule_and_blocks_a_second_claim(make_check):
    now = timezone.now()
    check = make_check(interval_seconds=60, next_due_at=now - timedelta(seconds=1))
    claims = dispatch.checks_claim_due(now=now)
    assert [c.check_id for c in claims] == [check.pk]
    assert dispatch.checks_claim_due(now=now) == []
    check.refresh_from_db()
    assert check.next_due_at == now - timedelta(seconds=1) + timedelta(seconds=60)
    # A late answer from a reaped claim is dropped.
    later = now + timedelta(seconds=check.timeout_seconds + services.CLAIM_GRACE_SECONDS + 1)
    assert dispatch.claims_reap(now=later) == 1
    check.refresh_from_db()
    assert check.claim_token is None and "timed out" in check.last_reason
    assert services.check_record_result(check_id=check.pk, outcome=OK, started_at=now, token=claims[0].token) is None


def test_poll_runs_due_checks_concurrently_and_a_hanging_one_delays_nobody(make_check, local_server, private_env):
    def hang(request):
        time.sleep(2.5)
        return Response("late")

    local_server.expect_request("/hang").respond_with_handler(hang)
    local_server.expect_request("/ok").respond_with_data("fine")
    hanging = [make_check(config={"url": local_server.url_for("/hang")}, timeout_seconds=1, environment=private_env) for _ in range(2)]
    healthy = [make_check(config={"url": local_server.url_for("/ok")}, timeout_seconds=1, environment=private_env) for _ in range(12)]
    start = timezone.now()
    out = dispatch.poll_once(wait=True)
    assert out["claimed"] == 14
    for c in healthy:
        r = CheckResult.objects.get(check_obj=c)
        assert r.ok, r.reason
        assert (r.created_at - start).total_seconds() < 0.9, "a healthy check waited for the hanging ones"
    for c in hanging:
        r = CheckResult.objects.get(check_obj=c)
        assert not r.ok and r.reason.startswith("timed out after 1 s")
    # Nothing is due again within the interval.
    assert dispatch.poll_once(wait=True)["claimed"] == 0


def test_rollups_and_retention(make_check):
    check = make_check()
    now = timezone.now().replace(minute=30, second=0, microsecond=0)
    for i, ok in enumerate([True, True, False, True]):
        record(check, Outcome(ok, "x", latency_ms=10.0 * (i + 1)), at=now - timedelta(minutes=i))
    record(check, OK, at=now - timedelta(days=8))
    assert maintenance.rollups_refresh(hours=2, now=now) == 1
    roll = CheckRollup.objects.get(check_obj=check, hour=now.replace(minute=0))
    assert (roll.count, roll.ok_count, roll.latency_max_ms) == (4, 3, 40.0)
    assert roll.latency_avg_ms == pytest.approx(25.0)
    old_rollup = CheckRollup.objects.create(check_obj=check, hour=now - timedelta(days=401), count=1, ok_count=1)
    deleted = maintenance.retention_sweep(now=now)
    assert deleted["results"] == 1 and deleted["rollups"] == 1
    assert not CheckRollup.objects.filter(pk=old_rollup.pk).exists()
    assert CheckResult.objects.filter(check_obj=check).count() == 4


def test_watchdog_raises_when_polling_stalls_and_resolves_after(make_check, client):
    check = make_check(interval_seconds=60)
    now = timezone.now()
    record(check, OK, at=now)
    assert maintenance.watchdog_run(now=now + timedelta(seconds=120))["stalled"] is False
    out = maintenance.watchdog_run(now=now + timedelta(seconds=181))
    assert out["stalled"] and out["alert_raised"]
    alert = Alert.objects.get(fingerprint="health:watchdog:polling-stalled")
    assert alert.status == "firing" and alert.severity == "critical"
    assert Heartbeat.objects.get(name="watchdog").detail["stalled"] is True
    body = client.get("/metrics").content.decode()
    assert 'portal_health_heartbeat_timestamp_seconds{component="watchdog"}' in body
    assert "portal_health_polling_stalled 1.0" in body
    record(check, OK, at=now + timedelta(seconds=200))
    assert maintenance.watchdog_run(now=now + timedelta(seconds=201))["stalled"] is False
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_watchdog_task_is_never_retried():
    from portal.health.tasks import health_watchdog

    assert health_watchdog.max_retries == 0


@pytest.mark.django_db(transaction=True)
def test_two_pollers_started_together_run_each_due_check_once(require_postgres, local_server):
    local_server.expect_request("/ok").respond_with_data("fine")
    now = timezone.now()
    for i in range(40):
        Check.objects.create(slug=f"pg-{i}", name=f"pg {i}", kind="http", group="external",
                             config={"url": local_server.url_for("/ok")}, next_due_at=now - timedelta(seconds=i % 5),
                             timeout_seconds=2)
    barrier = threading.Barrier(2)
    outs = []

    def poller():
        from django.db import connection

        try:
            barrier.wait()
            outs.append(dispatch.poll_once(wait=True))
        finally:
            connection.close()

    threads = [threading.Thread(target=poller) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(o["claimed"] for o in outs) == 40
    counts = {c.slug: c.results.count() for c in Check.objects.all()}
    assert set(counts.values()) == {1}, counts


@pytest.mark.django_db(transaction=True)
def test_the_dispatched_checks_store_every_result_once_on_a_few_connections(require_postgres, local_server, monkeypatch):
    """The beat's path (wait=False): 60 checks fetched on many threads, stored on the store threads; the
    fetch threads hold no database connection (at 5,000 checks one connection a thread exhausted
    PostgreSQL's 100)."""
    from django.db import connection

    local_server.expect_request("/ok").respond_with_data("fine")
    monkeypatch.setattr(dispatch, "LOOKAHEAD_SECONDS", 0.0)
    now = timezone.now()
    for i in range(60):
        Check.objects.create(slug=f"d-{i}", name=f"d {i}", kind="http", group="external",
                             config={"url": local_server.url_for("/ok")}, next_due_at=now - timedelta(seconds=1),
                             timeout_seconds=2)
    assert dispatch.poll_once(wait=False)["claimed"] == 60
    name = connection.settings_dict["NAME"]

    def ours() -> int:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name])
            return cur.fetchone()[0]

    most = 0
    deadline = time.monotonic() + 60
    while CheckResult.objects.count() < 60 and time.monotonic() < deadline:
        most = max(most, ours())
        time.sleep(0.05)
    assert CheckResult.objects.count() == 60
    assert set(Check.objects.values_list("results__check_obj", flat=True).distinct()) == set(Check.objects.values_list("pk", flat=True))
    # This test's own connection, the store threads and at most a few fetch threads between two checks.
    assert most <= 1 + 4 + 4, most
