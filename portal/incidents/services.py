"""Incident lifecycle: timeline, acknowledge, resolve, reopen, assign, notes, postmortem.

Ingest (portal.incidents.ingest) opens incidents and escalation (portal.incidents.escalation) pages
for them; both stand on the row lock, the timeline and the resolution kept here.
"""

from __future__ import annotations

import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.actors import Actor
from portal.audit.services import audit_record
from portal.errors import Conflict
from portal.events import emit, incident_payload
from portal.incidents.models import Incident, Notification, PersonalPage, TimelineEntry
from portal.metrics import EVENTS
from portal.tasking import enqueue

log = logging.getLogger(__name__)
OPEN = (Incident.Status.TRIGGERED, Incident.Status.ACKNOWLEDGED)


class InvalidTransition(Conflict):
    """The incident is not in a state that allows this action (e.g. acknowledging a resolved incident)."""


class IncidentConflict(Conflict):
    """Another open incident holds this grouping key."""


def timeline_write(incident: Incident, kind: str, actor, text: str = "", data: dict | None = None) -> TimelineEntry:
    """A timeline row without its own audit row (the caller's change audits itself)."""
    return TimelineEntry.objects.create(incident=incident, kind=kind, actor_label=Actor.of(actor).label, text=text,
                                        data=data or {})


def incident_timeline_add(*, incident: Incident, kind: str, actor, text: str = "", data: dict | None = None) -> TimelineEntry:
    """Append to an incident's timeline (runbook steps, cloud actions, deployments, notes, notifications)."""
    with transaction.atomic():
        entry = timeline_write(incident, kind, actor, text, data)
        audit_record(actor=actor, verb=f"incident.timeline.{kind}"[:100], target=incident, extra={"text": text[:500]})
    return entry


def incident_lock(incident: Incident) -> Incident:
    """The incident's row, locked until the transaction ends."""
    return Incident.objects.select_for_update().get(pk=incident.pk)


def _cancel_pending_notifications(incident: Incident, *, keep_manual: bool = False) -> None:
    qs = Notification.objects.filter(incident=incident, status=Notification.Status.PENDING)
    if keep_manual:
        qs = qs.exclude(manual=True)
    qs.update(
        status=Notification.Status.CANCELLED, error="incident acknowledged or resolved"
    )
    # A person's pages that are not due yet (the voice call after the SMS) are cancelled now, under the
    # incident's row lock, which the sender takes before it claims a pending page.
    PersonalPage.objects.filter(incident=incident, status=PersonalPage.Status.PENDING).update(
        status=PersonalPage.Status.CANCELLED, error=f"incident {incident.status} before the page was due")


def _via(text: str, via: str) -> str:
    """"Acknowledged" -> "Acknowledged via SMS" when the action came from a page (SMS, voice, email, Slack)."""
    return f"{text} via {via}" if via else text


def incident_acknowledge(*, incident: Incident, actor, via: str = "") -> Incident:
    """Stop escalation and record who took it. Acknowledging twice is a no-op; a resolved incident cannot be.
    `via` names the channel a page was answered from ("SMS"): on the timeline and in the audit row."""
    with transaction.atomic():
        inc = incident_lock(incident)
        if inc.status == Incident.Status.ACKNOWLEDGED:
            return inc
        if inc.status == Incident.Status.RESOLVED:
            raise InvalidTransition("the incident is resolved; reopen it first")
        inc.status = Incident.Status.ACKNOWLEDGED
        inc.acknowledged_at = timezone.now()
        inc.acknowledged_by = Actor.of(actor).label
        inc.next_escalation_at = None
        inc.save(update_fields=["status", "acknowledged_at", "acknowledged_by", "next_escalation_at", "updated_at"])
        _cancel_pending_notifications(inc, keep_manual=True)
        timeline_write(inc, TimelineEntry.Kind.ACKNOWLEDGED, actor, _via("Acknowledged", via), {"via": via} if via else None)
        audit_record(actor=actor, verb="incident.acknowledge", target=inc, before={"status": "triggered"}, after={"status": inc.status},
                     extra={"via": via} if via else None)
        emit("incident.acknowledged", incident_payload(inc))
    return inc


def incident_resolve_locked(inc: Incident, *, actor, reason: str, via: str = "") -> Incident:
    """Resolve an incident whose row the caller holds locked (a person, or ingest when all its alerts resolved)."""
    before = inc.status
    inc.status = Incident.Status.RESOLVED
    inc.resolved_at = timezone.now()
    inc.resolved_by = Actor.of(actor).label
    inc.resolve_reason = reason[:500]
    inc.next_escalation_at = None
    inc.save(update_fields=["status", "resolved_at", "resolved_by", "resolve_reason", "next_escalation_at", "updated_at"])
    _cancel_pending_notifications(inc)
    timeline_write(inc, TimelineEntry.Kind.RESOLVED, actor, _via(f"Resolved: {reason}" if reason else "Resolved", via),
                   {"via": via} if via else None)
    audit_record(actor=actor, verb="incident.resolve", target=inc, before={"status": before}, after={"status": inc.status, "reason": reason},
                 extra={"via": via} if via else None)
    emit("incident.resolved", incident_payload(inc))
    EVENTS.labels("incident_resolved", inc.source).inc()
    return inc


