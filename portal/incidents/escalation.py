"""Escalation: page the policy's levels in turn until someone acknowledges, and send each page.

A level pages its channels and, when it targets a schedule or a person, that person by their rules
(portal.incidents.paging). Pages go out through portal.notify; the incident's row lock orders a page
against an acknowledgement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from portal import notify
from portal.audit.services import audit_record
from portal.events import emit, incident_payload
from portal.incidents import paging
from portal.incidents.models import EscalationPolicy, Incident, Notification, TimelineEntry
from portal.incidents.services import InvalidTransition, incident_lock, timeline_write
from portal.tasking import enqueue

log = logging.getLogger(__name__)


@dataclass
class EscalationResult:
    level: int = 0
    notifications: tuple[int, ...] = ()


def _page_next_level(inc: Incident, *, now, actor, manual: bool = False, reason: str = "") -> EscalationResult:
    """Page the level after the last one paged (level 1 of the next round after the last level);
    the caller holds the incident's row lock."""
    policy = EscalationPolicy.objects.filter(severity=inc.severity).first()
    levels = (list(policy.levels.select_related("target_schedule", "target_user").prefetch_related("channels").order_by("number"))
              if policy else [])
    if policy is None or not levels:
        inc.next_escalation_at = None
        inc.save(update_fields=["next_escalation_at"])
        return EscalationResult()
    index, round_ = inc.escalation_level, inc.escalation_round  # index = levels already paged this round
    if index >= len(levels):
        if not policy.repeat and not manual:
            inc.next_escalation_at = None
            inc.save(update_fields=["next_escalation_at"])
            return EscalationResult()
        index, round_ = 0, round_ + 1
    level = levels[index]
    created = []
    for channel in level.channels.all():
        if not channel.enabled:
            continue
        n, made = Notification.objects.get_or_create(incident=inc, channel=channel, level=level.number, round=round_,
                                                     defaults={"manual": manual})
        if made:
            created.append(n.pk)
    inc.escalation_level, inc.escalation_round = index + 1, round_
    if inc.status != Incident.Status.TRIGGERED:
        inc.next_escalation_at = None
    elif index + 1 < len(levels):
        inc.next_escalation_at = now + timedelta(minutes=levels[index + 1].delay_minutes)
    elif policy.repeat:
        inc.next_escalation_at = now + timedelta(minutes=policy.repeat_after_minutes)
    else:
        inc.next_escalation_at = None
    inc.save(update_fields=["escalation_level", "escalation_round", "next_escalation_at"])
    person = paging.level_page_person(inc=inc, level=level, round_=round_, now=now)
    targets = [c.name for c in level.channels.all() if c.enabled]
    if person is not None:
        who = person.user.get_username() if isinstance(person.user, AbstractBaseUser) else "nobody"
        where = f" on call on {level.target_schedule}" if level.target_schedule_id else ""
        targets.append(f"{who}{where}" + (f", {person.note}" if person.note else ""))
    names = ", ".join(targets) or "no enabled channels"
    text = f"Level {level.number} paged ({names})" + (f": {reason}" if reason else "")
    timeline_write(inc, TimelineEntry.Kind.ESCALATION, actor, text, {"level": level.number, "round": round_, "manual": manual})
    if manual or index or round_:  # the first level is the page itself; every later one is an escalation
        emit("incident.escalated", incident_payload(inc))
    for pk in created:
        enqueue("portal.incidents.tasks.send_notification", pk)
    return EscalationResult(level=level.number, notifications=tuple(created))


def incident_escalate(*, incident_id: int, now=None) -> EscalationResult:
    """Page the next level when it is due. The incident row is locked, so an acknowledgement racing
    this either lands first (nothing is paged) or waits until the page is recorded."""
    now = now or timezone.now()
    with transaction.atomic():
        inc = Incident.objects.select_for_update().filter(pk=incident_id).first()
        if inc is None or inc.status != Incident.Status.TRIGGERED or inc.next_escalation_at is None or inc.next_escalation_at > now:
            return EscalationResult()
        return _page_next_level(inc, now=now, actor="system:escalation")


