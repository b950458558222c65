"""Escalation levels that page a schedule's on-call person (or a named one) by their rules, through the
real Twilio library to the sandbox's Twilio stand-in; time is driven by calling the sweep with `now`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.incidents import escalation, ingest, paging, services
from portal.incidents.models import EscalationLevel, EscalationPolicy, NotificationChannel, PersonalPage
from portal.incidents.tasks import sweep_personal_pages
from portal.oncall import services as oncall
from portal.oncall.models import ContactMethod
from portal.sandbox import standins
from portal.sandbox.models import SandboxMessage

pytestmark = pytest.mark.django_db(transaction=True)


def fire(name="HighErrorRate", fp="e1", severity="critical"):
    return ingest.alert_ingest_internal(source="health", fingerprint=fp, name=name, severity=severity, firing=True,
                                        summary="5xx above 5%", labels={"service": "api"}).incident


def person(user, number, *, verified=True, rules=(("sms", 0), ("voice", 3))):
    oncall.contact_method_add(user=user, kind="sms", value=number, actor="system:test", verified=verified)
    oncall.contact_method_add(user=user, kind="voice", value=number, actor="system:test", verified=verified)
    for kind, delay in rules:
        oncall.notification_rule_add(user=user, severity="critical", kind=kind, delay_minutes=delay, actor="system:test")


@pytest.fixture
def primary(lead, responder):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    schedule = oncall.schedule_create(slug="primary", name="Primary", actor=lead, layers=[
        {"members": [responder.username], "shift_hours": 24, "starts_at": start}])
    policy = EscalationPolicy.objects.create(severity="critical", name="Critical", repeat=False)
    channel = NotificationChannel.objects.create(name="leads email", kind="email", target="leads@example.test")
    level = EscalationLevel.objects.create(policy=policy, number=1, delay_minutes=0, target_schedule=schedule)
    EscalationLevel.objects.create(policy=policy, number=2, delay_minutes=30).channels.set([channel])
    return schedule, level


def sent(kind):
    standins.record.flush()
    return list(SandboxMessage.objects.filter(kind=kind).order_by("received_at", "id"))


def test_critical_alert_pages_sms_at_once_voice_after_the_delay_and_nothing_after_ack(twilio_standin, primary, responder):
    person(responder, "+15550100001")
    inc = fire()
    sms = sent("sms")
    assert [(m.to, m.sender) for m in sms] == [("+15550100001", "+15005550006")] and "HighErrorRate" in sms[0].body
    assert sent("call") == []
    assert PersonalPage.objects.get(incident=inc, kind="sms").provider_id == sms[0].provider_id  # the library parsed the answer
    sweep_personal_pages(now=(timezone.now() + timedelta(minutes=2)).isoformat())
    assert sent("call") == []  # not due yet
    sweep_personal_pages(now=(timezone.now() + timedelta(minutes=3, seconds=5)).isoformat())
    calls = sent("call")
    assert [c.to for c in calls] == ["+15550100001"] and "HighErrorRate" in calls[0].body

    # A second incident: acknowledged before the voice call is due, so no call follows.
    second = fire(name="DatabaseDown", fp="d1")
    assert len(sent("sms")) == 2
    services.incident_acknowledge(incident=second, actor=responder)
    sweep_personal_pages(now=(timezone.now() + timedelta(minutes=10)).isoformat())
    assert len(sent("call")) == 1 and len(sent("sms")) == 2
    voice = PersonalPage.objects.get(incident=second, kind="voice")
    assert voice.status == "cancelled" and "acknowledged" in voice.error


def test_an_override_moves_the_next_page_to_the_covering_person(twilio_standin, primary, responder, responder2, lead):
    schedule, _ = primary
    person(responder, "+15550100001")
    person(responder2, "+15550100002")
    inc = fire()
    assert [m.to for m in sent("sms")] == ["+15550100001"]
    oncall.override_create(schedule=schedule, user=responder2, starts_at=timezone.now(),
                           ends_at=timezone.now() + timedelta(hours=4), actor=lead)
    sweep_personal_pages(now=(timezone.now() + timedelta(minutes=4)).isoformat())
    assert [c.to for c in sent("call")] == ["+15550100002"]  # the voice call went to the covering person
    assert PersonalPage.objects.get(incident=inc, user=responder, kind="voice").status == "moved"
    assert PersonalPage.objects.get(incident=inc, user=responder2, kind="voice").status == "sent"


def test_an_unverified_number_is_never_paged(twilio_standin, primary, responder):
    person(responder, "+15550100009", verified=False)
    standins.record.flush()
    SandboxMessage.objects.all().delete()  # the verification codes went out to it; pages must not
    inc = fire()
    sweep_personal_pages(now=(timezone.now() + timedelta(minutes=10)).isoformat())
    assert sent("sms") == [] and sent("call") == []
    assert set(PersonalPage.objects.filter(incident=inc).values_list("status", flat=True)) == {"failed"}
    method = ContactMethod.objects.get(user=responder, kind="sms")
    assert oncall.test_page_send(method=method, actor=responder).result == "sent"  # its own test page does go
    assert [m.to for m in sent("sms")] == ["+15550100009"]


def test_a_level_naming_a_person_pages_them_on_slack_through_the_sdk(slack_standin, responder):
    oncall.contact_method_add(user=responder, kind="slack", value="U024BE7LH", actor="system:test", verified=True)
    oncall.notification_rule_add(user=responder, severity="warning", kind="slack", delay_minutes=0, actor="system:test")
    policy = EscalationPolicy.objects.create(severity="warning", name="Warning", repeat=False)
    EscalationLevel.objects.create(policy=policy, number=1, delay_minutes=0, target_user=responder)
    inc = fire(name="SlowResponses", fp="s1", severity="warning")
    slack = sent("slack")
    assert [m.to for m in slack] == ["U024BE7LH"] and "SlowResponses" in slack[0].body
    assert PersonalPage.objects.get(incident=inc).status == "sent"


def test_escalating_twice_plans_each_rule_once(twilio_standin, primary, responder):
    person(responder, "+15550100001")
    inc = fire()
    assert paging.pages_plan(inc=inc, level=1, round_=0, user=responder, schedule=primary[0],
                             started_at=timezone.now(), now=timezone.now()) == []
    assert escalation.escalations_due(now=timezone.now()) == []
    assert PersonalPage.objects.filter(incident=inc).count() == 2
