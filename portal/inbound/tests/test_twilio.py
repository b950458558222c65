"""Answering SMS and voice pages through the Twilio webhooks: real Twilio library (signatures, TwiML),
pages sent through the sandbox's Twilio stand-in; time driven by the sweep's `now`."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import pytest
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.inbound import twilio
from portal.inbound.tests.conftest import FORM, NUMBER, fire, person, sent
from portal.incidents import services
from portal.incidents.models import Incident, PersonalPage, TimelineEntry
from portal.incidents.paging import reply_code
from portal.incidents.tasks import sweep_personal_pages
from portal.oncall import services as oncall

pytestmark = pytest.mark.django_db(transaction=True)


def test_reply_4_acknowledges_the_incident_and_the_voice_call_that_was_due_is_never_placed(twilio_standin, primary, responder, phone):
    person(responder)
    inc = fire()
    [page] = sent("sms")
    what, how = page.body.split("\n")
    assert what == f"[CRITICAL] INC-{inc.pk} {inc.title} (no environment): 5xx above 5% https://ops.example.test{inc.get_absolute_url()}"
    assert how == f"Reply 4 ack, 6 resolve, 8 escalate. Several pages open? Add the code: ack {reply_code(inc)}"

    answer = phone.sms("4")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/xml")
    assert f"<Message>Acknowledged INC-{inc.pk} as {responder.username}</Message>" in answer.content.decode()
    inc.refresh_from_db()
    assert inc.status == Incident.Status.ACKNOWLEDGED and inc.acknowledged_by == responder.username
    voice = PersonalPage.objects.get(incident=inc, kind="voice")
    assert voice.status == PersonalPage.Status.CANCELLED  # at once, not when it would have been due
    sweep_personal_pages(now=(timezone.now() + timedelta(minutes=10)).isoformat())
    assert sent("call") == []


def test_timeline_and_audit_say_acknowledged_by_the_person_via_sms(twilio_standin, primary, responder, phone):
    person(responder)
    inc = fire()
    phone.sms("ack")
    entry = TimelineEntry.objects.get(incident=inc, kind=TimelineEntry.Kind.ACKNOWLEDGED)
    assert (entry.actor_label, entry.text, entry.data) == (responder.username, "Acknowledged via SMS", {"via": "SMS"})
    row = AuditEvent.objects.get(verb="incident.acknowledge", target_id=str(inc.public_id))
    assert (row.actor_label, row.extra) == (responder.username, {"via": "SMS"})


def test_ack_with_a_code_picks_one_of_two_open_pages_and_without_a_code_nothing_changes(twilio_standin, primary, responder, phone):
    person(responder)
    first, second = fire(), fire(name="DatabaseDown", fp="d1")
    assert len(sent("sms")) == 2
    before = AuditEvent.objects.count()
    answer = phone.sms("ack").content.decode()
    assert "2 pages are open" in answer and reply_code(first) in answer and reply_code(second) in answer
    assert AuditEvent.objects.count() == before
    assert set(Incident.objects.values_list("status", flat=True)) == {"triggered"}

    answer = phone.sms(f"ack {reply_code(second).lower()}").content.decode()
    assert f"Acknowledged INC-{second.pk} as {responder.username}" in answer
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("triggered", "acknowledged")


def test_resolve_and_escalate_words(twilio_standin, primary, responder, lead, phone):
    person(responder)
    inc = fire()
    assert f"Escalated INC-{inc.pk} to level 2" in phone.sms("8").content.decode()
    assert TimelineEntry.objects.filter(incident=inc, kind="escalation", text__contains="via SMS").exists()
    assert f"Resolved INC-{inc.pk} as {responder.username}" in phone.sms("resolve").content.decode()
    inc.refresh_from_db()
    assert inc.status == "resolved" and inc.resolved_by == responder.username
    assert "no open page" in phone.sms("6").content.decode()


def test_a_wrong_signature_gets_403_and_changes_nothing(twilio_standin, primary, responder, phone):
    person(responder)
    inc = fire()
    before = AuditEvent.objects.count()
    answer = phone.sms("4", signature="bm90IGEgc2lnbmF0dXJl")
    assert answer.status_code == 403 and answer.json()["error"] == "bad_signature"
    assert phone.client.post("/api/v1/inbound/twilio/sms", urlencode({"From": NUMBER, "Body": "4"}), content_type=FORM).status_code == 403  # unsigned
    assert phone.client.post("/api/v1/inbound/twilio/sms", {"From": NUMBER, "Body": "4"}).status_code == 400  # not a form as Twilio posts
    # Signed for another URL: the signature covers PORTAL_PUBLIC_URL + path.
    data = {"From": NUMBER, "Body": "4"}
    elsewhere = twilio.signature_for("https://elsewhere.example.test/api/v1/inbound/twilio/sms", data)
    assert phone.client.post("/api/v1/inbound/twilio/sms", urlencode(data), content_type=FORM,
                             headers={"X-Twilio-Signature": elsewhere}).status_code == 403
    inc.refresh_from_db()
    assert inc.status == "triggered" and AuditEvent.objects.count() == before
    assert phone.post("/api/v1/inbound/twilio/sms", data).status_code == 200  # the same body signed for our URL is taken
    inc.refresh_from_db()
    assert inc.status == "acknowledged"


def test_a_reply_from_an_unknown_or_unverified_number_changes_nothing(twilio_standin, primary, responder, phone):
    person(responder)
    inc = fire()
    oncall.contact_method_add(user=responder, kind="sms", value="+15550100077", actor="system:test", verified=False)
    before = AuditEvent.objects.count()
    for number in ("+15550109999", "+15550100077"):
        answer = phone.sms("4", sender=number)
        assert answer.status_code == 200 and "not a verified contact method" in answer.content.decode()
    inc.refresh_from_db()
    assert inc.status == "triggered" and AuditEvent.objects.count() == before


def test_voice_gather_digit_6_resolves(twilio_standin, primary, responder, phone):
    person(responder, rules=(("voice", 0),))
    inc = fire()
    [call] = sent("call")
    assert "Press 4 to acknowledge, 6 to resolve, 8 to escalate" in call.body
    action = re.search(r'<Gather action="([^"]+)"', call.raw["Twiml"]).group(1).replace("&amp;", "&")
    assert action.startswith("https://ops.example.test/api/v1/inbound/twilio/voice?page=")
    path = urlsplit(action).path + "?" + urlsplit(action).query
    form = {"CallSid": call.provider_id, "From": "+15005550006", "To": NUMBER, "AccountSid": "AC0123456789test"}

    offer = phone.post(path, form)  # no key yet: read the incident, offer the keys
    assert offer.status_code == 200 and "<Gather" in offer.content.decode() and inc.title in offer.content.decode()
    assert phone.post(path, {**form, "Digits": "6"}, signature="d3Jvbmc=").status_code == 403
    inc.refresh_from_db()
    assert inc.status == "triggered"

    answer = phone.post(path, {**form, "Digits": "6"}).content.decode()
    assert f"Resolved incident {inc.pk} as {responder.username}" in answer and "<Hangup" in answer
    inc.refresh_from_db()
    assert inc.status == "resolved"
    assert TimelineEntry.objects.get(incident=inc, kind="resolved").data == {"via": "voice call"}
    # The same key from a number the page did not call does nothing.
    other = phone.post(path, {**form, "To": "+15550109999", "Digits": "4"}).content.decode()
    assert "Nothing changed" in other


def test_a_second_answer_says_who_acknowledged_first_and_changes_nothing(twilio_standin, primary, responder, lead, phone):
    person(responder)
    inc = fire()
    services.incident_acknowledge(incident=inc, actor=lead)
    before = AuditEvent.objects.count()
    answer = phone.sms("4").content.decode()
    assert f"INC-{inc.pk} is already acknowledged by {lead.username}; nothing changed" in answer
    assert AuditEvent.objects.count() == before
