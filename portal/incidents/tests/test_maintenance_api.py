"""The maintenance windows API: one-off and recurring windows on an environment, audited; an alert
matching during a window is stored and pages nobody; bad input is a 422 that changes nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.cloud.models import Environment
from portal.incidents import escalation, ingest, silences
from portal.incidents.models import Alert, Incident, MaintenanceWindow, TimelineEntry
from portal.incidents.seed import seed
from portal.plan.loader import load_plan

URL = "/api/v1/maintenance-windows"


@pytest.fixture
def env(db):
    seed(load_plan(), reset=False)  # the escalation policies: an unsilenced alert pages level 1
    return Environment.objects.create(name="staging", alb_dimension="app/ftw-staging/abc123",
                                      blue_tg_dimension="targetgroup/ftw-blue/1", green_tg_dimension="targetgroup/ftw-green/2")


@pytest.fixture
def act(make_token):
    return make_token("actions")


def check_alert(env, *, metric: str = "error_rate", severity: str = "critical") -> Alert:
    """What a failing metric-threshold health check raises."""
    slug = f"{env.name}-{metric.replace('_', '-')}-{severity}"
    return ingest.alert_ingest_internal(
        source="health", fingerprint=f"check:{slug}", name=f"Health check failing: {slug}", severity=severity, firing=True,
        summary=f"{metric} breach", labels={"check": slug, "kind": "metric_threshold", "group": "metrics", "metric": metric},
        environment=env, grouping_key=f"check:{slug}")


def pages(incident: Incident) -> int:
    escalation.escalations_due(now=timezone.now() + dt.timedelta(seconds=1))
    return incident.timeline.filter(kind=TimelineEntry.Kind.ESCALATION).count()


def iso(value: dt.datetime) -> str:
    return value.isoformat()


def delete(api_client, window_id, token):
    return api_client.c.delete(f"{URL}/{window_id}", headers={"Authorization": f"Bearer {token}"})


def test_a_one_off_window_holds_the_page_keeps_the_alert_and_deleting_it_ends_it(api_client, env, act, make_token):
    now = timezone.now()
    r = api_client.post(URL, {"environment": "staging", "starts_at": iso(now - dt.timedelta(minutes=5)),
                              "ends_at": iso(now + dt.timedelta(minutes=55)), "matchers": {"metric": "error_rate"},
                              "reason": "RDS minor version upgrade"}, token=act)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["matchers"] == {"metric": "error_rate", "environment": "staging"} and body["environment"] == "staging"
    assert body["duration_minutes"] == 60 and body["rrule"] == "" and body["active"] is True
    assert body["name"] == "RDS minor version upgrade"  # no name given: the reason names it
    window = MaintenanceWindow.objects.get(public_id=body["id"])
    event = AuditEvent.objects.get(verb="maintenance.create")
    assert event.target_type == "maintenance_window" and event.target_id == body["id"] and event.actor_token_id is not None
    listed = api_client.get(URL, token=make_token("read")).json()
    assert [w["id"] for w in listed] == [body["id"]]

    alert = check_alert(env)
    incident = alert.incident
    assert Alert.objects.filter(pk=alert.pk).exists()  # stored and visible
    assert alert.silenced_reason == silences.window_reason(window)
    assert incident.silenced_reason.startswith("maintenance: RDS minor version upgrade") and pages(incident) == 0
    other = check_alert(env, metric="cpu").incident  # not matched: pages as ever
    assert other.silenced_until is None and pages(other) == 1

    r = delete(api_client, body["id"], act)
    assert r.status_code == 200 and r.json()["active"] is False
    assert not MaintenanceWindow.objects.exists()
    assert AuditEvent.objects.filter(verb="maintenance.delete").count() == 1
    assert api_client.get(URL, token=act).json() == []
    incident.refresh_from_db()
    assert incident.silenced_until <= timezone.now()
    assert incident in list(silences.would_have_paged())  # the page nobody got is listed
    assert silences.hold_for({"environment": "staging", "metric": "error_rate"}) is None
    again = check_alert(env)  # the same breach, still firing after the window was removed: it pages now
    incident.refresh_from_db()
    assert again.incident_id == incident.pk and again.silenced_reason == "" and incident.silenced_until is None
    assert pages(incident) == 1
    assert delete(api_client, body["id"], act).status_code == 404
    assert delete(api_client, "not-a-uuid", act).status_code == 404


def test_a_recurring_window_silences_during_its_occurrence_only(api_client, env, act):
    now = timezone.now().replace(microsecond=0)  # RRULE occurrences are whole seconds
    first = now - dt.timedelta(days=7, minutes=10)
    r = api_client.post(URL, {"environment": "staging", "starts_at": iso(first), "duration_minutes": 30,
                              "rrule": "RRULE:FREQ=WEEKLY", "name": "Patch night", "reason": "OS patches"}, token=act)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["rrule"] == "FREQ=WEEKLY" and body["active"] is True
    assert dt.datetime.fromisoformat(body["active_until"].replace("Z", "+00:00")) == now + dt.timedelta(minutes=20)
    assert dt.datetime.fromisoformat(body["next_starts_at"].replace("Z", "+00:00")) == first + dt.timedelta(days=14)
    window = MaintenanceWindow.objects.get(public_id=body["id"])
    assert silences.occurrence_at(window, now + dt.timedelta(minutes=25)) is None  # between occurrences
    assert silences.occurrence_at(window, now + dt.timedelta(days=7)) is not None  # next week's

    incident = check_alert(env).incident  # any alert on staging during the occurrence
    assert incident.silenced_reason == "maintenance: Patch night (OS patches)" and pages(incident) == 0
    assert Alert.objects.filter(incident=incident).count() == 1


BAD = [
    ({"rrule": "FREQ=SOMETIMES"}, "FREQ=SOMETIMES"),
    ({"rrule": "BYDAY=TU"}, "needs a FREQ"),
    ({"rrule": "FREQ=WEEKLY;BYDAY=XX"}, "not an RRULE"),
    ({"rrule": "FREQ=MINUTELY"}, "at most hourly"),
    ({"rrule": "FREQ=WEEKLY;INTERVAL=0"}, "INTERVAL"),
    ({"rrule": "FREQ=WEEKLY;COUNT=0"}, "COUNT"),
    ({"rrule": "FREQ=WEEKLY;DTSTART=20300101"}, "not an RRULE part"),
    ({"rrule": "hello"}, "not NAME=value"),
    ({"rrule": "FREQ=WEEKLY\nEXDATE:20300101T000000Z"}, "control character"),
    ({"rrule": "FREQ=WEEKLY;UNTIL=20300101T000000"}, "UTC"),
    ({"rrule": "FREQ=WEEKLY;UNTIL=20200101T000000Z"}, "no occurrence left"),
    ({"rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "no occurrence"),
    ({"rrule": "FREQ=WEEKLY;" + "BYDAY=MO;" * 40 + "WKST=MO"}, "at most 300"),
    ({"environment": "nowhere"}, "no environment is named 'nowhere'"),
    ({"environment": ""}, "environment is required"),
    ({"matchers": {"environment": "production"}}, "differs from environment"),
    ({"duration_minutes": None}, "ends_at or duration_minutes"),
    ({"ends_at": "2030-01-01T02:00:00Z"}, "ends_at or duration_minutes"),
    ({"duration_minutes": 0}, "between 1 minute and 7 days"),
    ({"duration_minutes": 8 * 24 * 60}, "between 1 minute and 7 days"),
    ({"duration_minutes": None, "ends_at": "2029-12-31T23:00:00Z"}, "after starts_at"),
    ({"starts_at": "2030-01-01T00:00:00"}, "time zone"),
    ({"starts_at": "2020-01-01T00:00:00Z"}, "already ended"),
    ({"starts_at": "tomorrow"}, "starts_at"),
    ({"reason": "  "}, "reason"),
    ({"reason": "x\u0000"}, "control character"),
    ({"matchers": {"metric": ""}}, "non-empty value"),
]


@pytest.mark.parametrize(("change", "words"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_a_422_with_a_clear_message_and_changes_nothing(api_client, env, act, change, words):
    body = {"environment": "staging", "starts_at": "2030-01-01T00:00:00Z", "duration_minutes": 60, "reason": "planned work"}
    body.update(change)
    before = AuditEvent.objects.count()
    r = api_client.post(URL, body, token=act)
    assert r.status_code == 422, r.content
    assert r.json()["error"] == "invalid" and words in r.json()["detail"], r.json()
    assert not MaintenanceWindow.objects.exists() and AuditEvent.objects.count() == before


def test_a_viewer_token_may_read_but_not_plan_or_remove(api_client, env, act, make_token):
    read = make_token("read")
    body = {"environment": "staging", "starts_at": "2030-01-01T00:00:00Z", "duration_minutes": 60, "reason": "planned"}
    r = api_client.post(URL, body, token=read)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert not MaintenanceWindow.objects.exists()
    created = api_client.post(URL, body, token=act).json()
    assert api_client.get(URL, token=read).status_code == 200
    assert delete(api_client, created["id"], read).status_code == 403
    assert MaintenanceWindow.objects.count() == 1
    assert api_client.post(URL, body).status_code == 401
