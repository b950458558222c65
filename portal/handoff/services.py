"""Shift handoffs: record each shift change once, with its generated note, and tell the incoming person.

`shift_handoffs_record` runs every minute (beat): per schedule it compares whoever is on call now with
the schedule's latest recorded handoff. A new stint is a new ShiftHandoff (the unique constraint on
schedule + shift start keeps one, whichever run gets there first); the delivery is enqueued after
commit and sends the note by the incoming person's rules, to verified methods only. The first stint
ever recorded for a schedule is a baseline: recorded and shown, not sent (installing this is no handoff).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.actors import Actor
from portal.audit.services import audit_record
from portal.errors import Forbidden, Invalid
from portal.handoff import selectors
from portal.handoff.models import DeliveryStatus, OutgoingNote, ShiftHandoff
from portal.oncall import delivery
from portal.oncall import selectors as oncall_selectors
from portal.oncall.models import ContactKind, Schedule, Severity
from portal.oncall.services import powers_of
from portal.tasking import enqueue

log = logging.getLogger(__name__)
DELIVER_TASK = "portal.handoff.tasks.deliver_handoff"
NOTE_MAX = 2000
SYSTEM = "system:handoff"


def outgoing_note_write(*, schedule: Schedule, text: str, actor) -> OutgoingNote:
    """Someone on call leaves a note for the next person; the next handoff of `schedule` carries it."""
    powers = powers_of(actor)
    if not powers.respond:
        raise Forbidden("handoff notes are written by responders")
    text = (text or "").strip()
    if not text:
        raise Invalid("write something for the next person on call")
    if len(text) > NOTE_MAX:
        raise Invalid(f"a handoff note is at most {NOTE_MAX} characters")
    with transaction.atomic():
        note = OutgoingNote.objects.create(schedule=schedule, author=powers.user, author_label=Actor.of(actor).label,
                                           text=text, written_at=timezone.now())
        audit_record(actor=actor, verb="handoff.note.write", target=note, after={"schedule": schedule.slug, "text": text})
    return note


def _changed(schedule: Schedule, now: datetime):
    """The stint that starts a new shift on `schedule`, or None (nobody on call, or no change)."""
    stint = oncall_selectors.current_stint(schedule, now)
    if stint is None:
        return None, None
    last = selectors.latest_handoff(schedule)
    if last is not None:
        if last.shift_start == stint.start:
            return None, last
        # A stint longer than the look-back starts where the look-back does: the same person, no change.
        clipped = stint.start <= now - oncall_selectors.STINT_LOOKBACK
        if clipped and last.incoming == stint.user:
            return None, last
    return stint, last


def shift_handoff_record(*, schedule: Schedule, now: datetime) -> ShiftHandoff | None:
    """Record the handoff of `schedule` if its shift changed since the last one recorded (idempotent)."""
    stint, last = _changed(schedule, now)
    if stint is None:
        return None
    note = selectors.handoff_note(now=now)  # read before the transaction: the cost read may call the cloud
    outgoing = last.incoming if last is not None else None
    baseline = last is None
    try:
        with transaction.atomic():
            handoff = ShiftHandoff.objects.create(
                schedule=schedule, shift_start=stint.start, incoming=stint.user, outgoing=outgoing, created_at=now,
                note=note, delivery_status=DeliveryStatus.SKIPPED if baseline else DeliveryStatus.PENDING,
                deliveries=[{"detail": "the first shift recorded on this schedule: shown, not sent"}] if baseline else [],
            )
            carried = OutgoingNote.objects.filter(schedule=schedule, handoff__isnull=True).update(handoff=handoff)
            audit_record(actor=SYSTEM, verb="handoff.shift.record", target=handoff, after={
                "schedule": schedule.slug, "shift_start": stint.start, "incoming": stint.user.get_username(),
                "outgoing": outgoing.get_username() if outgoing else None, "notes": carried, "baseline": baseline})
            if not baseline:
                enqueue(DELIVER_TASK, handoff.pk)
    except IntegrityError:
        return None  # another run recorded this shift first
    return handoff


def shift_handoffs_record(*, now: datetime | None = None) -> list[ShiftHandoff]:
    """The beat task's body: every schedule, one at a time (one bad schedule does not stop the rest)."""
    now = now or timezone.now()
    out = []
    for schedule in oncall_selectors.schedules_with_layers():
        try:
            handoff = shift_handoff_record(schedule=schedule, now=now)
        except Exception:  # noqa: BLE001 - logged; the next minute tries again
            log.exception("handoff check of %s failed", schedule.slug)
            continue
        if handoff is not None:
            out.append(handoff)
    return out


