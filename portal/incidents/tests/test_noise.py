"""Signal, not noise: one condition is one incident across severities and sources; silences keep the
alert and hold the page; the portal's own actions silence exactly what they are expected to cause."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.utils import timezone

from portal.cloud.models import Environment
from portal.incidents import escalation, grouping, ingest, silences
from portal.incidents.models import Alert, GroupingRule, Incident, TimelineEntry
from portal.incidents.seed import seed
from portal.plan.loader import load_plan


@pytest.fixture
def env(db):
    seed(load_plan(), reset=False)
    return Environment.objects.create(name="staging", alb_dimension="app/ftw-staging/abc123",
                                      blue_tg_dimension="targetgroup/ftw-blue/1", green_tg_dimension="targetgroup/ftw-green/2")


def check_alert(env, severity: str, *, firing: bool = True, metric: str = "error_rate") -> Alert:
    """What a failing metric-threshold health check raises (portal.health.services.check_alert_sync)."""
    slug = f"{env.name}-{metric.replace('_', '-')}-{severity}"
    return ingest.alert_ingest_internal(
        source="health", fingerprint=f"check:{slug}", name=f"Health check failing: {slug}", severity=severity, firing=firing,
        summary=f"{metric} breach", labels={"check": slug, "kind": "metric_threshold", "group": "metrics", "metric": metric},
        environment=env, grouping_key=f"check:{slug}")


def sns_alarm(env, *, state: str = "ALARM", slug: str = "error-rate-critical", metrics: list | None = None) -> Alert | None:
    """A CloudWatch alarm notification over SNS as the sandbox's metric-math alarm sends it (signature
    checks happen before the delivery is stored, so the stored delivery is processed directly)."""
    metrics = metrics or [
        {"Id": "errors", "ReturnData": False, "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count",
                                                                        "Dimensions": [{"name": "LoadBalancer", "value": env.alb_dimension}]}}},
        {"Id": "requests", "ReturnData": False, "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount",
                                                                          "Dimensions": [{"name": "LoadBalancer", "value": env.alb_dimension}]}}},
        {"Id": "error_rate", "Label": "Error rate (%)", "ReturnData": True, "Expression": "100 * errors / requests"},
    ]
    alarm = {"AlarmName": f"ftw-{slug}", "AlarmDescription": f"Error rate >5% ({slug.rsplit('-', 1)[-1]})",
             "AlarmArn": f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:ftw-{slug}", "NewStateValue": state,
             "NewStateReason": "Threshold Crossed", "StateChangeTime": timezone.now().isoformat(), "Region": "US East (N. Virginia)",
             "Trigger": {"Metrics": metrics, "ComparisonOperator": "GreaterThanThreshold", "Threshold": 5.0}}
    delivery, _ = ingest.delivery_store(source="sns", payload={"Type": "Notification", "Message": json.dumps(alarm),
                                                               "TopicArn": "arn:aws:sns:us-east-1:123456789012:ftw-alarms"})
    ingest.delivery_process(delivery_id=delivery.pk)
    return Alert.objects.filter(source="sns", name=f"ftw-{slug}").first()


def prometheus_alert(env, severity: str = "critical") -> Alert:
    name = f"FtwErrorRate{severity.capitalize()}"
    body = {"version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "status": "firing", "receiver": "portal",
            "groupLabels": {"alertname": name}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": [{"status": "firing", "labels": {"alertname": name, "severity": severity, "rule": f"error-rate-{severity}",
                                                         "environment": env.name},
                        "annotations": {"summary": "Error rate >5%"}, "startsAt": timezone.now().isoformat(),
                        "endsAt": "0001-01-01T00:00:00Z", "fingerprint": f"prom-{severity}"}]}
    delivery, _ = ingest.delivery_store(source="alertmanager", payload=body)
    ingest.delivery_process(delivery_id=delivery.pk)
    return Alert.objects.get(source="alertmanager", fingerprint=f"prom-{severity}")


def pages(incident: Incident) -> int:
    """Levels paged for the incident so far (what the escalation sweep has sent), after running the sweep."""
    escalation.escalations_due(now=timezone.now() + dt.timedelta(seconds=1))
    return incident.timeline.filter(kind=TimelineEntry.Kind.ESCALATION).count()


def test_warning_then_critical_is_one_incident_whose_severity_rises_and_falls(env):
    warning = check_alert(env, "warning")
    incident = warning.incident
    assert incident.severity == "warning" and pages(incident) == 1
    critical = check_alert(env, "critical")
    incident.refresh_from_db()
    assert critical.incident_id == incident.pk and Incident.objects.count() == 1
    assert incident.severity == "critical"
    assert pages(incident) == 2  # rising to critical pages again, by the critical policy
    assert incident.timeline.filter(text__startswith="Severity rose from warning to critical").count() == 1
    check_alert(env, "critical", firing=False)
    incident.refresh_from_db()
    assert incident.severity == "warning" and incident.status == "triggered"
    assert pages(incident) == 2  # falling pages no one
    check_alert(env, "warning", firing=False)
    incident.refresh_from_db()
    assert incident.status == "resolved"


def test_the_sns_alarm_and_the_prometheus_alert_for_the_same_breach_join_the_open_incident(env):
    incident = check_alert(env, "critical").incident
    alarm = sns_alarm(env)
    assert alarm.labels["environment"] == "staging" and alarm.labels["metric"] == "error_rate"
    assert alarm.incident_id == incident.pk
    prom = prometheus_alert(env)
    assert prom.labels["metric"] == "error_rate" and prom.incident_id == incident.pk
    assert Incident.objects.count() == 1 and incident.alerts.count() == 3


def test_an_alert_on_another_metric_or_colour_is_another_incident(env):
    incident = check_alert(env, "critical").incident
    other = check_alert(env, "critical", metric="cpu").incident
    assert other.pk != incident.pk
    blue = sns_alarm(env, slug="p95-critical", metrics=[{"Id": "m", "ReturnData": True, "MetricStat": {"Metric": {
        "Namespace": "AWS/ApplicationELB", "MetricName": "TargetResponseTime",
        "Dimensions": [{"name": "TargetGroup", "value": env.blue_tg_dimension}, {"name": "LoadBalancer", "value": env.alb_dimension}]}}}])
    assert blue.labels["colour"] == "blue" and blue.labels["metric"] == "p95_response_time"
    assert blue.incident_id not in (incident.pk, other.pk)


def test_a_silence_stops_the_page_but_keeps_the_alert_and_an_alert_after_it_ends_pages(env, lead):
    silence = silences.silence_create(matchers={"environment": "staging", "metric": "error_rate"}, starts_at=None,
                                      ends_at=timezone.now() + dt.timedelta(hours=1), reason="load test", actor=lead)
    alert = check_alert(env, "critical")
    incident = alert.incident
    assert Alert.objects.filter(pk=alert.pk, silenced_reason="load test").exists()  # kept and visible
    assert incident.silence_id == silence.pk and incident.silenced_reason == "load test"
    assert pages(incident) == 0
    assert incident.timeline.filter(text__startswith="Silenced: load test").exists()
    assert not silences.would_have_paged().exists()

    silences.silence_delete(silence=silence, actor=lead)
    assert list(silences.would_have_paged()) == [incident]
    check_alert(env, "critical", firing=False)
    after = check_alert(env, "critical")  # fires again after the silence ended (the incident reopens)
    incident.refresh_from_db()
    assert after.incident_id == incident.pk and after.silenced_reason == ""
    assert incident.silenced_until is None and pages(incident) == 1


def test_an_unsilenced_alert_joining_a_silenced_incident_pages(env, lead):
    silences.silence_create(matchers={"environment": "staging", "metric": "error_rate", "check": "staging-error-rate-warning"},
                            starts_at=None, ends_at=timezone.now() + dt.timedelta(hours=1), reason="known", actor=lead)
    incident = check_alert(env, "warning").incident
    assert pages(incident) == 0
    check_alert(env, "critical")  # the same condition, not covered by the silence
    incident.refresh_from_db()
    assert incident.silenced_until is None and incident.severity == "critical" and pages(incident) == 1


def test_a_maintenance_window_recurring_weekly_silences_during_its_occurrence(env, lead):
    now = timezone.now().replace(microsecond=0)  # RRULE occurrences are whole seconds
    window = silences.maintenance_create(name="Patch Tuesday", matchers={"environment": "staging"}, starts_at=now - dt.timedelta(days=7, minutes=5),
                                         duration_minutes=30, rrule="FREQ=WEEKLY", reason="OS patches", actor=lead)
    assert silences.occurrence_at(window, now) == now - dt.timedelta(minutes=5) + dt.timedelta(minutes=30)
    assert silences.occurrence_at(window, now + dt.timedelta(hours=1)) is None
    incident = check_alert(env, "critical").incident
    assert incident.silenced_reason.startswith("maintenance: Patch Tuesday") and pages(incident) == 0


def test_silence_validation(env, lead):
    with pytest.raises(silences.SilenceInvalid):
        silences.silence_create(matchers={}, starts_at=None, ends_at=timezone.now() + dt.timedelta(hours=1), reason="x", actor=lead)
    with pytest.raises(silences.SilenceInvalid):
        silences.silence_create(matchers={"a": "b"}, starts_at=None, ends_at=timezone.now() - dt.timedelta(hours=1), reason="x", actor=lead)
    with pytest.raises(silences.SilenceInvalid):
        silences.maintenance_create(name="x", matchers={"a": "b"}, starts_at=timezone.now(), duration_minutes=10, rrule="FREQ=SOMETIMES",
                                    reason="x", actor=lead)


def test_grouping_rule_preview_counts_incidents_the_rule_would_have_made(env):
    for _ in range(3):  # three episodes of warning then critical, and the SNS alarm, on one metric
        check_alert(env, "warning")
        check_alert(env, "critical")
        sns_alarm(env)
        check_alert(env, "critical", firing=False)
        check_alert(env, "warning", firing=False)
        sns_alarm(env, state="OK")
    check_alert(env, "critical", metric="cpu")
    rule = GroupingRule.objects.get(slug="same-condition")
    before = grouping.grouping_preview(rules=[])
    after = grouping.grouping_preview(rules=[rule])
    # Without the rule each source and severity is its own incident: warning, critical, alarm, cpu.
    assert before.incidents == 4 and before.alerts == 4
    # With it (a 30-minute window) the episodes reopen one error-rate incident, and cpu is its own.
    assert after.incidents == 2
    assert "would have made 2 incidents instead of 4" in after.sentence(before)
