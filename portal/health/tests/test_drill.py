"""A sandbox drill end to end: error rate on green fails the error-rate checks, an incident opens by
itself; ending the drill lets the checks recover and the incident resolve."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.utils import timezone

from portal.health import services
from portal.health.models import Check, Slo
from portal.health.runners import run_check
from portal.health.seed import seed_slos, seed_thresholds
from portal.incidents.models import Alert, Incident
from portal.plan.loader import SeedStats, load_plan


def evaluate(check: Check, times: int) -> Check:
    """What the poller does for a check, `times` runs in a row (in this thread: SQLite test database)."""
    for _ in range(times):
        check = Check.objects.select_related("environment", "rule").get(pk=check.pk)
        out = run_check(check)
        services.check_record_result(check_id=check.pk, outcome=out, started_at=timezone.now())
    check.refresh_from_db()
    return check


@pytest.fixture
def platform_with_checks(aws_platform):
    seed_thresholds(load_plan(), reset=False, stats=SeedStats())
    services.health_checks_ensure_for_environment(environment=aws_platform, actor="system:test")
    return aws_platform


def test_error_rate_drill_opens_and_closes_an_incident(platform_with_checks, monkeypatch):
    from portal.cloud import aws
    from portal.sandbox import simulator
    from portal.sandbox.services import drill_start, drill_stop

    env = platform_with_checks
    aws.set_desired_capacity(env, "green", 2)
    aws.set_listener_weights(env, {"blue": 75, "green": 25})
    rng = random.Random(11)
    t0 = timezone.now()
    check = Check.objects.get(slug="sandbox-error-rate-critical")
    assert check.rule.severity == "critical" and check.fail_threshold == 2

    for minutes in (4, 3, 2, 1, 0):
        simulator.tick(env, now=t0 - dt.timedelta(minutes=minutes), rng=rng, interval=60)
    check = evaluate(check, 2)
    assert check.status == Check.Status.OK, check.last_reason
    assert not Incident.objects.exists()

    drill = drill_start(environment=env, kind="error-rate", colour="green", level=25, minutes=30, actor="test")
    for minutes in (4, 3, 2, 1, 0):
        simulator.tick(env, now=t0 - dt.timedelta(minutes=minutes) + dt.timedelta(seconds=1), rng=rng, interval=60)
    check = evaluate(check, 1)
    assert check.status == Check.Status.OK  # one failure is not enough (fail_threshold 2)
    assert "on green is above 5%" in check.last_reason
    check = evaluate(check, 1)
    assert check.status == Check.Status.FAILING and check.alert_raised
    alert = Alert.objects.get(fingerprint="health:check:sandbox-error-rate-critical")
    assert alert.status == "firing" and alert.severity == "critical" and alert.environment_id == env.pk
    incident = alert.incident
    assert incident is not None and incident.status == "triggered" and incident.severity == "critical"

    # End the drill; ten clean minutes later the window holds only clean traffic.
    drill_stop(drill=drill, actor="test")
    later = t0 + dt.timedelta(minutes=10)
    for minutes in range(1, 11):
        simulator.tick(env, now=t0 + dt.timedelta(minutes=minutes), rng=rng, interval=60)
    monkeypatch.setattr(timezone, "now", lambda: later)
    check = evaluate(check, 2)
    assert check.status == Check.Status.OK, check.last_reason
    assert not check.alert_raised
    alert.refresh_from_db()
    assert alert.status == "resolved"
    incident.refresh_from_db()
    assert incident.status == "resolved"


def test_slo_evaluation_reads_the_sandbox(platform_with_checks):
    from portal.health.slo import slos_evaluate
    from portal.sandbox import simulator

    env = platform_with_checks
    seed_slos(load_plan(), reset=False, stats=SeedStats())
    rng = random.Random(5)
    t0 = timezone.now()
    for minutes in (3, 2, 1, 0):
        simulator.tick(env, now=t0 - dt.timedelta(minutes=minutes), rng=rng, interval=60)
    values = slos_evaluate()
    uptime = Slo.objects.get(slug="uptime")
    assert uptime.evaluated_at is not None
    assert values["uptime"] is not None and 95 <= uptime.current_value <= 100
    assert uptime.burn_rate_1h is not None
    api = Slo.objects.get(slug="api-p95")
    assert api.current_value is not None and api.current_value > 0
    p50 = Slo.objects.get(slug="api-p50")
    assert p50.current_value is not None and 0 < p50.current_value <= api.current_value  # ALB TargetResponseTime p50