def incident_resolve(*, incident: Incident, actor, reason: str = "", via: str = "") -> Incident:
    with transaction.atomic():
        inc = incident_lock(incident)
        if inc.status == Incident.Status.RESOLVED:
            return inc
        return incident_resolve_locked(inc, actor=actor, reason=reason, via=via)


def incident_reopen(*, incident: Incident, actor, reason: str = "") -> Incident:
    try:
        with transaction.atomic():
            inc = incident_lock(incident)
            if inc.status != Incident.Status.RESOLVED:
                return inc
            inc.status = Incident.Status.TRIGGERED
            inc.reopened_count += 1
            inc.resolved_at = inc.acknowledged_at = None
            inc.resolved_by = inc.acknowledged_by = inc.resolve_reason = ""
            inc.escalation_level = inc.escalation_round = 0
            inc.next_escalation_at = timezone.now()
            inc.save()
            timeline_write(inc, TimelineEntry.Kind.REOPENED, actor, f"Reopened: {reason}" if reason else "Reopened")
            audit_record(actor=actor, verb="incident.reopen", target=inc, after={"status": inc.status, "reason": reason})
            enqueue("portal.incidents.tasks.escalate_incident", inc.pk)
    except IntegrityError as exc:
        raise IncidentConflict("another open incident already holds this grouping key") from exc
    return inc


def incident_assign(*, incident: Incident, assignee, actor) -> Incident:
    with transaction.atomic():
        inc = incident_lock(incident)
        before = inc.assignee.get_username() if inc.assignee else None
        inc.assignee = assignee
        inc.save(update_fields=["assignee", "updated_at"])
        who = assignee.get_username() if assignee else "nobody"
        timeline_write(inc, TimelineEntry.Kind.ASSIGNED, actor, f"Assigned to {who}", {"assignee": who})
        audit_record(actor=actor, verb="incident.assign", target=inc, before={"assignee": before}, after={"assignee": who})
    return inc


def incident_note_add(*, incident: Incident, actor, text: str) -> TimelineEntry:
    text = (text or "").strip()
    if not text:
        raise ValueError("a note needs text")
    return incident_timeline_add(incident=incident, kind=TimelineEntry.Kind.NOTE, actor=actor, text=text[:20000])


POSTMORTEM_FIELDS = ("postmortem_summary", "postmortem_impact", "postmortem_root_cause", "postmortem_actions")


def incident_postmortem_update(*, incident: Incident, actor, summary: str, impact: str, root_cause: str, actions: str) -> Incident:
    with transaction.atomic():
        inc = incident_lock(incident)
        before = {f: getattr(inc, f) for f in POSTMORTEM_FIELDS}
        inc.postmortem_summary, inc.postmortem_impact = summary.strip(), impact.strip()
        inc.postmortem_root_cause, inc.postmortem_actions = root_cause.strip(), actions.strip()
        inc.save(update_fields=[*POSTMORTEM_FIELDS, "updated_at"])
        timeline_write(inc, TimelineEntry.Kind.POSTMORTEM, actor, "Postmortem updated")
        audit_record(actor=actor, verb="incident.postmortem", target=inc, before=before, after={f: getattr(inc, f) for f in POSTMORTEM_FIELDS})
    return inc


def incident_export_markdown(incident: Incident) -> str:
    """The incident, its postmortem and its timeline as a Markdown document."""
    def fmt(dt):
        return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "-"

    lines = [
        f"# Incident: {incident.title}", "",
        f"- Status: {incident.get_status_display()}",
        f"- Severity: {incident.severity}",
        f"- Environment: {incident.environment.name if incident.environment else '-'}",
        f"- Service: {incident.service or '-'}",
        f"- Opened: {fmt(incident.opened_at)}",
        f"- Acknowledged: {fmt(incident.acknowledged_at)} {('by ' + incident.acknowledged_by) if incident.acknowledged_by else ''}".rstrip(),
        f"- Resolved: {fmt(incident.resolved_at)} {('by ' + incident.resolved_by) if incident.resolved_by else ''}".rstrip(),
        f"- Runbook: {incident.runbook_slug or '-'}", "",
        "## Postmortem", "",
        "### Summary", "", incident.postmortem_summary or "_(not written)_", "",
        "### Impact", "", incident.postmortem_impact or "_(not written)_", "",
        "### Root cause", "", incident.postmortem_root_cause or "_(not written)_", "",
        "### Actions", "", incident.postmortem_actions or "_(not written)_", "",
        "## Alerts", "",
    ]
    for alert in incident.alerts.all():
        lines.append(f"- `{alert.fingerprint}` {alert.name} ({alert.status})" + (f" <{alert.generator_url}>" if alert.generator_url else ""))
    lines += ["", "## Timeline", ""]
    for entry in incident.timeline.all():
        text = entry.text.replace("\n", "\n  ")
        lines.append(f"- {fmt(entry.at)} **{entry.kind}** ({entry.actor_label}): {text}")
    return "\n".join(lines) + "\n"