def incident_escalate_now(*, incident: Incident, actor, reason: str = "") -> EscalationResult:
    """A person asks for the next level now (e.g. a runbook step). Only a triggered incident pages:
    an acknowledged one has an owner and its policy pages no one (level 0 comes back)."""
    with transaction.atomic():
        inc = incident_lock(incident)
        if inc.status == Incident.Status.RESOLVED:
            raise InvalidTransition("the incident is resolved")
        if inc.status != Incident.Status.TRIGGERED:
            return EscalationResult()
        result = _page_next_level(inc, now=timezone.now(), actor=actor, manual=True, reason=reason)
        audit_record(actor=actor, verb="incident.escalate", target=inc, after={"level": result.level}, extra={"reason": reason})
    return result


def escalations_due(*, now=None) -> list[int]:
    now = now or timezone.now()
    ids = list(Incident.objects.filter(status=Incident.Status.TRIGGERED, next_escalation_at__lte=now).values_list("pk", flat=True)[:500])
    for pk in ids:
        incident_escalate(incident_id=pk, now=now)
    return ids


def _message(incident: Incident) -> tuple[str, str]:
    url = settings.PORTAL_BASE_URL.rstrip("/") + incident.get_absolute_url()
    subject = f"[{incident.severity.upper()}] {incident.title}"
    body = f"{subject}\nStatus: {incident.status}\nOpened: {incident.opened_at:%Y-%m-%d %H:%M UTC}\n{url}"
    return subject, body


def _deliver(notification: Notification) -> None:
    subject, body = _message(notification.incident)
    notify.deliver(channel=notification.channel, incident=notification.incident, subject=subject, body=body)


def notification_send(*, notification_id: int, final_attempt: bool = True) -> str:
    """Send one page, holding the incident's row lock so an acknowledgement cannot slip in between
    the status check and the send. Raises notify.NotificationError (for the task to retry) unless final."""
    incident_id = Notification.objects.filter(pk=notification_id).values_list("incident_id", flat=True).first()
    if incident_id is None:
        return "skipped"
    with transaction.atomic():
        # Incident first, then the notification: the order acknowledge and escalate use (no deadlock).
        inc = Incident.objects.select_for_update().get(pk=incident_id)
        n = Notification.objects.select_for_update(of=("self",)).select_related("channel").filter(pk=notification_id).first()
        if n is None or n.status in (Notification.Status.SENT, Notification.Status.CANCELLED, Notification.Status.FAILED):
            return "skipped"
        n.incident = inc
        if inc.status == Incident.Status.RESOLVED or (inc.status != Incident.Status.TRIGGERED and not n.manual):
            n.status = Notification.Status.CANCELLED
            n.error = f"incident {inc.status} before the page went out"
            n.save(update_fields=["status", "error"])
            return "cancelled"
        n.attempts += 1
        try:
            _deliver(n)
        except Exception as exc:  # noqa: BLE001 - any channel failure is retried, then recorded
            if not isinstance(exc, notify.NotificationError):
                log.warning("notification %s to %s raised %s", n.pk, n.channel.name, type(exc).__name__, exc_info=True)
            n.error = notify.error_text(exc)
            if final_attempt:
                n.status = Notification.Status.FAILED
                timeline_write(inc, TimelineEntry.Kind.NOTIFICATION, "system:notifications",
                          f"Failed to notify {n.channel.name} after {n.attempts} attempts: {n.error}", {"notification": n.pk, "status": "failed"})
            n.save(update_fields=["status", "error", "attempts"])
            if final_attempt:
                return "failed"
            # Commit the attempt count and error, then raise for the task to retry with backoff.
            raise_later = notify.NotificationError(n.error)
        else:
            n.status = Notification.Status.SENT
            n.sent_at = timezone.now()
            n.error = ""
            n.save(update_fields=["status", "sent_at", "error", "attempts"])
            timeline_write(inc, TimelineEntry.Kind.NOTIFICATION, "system:notifications",
                      f"Notified {n.channel.name} ({n.channel.get_kind_display()}), level {n.level}", {"notification": n.pk, "status": "sent"})
            return "sent"
    raise raise_later


def notification_test_send(notification: Notification) -> None:  # pragma: no cover - admin helper
    _deliver(notification)
