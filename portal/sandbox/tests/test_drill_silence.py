"""A drill is a maintenance window the portal makes itself: what it is expected to set off is one
silenced incident ("expected: drill") that pages nobody, rising from warning to critical as the drill
does, joined by the CloudWatch alarm for the same breach; an unrelated alert during the drill pages."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest
from django.utils import timezone

from portal.cloud import aws
from portal.health import services as health
from portal.health.models import Check
from portal.health.runners import run_check
from portal.health.seed import seed_thresholds
from portal.incidents import escalation, ingest
from portal.incidents.models import Alert, Incident, Silence, TimelineEntry
from portal.incidents.seed import seed
from portal.plan.loader import SeedStats, load_plan
from portal.sandbox import simulator
from portal.sandbox.services import drill_start, drill_stop


def evaluate(check: Check, times: int = 2) -> Check:
    for _ in range(times):
        check = Check.objects.select_related("environment", "rule").get(pk=check.pk)
        health.check_record_result(check_id=check.pk, outcome=run_check(check), started_at=timezone.now())
    check.refresh_from_db()
    return check


def pages(incident: Incident) -> int:
    escalation.escalations_due(now=timezone.now() + dt.timedelta(seconds=1))
    return incident.timeline.filter(kind=TimelineEntry.Kind.ESCALATION).count()


def sns_from_moto(env, name: str) -> Alert:
    """The SNS notification CloudWatch sends when the alarm goes to ALARM, built from the alarm moto holds."""
    alarm = aws.client(env, "cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    message = {"AlarmName": name, "AlarmDescription": alarm.get("AlarmDescription", ""), "AlarmArn": alarm["AlarmArn"],
               "NewStateValue": "ALARM", "NewStateReason": alarm.get("StateReason", ""), "StateChangeTime": timezone.now().isoformat(),
               "Trigger": {"Metrics": alarm.get("Metrics") or [], "MetricName": alarm.get("MetricName"), "Namespace": alarm.get("Namespace"),
                           "Dimensions": alarm.get("Dimensions") or []}}
    delivery, _ = ingest.delivery_store(source="sns", payload={"Type": "Notification", "Message": json.dumps(message, default=str)})
    ingest.delivery_process(delivery_id=delivery.pk)
    return Alert.objects.get(source="sns", name=name)


@pytest.fixture
def platform(aws_platform):
    seed(load_plan(), reset=False)
    seed_thresholds(load_plan(), reset=False, stats=SeedStats())
    health.health_checks_ensure_for_environment(environment=aws_platform, actor="system:test")
    return aws_platform


def drill_minutes(env, rng, t0, start: int, stop: int):
    for minute in range(start, stop):
        simulator.tick(env, now=t0 + dt.timedelta(minutes=minute, seconds=1), rng=rng, interval=60)


def test_a_drill_from_3_to_8_percent_is_one_silenced_incident_rising_to_critical_that_pages_nobody(platform, monkeypatch):
    env = platform
    rng = random.Random(7)
    t0 = timezone.now()
    warning = Check.objects.get(slug=f"{env.name}-error-rate-warning")
    critical = Check.objects.get(slug=f"{env.name}-error-rate-critical")

    first = drill_start(environment=env, kind="error-rate", colour="blue", level=3, minutes=30, actor="test")
    assert Silence.objects.filter(ref=f"drill:{first.pk}", reason="expected: drill",
                                  matchers={"environment": env.name, "metric": "error_rate", "colour": "blue"}).exists()
    drill_minutes(env, rng, t0, -5, 1)
    assert evaluate(warning).status == Check.Status.FAILING
    assert evaluate(critical).status == Check.Status.OK
    incident = Alert.objects.get(fingerprint=f"health:check:{warning.slug}").incident
    assert incident.severity == "warning" and incident.silenced_reason == "expected: drill"

    drill_stop(drill=first, actor="test")
    drill_start(environment=env, kind="error-rate", colour="blue", level=8, minutes=30, actor="test")
    drill_minutes(env, rng, t0, 1, 11)
    later = t0 + dt.timedelta(minutes=10, seconds=30)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert evaluate(critical).status == Check.Status.FAILING
    incident.refresh_from_db()
    assert Alert.objects.get(fingerprint=f"health:check:{critical.slug}").incident_id == incident.pk
    assert incident.severity == "critical" and Incident.objects.count() == 1

    # CloudWatch sees the same breach; its alarm over SNS joins the incident.
    states = simulator.evaluate_alarms(env, now=later)
    assert states["ftw-error-rate-critical"] == "ALARM"
    alarm = sns_from_moto(env, "ftw-error-rate-critical")
    assert alarm.incident_id == incident.pk and alarm.silenced_reason == "expected: drill"
    assert Incident.objects.count() == 1
    incident.refresh_from_db()
    assert incident.silenced_reason == "expected: drill" and pages(incident) == 0

    # Something the drill does not explain pages as usual.
    unrelated = ingest.alert_ingest_internal(
        source="health", fingerprint=f"check:{env.name}-db-connections-critical", name="Health check failing: database connections",
        severity="critical", firing=True, summary="connections at 95%", labels={"metric": "db_connections"}, environment=env)
    assert unrelated.incident_id != incident.pk and unrelated.silenced_reason == ""
    assert pages(unrelated.incident) == 1


def test_a_drills_slo_burn_and_its_alarms_are_silenced_but_the_other_colours_alert_pages(platform):
    """Seen in `make run`: an error drill on green also burned the error-rate and uptime SLOs and put the
    error-rate alarms in ALARM, and those three paged as if the drill were an outage."""
    env = platform
    drill = drill_start(environment=env, kind="error-rate", colour="green", level=40, minutes=10, actor="test")
    burn = ingest.alert_ingest_internal(source="health", fingerprint="slo:uptime", name="SLO burn rate: Uptime", severity="critical",
                                        firing=True, summary="24x over 1 h", labels={"slo": "uptime", "metric": "error_rate",
                                                                                     "scope": "platform"}, environment=env)
    alarms = ingest.alert_ingest_internal(source="health", fingerprint=f"check:{env.name}-alarms", severity="warning",
                                          name="Health check failing: CloudWatch alarms", firing=True, summary="2 alarm(s) in ALARM",
                                          labels={"check": f"{env.name}-alarms", "kind": "alarm"}, environment=env)
    other = ingest.alert_ingest_internal(source="health", fingerprint="blue-errors", name="Blue errors", severity="critical",
                                         firing=True, summary="blue", labels={"metric": "error_rate", "colour": "blue"}, environment=env)
    assert burn.incident.silenced_reason == "expected: drill" and pages(burn.incident) == 0
    assert alarms.incident.silenced_reason == "expected: drill" and pages(alarms.incident) == 0
    assert other.incident.silenced_reason == "" and pages(other.incident) >= 1
    drill_stop(drill=drill, actor="test")


def test_an_slo_burn_alert_names_its_metric_and_environment(platform, settings):
    settings.DEFAULT_ENVIRONMENT = platform.name
    from portal.health import slo as slo_mod
    from portal.health.models import Slo
    from portal.health.seed import seed_slos

    seed_slos(load_plan(), reset=False, stats=SeedStats())
    seeded = Slo.objects.get(slug="uptime")
    seeded.burn_rate_1h, seeded.burn_rate_6h, seeded.alert_raised = 20.0, 1.0, False
    slo_mod._sync_burn_alert(seeded)
    alert = Alert.objects.get(fingerprint="health:slo:uptime")
    assert alert.labels["metric"] == "error_rate" and alert.labels["environment"] == platform.name
