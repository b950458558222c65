"""Shift handoffs: recorded once per shift, the note's contents, delivery by the incoming person's rules."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.checklist.models import ChecklistItem, ItemStatus
from portal.cloud.models import Environment
from portal.errors import Forbidden, Invalid
from portal.handoff import services, tasks
from portal.handoff.models import DeliveryStatus, OutgoingNote, ShiftHandoff
from portal.incidents import ingest
from portal.oncall import delivery
from portal.oncall import services as oncall_services

pytestmark = pytest.mark.django_db


@pytest.fixture
def start():
    return timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


@pytest.fixture
def schedule(lead, responder, responder2, start):
    """responder2 until start + 12 h, then the lead."""
    return oncall_services.schedule_create(slug="primary", name="Primary", time_zone="Europe/Berlin", actor=lead, layers=[
        {"members": [responder2.username, lead.username], "shift_hours": 12, "starts_at": start}])


@pytest.fixture
def sent(monkeypatch):
    out = []
    for kind in ("sms", "email", "voice", "slack"):
        monkeypatch.setitem(delivery.TRANSPORTS, kind, lambda m: out.append(m) or delivery.DeliveryResult(True, "ok", "id-1"))
    return out


def test_the_first_shift_is_a_baseline_and_the_next_is_one_handoff_however_often_the_check_runs(schedule, lead, responder2, start, sent):
    now = start + timedelta(hours=2)
    [baseline] = services.shift_handoffs_record(now=now)
    assert (baseline.incoming, baseline.outgoing, baseline.shift_start) == (responder2, None, start)
    assert baseline.delivery_status == DeliveryStatus.SKIPPED
    assert services.shift_handoffs_record(now=now + timedelta(minutes=1)) == []

    change = start + timedelta(hours=12, minutes=1)
    [handoff] = services.shift_handoffs_record(now=change)
    assert services.shift_handoffs_record(now=change) == []
    assert services.shift_handoffs_record(now=change + timedelta(minutes=1)) == []
    assert ShiftHandoff.objects.filter(schedule=schedule).count() == 2
    assert (handoff.incoming, handoff.outgoing, handoff.shift_start) == (lead, responder2, start + timedelta(hours=12))
    assert handoff.delivery_status == DeliveryStatus.PENDING
    assert AuditEvent.objects.filter(verb="handoff.shift.record").count() == 2
    assert sent == []  # the baseline sent nothing


def test_the_handoff_goes_to_the_incoming_persons_verified_methods_by_their_rules_once(schedule, lead, start, sent):
    oncall_services.contact_method_add(user=lead, kind="sms", value="+15550100001", actor="system:test", verified=True)
    oncall_services.contact_method_add(user=lead, kind="email", value="lena@example.test", actor="system:test")  # unverified
    for kind in ("sms", "email"):
        oncall_services.notification_rule_add(user=lead, severity="warning", kind=kind, delay_minutes=5, actor=lead)
    services.shift_handoffs_record(now=start + timedelta(hours=2))
    [handoff] = services.shift_handoffs_record(now=start + timedelta(hours=12, minutes=1))
    sent.clear()  # the unverified email's verification code

    assert services.handoff_deliver(handoff_id=handoff.pk) == DeliveryStatus.SENT
    assert services.handoff_deliver(handoff_id=handoff.pk) == "skipped"
    assert [(m.kind, m.to, m.purpose) for m in sent] == [("sms", "+15550100001", "handoff")]
    assert "You are on call for Primary" in sent[0].body and "taking over from rita-responder" in sent[0].body
    handoff.refresh_from_db()
    assert handoff.deliveries == [
        {"kind": "email", "to": "", "ok": False, "detail": "no verified email method"},
        {"kind": "sms", "to": "+15550100001", "ok": True, "detail": "ok"},
    ]
    assert AuditEvent.objects.get(verb="handoff.deliver").after["status"] == "sent"


def test_the_note_says_incidents_automation_sign_offs_and_what_the_outgoing_person_wrote(schedule, responder2, viewer, start, sent):
    incident = ingest.alert_ingest_internal(source="health", fingerprint="e1", name="HighErrorRate", severity="critical",
                                            firing=True, summary="5xx above 5%", labels={"service": "api"}).incident
    Environment.objects.create(name="staging", is_production=False, endpoint_url="http://127.0.0.1:9",
                               automation_paused=True, automation_paused_reason="investigating")
    ChecklistItem.objects.create(slug="backups", title="Backups restore", status=ItemStatus.SIGNED_OFF,
                                 signed_off_at=start, attested_until=start + timedelta(days=3))
    ChecklistItem.objects.create(slug="later", title="Later", status=ItemStatus.SIGNED_OFF,
                                 signed_off_at=start, attested_until=start + timedelta(days=60))
    services.shift_handoffs_record(now=start + timedelta(hours=2))
    with pytest.raises(Forbidden):
        services.outgoing_note_write(schedule=schedule, text="hi", actor=viewer)
    with pytest.raises(Invalid):
        services.outgoing_note_write(schedule=schedule, text="  ", actor=responder2)
    services.outgoing_note_write(schedule=schedule, text="Disk on db-2 at 80 %, watch it.", actor=responder2)
    assert AuditEvent.objects.filter(verb="handoff.note.write").count() == 1

    tasks.check_shift_changes(now=(start + timedelta(hours=12, minutes=1)).isoformat())
    handoff = ShiftHandoff.objects.order_by("-shift_start").first()
    note = handoff.note
    assert [i["title"] for i in note["incidents"]] == [incident.title]
    assert note["automation"] == [{"environment": "staging", "paused": True, "reason": "investigating", "dry_run": False}]
    assert [s["slug"] for s in note["sign_offs"]] == ["backups"]
    assert note["rollouts"] == []
    assert OutgoingNote.objects.get().handoff == handoff
    text = services.handoff_message_text(handoff)
    assert "Disk on db-2 at 80 %" in text and "Automation paused on: staging" in text and incident.title in text


def test_the_oncall_page_loads_the_handoff_note_and_a_responder_leaves_one(client, schedule, responder, viewer, start):
    services.shift_handoffs_record(now=start + timedelta(hours=2))
    client.force_login(viewer)
    assert 'hx-get="/oncall/handoff/"' in client.get("/oncall/").content.decode()
    body = client.get("/oncall/handoff/").content.decode()
    assert 'data-testid="handoff-primary"' in body and "rita-responder" in body and "Leave note" not in body
    client.force_login(responder)
    response = client.post("/oncall/handoff/notes/", {"schedule": "primary", "text": "All quiet."})
    assert response.status_code == 302 and response["Location"] == "/oncall/"
    assert "All quiet." in client.get("/oncall/handoff/").content.decode()


def test_the_seed_registers_the_check_every_minute(db):
    from django_celery_beat.models import PeriodicTask

    from portal.handoff.seed import seed

    seed({}, reset=False)
    seed({}, reset=False)
    row = PeriodicTask.objects.get(task="portal.handoff.tasks.check_shift_changes")
    assert row.interval.every == 60 and row.queue == "default"