def handoff_message_text(handoff: ShiftHandoff) -> str:
    note = handoff.note or {}
    lines = [f"You are on call for {handoff.schedule.name} from {handoff.shift_start:%a %d %b %H:%M} UTC"
             + (f", taking over from {handoff.outgoing.get_username()}." if handoff.outgoing else ".")]
    incidents = note.get("incidents") or []
    lines.append(f"Open incidents: {len(incidents)}" + "".join(f"\n- [{i['severity']}] {i['title']} ({i['status']})" for i in incidents[:5]))
    rollouts = note.get("rollouts") or []
    if rollouts:
        lines.append("Rollouts: " + "; ".join(f"{r['environment']} {r['version']} {r['state_label']}" for r in rollouts))
    paused = [a["environment"] for a in note.get("automation") or [] if a.get("paused")]
    lines.append("Automation paused on: " + ", ".join(paused) if paused else "Automation: on everywhere")
    sign_offs = note.get("sign_offs") or []
    if sign_offs:
        lines.append("Sign-offs expiring: " + ", ".join(s["title"] for s in sign_offs))
    phase = note.get("phase") or {}
    if phase.get("number") is not None:
        cost = f", {phase['month_to_date']} of {phase['budget']} this month" if phase.get("month_to_date") else f", budget {phase['budget']}/month"
        lines.append(f"Phase {phase['number']} ({phase['name']}){cost}")
    for n in handoff.outgoing_notes.all():
        lines.append(f"Note from {n.author_label}: {n.text}")
    lines.append(settings.PORTAL_BASE_URL.rstrip("/") + "/oncall/")
    return "\n".join(lines)


def _handoff_kinds(user) -> list[str]:
    """By the person's rules for non-urgent pages (warning), all at once: a handoff waits for no ack.
    Without such rules, their critical rules' kinds; without any, email."""
    for severity in (Severity.WARNING, Severity.CRITICAL):
        kinds = sorted({kind for kind, _ in oncall_selectors.paging_rules(user, severity)})
        if kinds:
            return kinds
    return [ContactKind.EMAIL]


def handoff_deliver(*, handoff_id: int) -> str:
    """Send the note to the incoming person. Safe to run twice: the claim (pending -> sending) happens once."""
    claimed = ShiftHandoff.objects.filter(pk=handoff_id, delivery_status=DeliveryStatus.PENDING).update(
        delivery_status=DeliveryStatus.SENDING)
    if not claimed:
        return "skipped"
    handoff = ShiftHandoff.objects.select_related("schedule", "incoming", "outgoing").get(pk=handoff_id)
    results = []
    if handoff.incoming is not None:
        body = handoff_message_text(handoff)
        for kind in _handoff_kinds(handoff.incoming):
            method = oncall_selectors.verified_method(handoff.incoming, kind)
            if method is None:
                results.append({"kind": kind, "to": "", "ok": False, "detail": f"no verified {kind} method"})
                continue
            # The network call is made with no row lock held; the claim keeps a second run out.
            sent = delivery.send(delivery.Message(kind=kind, to=method.value, purpose="handoff",
                                                  subject=f"FTW Ops: you are on call for {handoff.schedule.name}", body=body,
                                                  spoken=f"F T W Ops. You are on call for {handoff.schedule.name}. The handoff note is in the portal."))
            results.append({"kind": kind, "to": method.value, "ok": sent.ok, "detail": sent.detail[:300]})
    status = DeliveryStatus.SENT if any(r["ok"] for r in results) else DeliveryStatus.FAILED
    with transaction.atomic():
        ShiftHandoff.objects.filter(pk=handoff.pk).update(delivery_status=status, deliveries=results)
        audit_record(actor=SYSTEM, verb="handoff.deliver", target=handoff, result="ok" if status == DeliveryStatus.SENT else "error",
                     after={"status": status, "deliveries": results})
    return status


REDELIVER_AFTER_SECONDS = 60


def handoffs_pending_resend(*, now: datetime | None = None) -> int:
    """The backstop: a handoff still pending a minute after it was recorded lost its task (broker down)."""
    now = now or timezone.now()
    ids = list(ShiftHandoff.objects.filter(delivery_status=DeliveryStatus.PENDING,
                                           created_at__lt=now - timedelta(seconds=REDELIVER_AFTER_SECONDS))
               .values_list("pk", flat=True)[:100])
    for pk in ids:
        enqueue(DELIVER_TASK, pk)
    return len(ids)
