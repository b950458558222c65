"""Incident command writes: declare, promote, merge, SEV, roles, updates, subscribers, reviews and action items.

Each write checks who may make it (a responder, or a token with the `actions` scope), writes its audit
row and, where the incident should show it, its timeline row in the same transaction. Deliveries
(subscribers, reminders, nags) go out after commit by task name.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from portal import notify
from portal.accounts.roles import RESPOND
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud.models import Environment
from portal.command import selectors
from portal.command.models import (
    ActionItem,
    CommandRole,
    IncidentCommand,
    Journey,
    Review,
    RoleKind,
    Sev,
    StatusUpdate,
    Subscriber,
    UpdateStatus,
)
from portal.errors import Conflict, Forbidden, Invalid
from portal.incidents import ingest, paging
from portal.incidents.models import Alert, EscalationPolicy, Incident, TimelineEntry
from portal.incidents.services import incident_lock, incident_resolve, timeline_write
from portal.oncall import selectors as oncall_selectors
from portal.oncall.models import Schedule
from portal.tasking import enqueue

DECLARED_SOURCE = "declared"
# Page level for the commander page: below the escalation's own levels (which start at 1).
COMMANDER_PAGE_LEVEL = 0
DELIVER_TASK = "portal.command.tasks.deliver_update"


# ------------------------------------------------------------------------------------------------ checks


def can_respond(who: Any) -> bool:
    """A responder (the respond permission) or a token of the `actions` scope; never the portal itself."""
    actor = Actor.of(who)
    if actor.token is not None:
        return bool(actor.token.grants("actions"))
    return bool(actor.user is not None and actor.user.has_perm(RESPOND))


def _require_respond(actor: Any) -> Actor:
    a = Actor.of(actor)
    if not can_respond(a):
        raise Forbidden("declaring and commanding incidents needs the responder role (or an actions token)")
    return a


def parse_sev(value: str) -> str:
    sev = str(value or "").strip().upper()
    if sev not in Sev.values:
        raise Invalid("severity must be SEV1, SEV2 or SEV3")
    return sev


def parse_journeys(values) -> list[str]:
    out = []
    for v in values or []:
        v = str(v).strip()
        if v not in Journey.values:
            raise Invalid(f"unknown journey {v!r}: one of {', '.join(Journey.values)}")
        if v not in out:
            out.append(v)
    return out


def _environment(value) -> Environment | None:
    if value is None or value == "":
        return None
    if isinstance(value, Environment):
        return value
    env = Environment.objects.filter(name=str(value)).first()
    if env is None:
        raise Invalid(f"no environment {value!r}")
    return env


def command_of(incident: Incident) -> IncidentCommand:
    cmd, _ = IncidentCommand.objects.get_or_create(incident=incident)
    return cmd


# ------------------------------------------------------------------------------------------------ declare


def incident_declare(*, title: str, sev: str, actor: Any, environment=None, journeys=(), description: str = "",
                     now: datetime | None = None) -> Incident:
    """Open an incident a person saw before any alert fired. It goes through the same intake as an
    alert of the portal's own (deploy context, runbook suggestion, escalation, timeline), then gets
    its command record; a SEV1 pages the commander on call."""
    a = _require_respond(actor)
    title = (title or "").strip()
    if not title:
        raise Invalid("a title is needed")
    sev = parse_sev(sev)
    journeys = parse_journeys(journeys)
    env = _environment(environment)
    now = now or timezone.now()
    key = uuid.uuid4().hex
    alert = ingest.alert_ingest_internal(
        source=DECLARED_SOURCE, fingerprint=key, name=title[:200], severity="critical" if sev == Sev.SEV1 else "warning",
        firing=True, summary="", labels={"declared": "true", "sev": sev, **({"journeys": ",".join(journeys)} if journeys else {})},
        annotations={"description": description[:2000]}, environment=env, grouping_key=f"{DECLARED_SOURCE}:{key}",
    )
    incident = Incident.objects.get(pk=alert.incident_id)
    with transaction.atomic():
        inc = incident_lock(incident)
        cmd = command_of(inc)
        cmd.declared, cmd.declared_by, cmd.declared_at = True, a.label, now
        cmd.sev, cmd.sev_reason = sev, "declared"
        cmd.journeys, cmd.description = journeys, description
        cmd.save()
        names = ", ".join(cmd.journey_labels()) or "none named"
        timeline_write(inc, TimelineEntry.Kind.NOTE, a, f"Declared {sev} by {a.label}; journeys: {names}",
                       {"command": "declared", "sev": sev, "journeys": journeys})
        audit_record(actor=a, verb="incident.declare", target=inc,
                     after={"sev": sev, "journeys": journeys, "environment": env.name if env else None, "title": title})
        if sev == Sev.SEV1:
            commander_page(incident=inc, cmd=cmd, now=now)
    return inc


def incident_promote(*, incident: Incident, sev: str, actor: Any, journeys=(), description: str = "",
                     now: datetime | None = None) -> IncidentCommand:
    """An alert incident becomes a declared one (its alerts and timeline stay as they are)."""
    a = _require_respond(actor)
    sev = parse_sev(sev)
    journeys = parse_journeys(journeys)
    now = now or timezone.now()
    with transaction.atomic():
        inc = incident_lock(incident)
        if not inc.is_open:
            raise Conflict("a resolved incident cannot be declared")
        cmd = command_of(inc)
        if cmd.declared:
            raise Conflict("this incident is declared already")
        before = cmd.sev
        cmd.declared, cmd.declared_by, cmd.declared_at = True, a.label, now
        cmd.sev, cmd.sev_reason = sev, "promoted from an alert incident"
        cmd.journeys = journeys or cmd.journeys
        cmd.description = description or cmd.description
        cmd.save()
        timeline_write(inc, TimelineEntry.Kind.NOTE, a, f"Promoted to a declared {sev} incident by {a.label}",
                       {"command": "promoted", "sev": sev})
        audit_record(actor=a, verb="incident.promote", target=inc, before={"sev": before, "declared": False},
                     after={"sev": sev, "declared": True, "journeys": cmd.journeys})
        if sev == Sev.SEV1:
            commander_page(incident=inc, cmd=cmd, now=now)
    return cmd


def incidents_merge(*, target: Incident, others: list[Incident], actor: Any) -> Incident:
    """Fold `others` into `target`: their alerts move to it, their timelines are copied onto it (and
    kept on them), and each is resolved with a pointer to the target."""
    a = _require_respond(actor)
    others = [o for o in others if o.pk != target.pk]
    if not others:
        raise Invalid("name at least one other incident to merge")
    with transaction.atomic():
        inc = incident_lock(target)
        if not inc.is_open:
            raise Conflict("merge into an open incident")
        moved: dict[int, list[str]] = {}
        for other in others:
            o = incident_lock(other)
            fingerprints = list(Alert.objects.filter(incident=o).values_list("fingerprint", flat=True))
            Alert.objects.filter(incident=o).update(incident=inc)
            moved[o.pk] = fingerprints
            copies = [
                TimelineEntry(incident=inc, kind=t.kind, actor_label=t.actor_label, text=f"[INC-{o.pk}] {t.text}",
                              data={**t.data, "merged_from": o.pk, "at": t.at.isoformat()})
                for t in o.timeline.all()
            ]
            TimelineEntry.objects.bulk_create(copies)
            ocmd = command_of(o)
            ocmd.merged_into = inc
            ocmd.save(update_fields=["merged_into"])
            timeline_write(o, TimelineEntry.Kind.NOTE, a, f"Merged into INC-{inc.pk}: {inc.title}", {"merged_into": inc.pk})
            timeline_write(inc, TimelineEntry.Kind.NOTE, a, f"INC-{o.pk} merged in with {len(fingerprints)} alert(s): {o.title}",
                           {"merged_from": o.pk, "alerts": fingerprints})
            if o.is_open:
                incident_resolve(incident=o, actor=a, reason=f"merged into INC-{inc.pk}")
        audit_record(actor=a, verb="incident.merge", target=inc, after={"merged": {str(k): v for k, v in moved.items()}})
    return inc


# ------------------------------------------------------------------------------------------------ SEV


def sev_change(*, incident: Incident, sev: str, reason: str, actor: Any) -> IncidentCommand:
    """A person changes the SEV with a reason; nobody's role moves with it (the timeline says who holds them)."""
    a = _require_respond(actor)
    sev = parse_sev(sev)
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why the severity changes")
    with transaction.atomic():
        inc = incident_lock(incident)
        cmd = command_of(inc)
        before = cmd.sev
        if before == sev:
            raise Conflict(f"the incident is {sev} already")
        cmd.sev, cmd.sev_reason = sev, reason[:500]
        cmd.save(update_fields=["sev", "sev_reason"])
        holders = ", ".join(f"{r.role} {r.user.get_username()}" for r in inc.command_roles.select_related("user")) or "no roles taken"
        timeline_write(inc, TimelineEntry.Kind.NOTE, a, f"Severity {before} → {sev} by {a.label}: {reason} (roles unchanged: {holders})",
                       {"command": "sev", "from": before, "to": sev, "reason": reason})
        audit_record(actor=a, verb="incident.sev", target=inc, before={"sev": before}, after={"sev": sev, "reason": reason})
    return cmd


# ------------------------------------------------------------------------------------------------ roles


def role_take(*, incident: Incident, role: str, actor: Any, user=None, now: datetime | None = None) -> CommandRole:
    """One click: the actor's person (or `user`, named by the actor) takes the role; the one who held it is named."""
    a = _require_respond(actor)
    if role not in RoleKind.values:
        raise Invalid(f"role must be one of {', '.join(RoleKind.values)}")
    person = user or a.person
    if person is None:
        raise Invalid("a role is held by a person: name the user")
    if not person.has_perm(RESPOND):
        raise Invalid(f"{person.get_username()} is not a responder")
    now = now or timezone.now()
    with transaction.atomic():
        inc = incident_lock(incident)
        command_of(inc)
        row = CommandRole.objects.select_related("user").filter(incident=inc, role=role).first()
        before = row.user.get_username() if row else None
        if row and row.user_id == person.pk:
            return row
        if row is None:
            row = CommandRole(incident=inc, role=role)
        row.user, row.taken_at = person, now
        row.save()
        label = dict(RoleKind.choices)[role]
        text = f"{person.get_username()} took {label.lower()}" + (f" from {before}" if before else "")
        timeline_write(inc, TimelineEntry.Kind.ASSIGNED, a, text, {"command": "role", "role": role, "from": before,
                                                                    "to": person.get_username()})
        audit_record(actor=a, verb="incident.role", target=inc, before={role: before}, after={role: person.get_username()})
    return row


def commander_schedule() -> Schedule | None:
    """The schedule whose on-call person commands a SEV1: the setting, else the critical policy's first
    level that targets a schedule, else the first schedule."""
    if settings.COMMAND_COMMANDER_SCHEDULE:
        return Schedule.objects.filter(slug=settings.COMMAND_COMMANDER_SCHEDULE).first()
    policy = EscalationPolicy.objects.filter(severity="critical").first()
    if policy is not None:
        level = policy.levels.filter(target_schedule__isnull=False).order_by("number").first()
        if level is not None:
            return level.target_schedule
    return Schedule.objects.order_by("slug").first()


def commander_page(*, incident: Incident, cmd: IncidentCommand, now: datetime) -> list[int]:
    """Page whoever is on call on the commander schedule to take command (the caller holds the row lock)."""
    schedule = commander_schedule()
    person = oncall_selectors.on_call_user(schedule, now) if schedule else None
    if person is None:
        timeline_write(incident, TimelineEntry.Kind.NOTIFICATION, Actor.system("command"),
                       "SEV1 declared: nobody is on call to page as commander", {"command": "commander_page"})
        return []
    pages = paging.pages_plan(inc=incident, level=COMMANDER_PAGE_LEVEL, round_=0, user=person, schedule=schedule,
                              started_at=now, now=now)
    cmd.commander_paged_at = now
    cmd.save(update_fields=["commander_paged_at"])
    kinds = ", ".join(sorted(set(incident.personal_pages.filter(pk__in=pages).values_list("kind", flat=True)))) or (
        "already paged for this incident" if incident.personal_pages.filter(user=person).exists() else "no verified method")
    timeline_write(incident, TimelineEntry.Kind.NOTIFICATION, Actor.system("command"),
                   f"Paged {person.get_username()} (on call on {schedule.name}) to take command of this SEV1 ({kinds})",
                   {"command": "commander_page", "user": person.get_username(), "schedule": schedule.slug, "pages": pages})
    audit_record(actor=Actor.system("command"), verb="incident.commander_page", target=incident,
                 after={"user": person.get_username(), "schedule": schedule.slug, "pages": len(pages)})
    return pages


# ------------------------------------------------------------------------------------------------ updates


def update_post(*, incident: Incident, status: str, message: str, actor: Any, public: bool = True,
                now: datetime | None = None) -> StatusUpdate:
    """A stakeholder update, written (or edited from the draft) by a person; subscribers get it after commit."""
    a = _require_respond(actor)
    if status not in UpdateStatus.values:
        raise Invalid(f"status must be one of {', '.join(UpdateStatus.values)}")
    message = (message or "").strip()
    if not message:
        raise Invalid("an update needs a message")
    now = now or timezone.now()
    with transaction.atomic():
        inc = incident_lock(incident)
        command_of(inc)
        upd = StatusUpdate.objects.create(incident=inc, status=status, message=message, posted_by=a.label, posted_at=now,
                                          public=public)
        timeline_write(inc, TimelineEntry.Kind.NOTE, a, f"Stakeholder update ({status}): {message}",
                       {"command": "update", "update": str(upd.public_id), "public": public})
        audit_record(actor=a, verb="incident.update", target=inc, after={"status": status, "public": public, "message": message[:500]})
        enqueue(DELIVER_TASK, upd.pk)
    return upd


def update_deliver(*, update_id: int) -> list[str]:
    """Send one update to its incident's subscribers (the task's body); returns where it went."""
    upd = StatusUpdate.objects.select_related("incident").filter(pk=update_id).first()
    if upd is None:
        return []
    inc = upd.incident
    subject = f"[{command_of(inc).sev}] {inc.title}: {upd.get_status_display()}"
    body = f"{upd.message}\n\nStatus: {upd.get_status_display()} (posted {upd.posted_at:%Y-%m-%d %H:%M} UTC by {upd.posted_by})\n"
    sent = []
    for sub in inc.subscribers.all():
        if sub.kind == Subscriber.Kind.EMAIL:
            notify.mail(subject=subject, body=body, recipients=[sub.target])
        else:
            notify.slack_post(channel=sub.target, text=f"*{subject}*\n{upd.message}")
        sent.append(f"{sub.kind}:{sub.target}")
    return sent


def subscriber_add(*, incident: Incident, kind: str, target: str, actor: Any) -> Subscriber:
    a = _require_respond(actor)
    target = (target or "").strip()
    if kind not in Subscriber.Kind.values:
        raise Invalid("a subscriber is by email or Slack channel")
    if kind == Subscriber.Kind.EMAIL and ("@" not in target or " " in target):
        raise Invalid("not an email address")
    if kind == Subscriber.Kind.SLACK and not target:
        raise Invalid("name the Slack channel")
    with transaction.atomic():
        sub, created = Subscriber.objects.get_or_create(incident=incident, kind=kind, target=target[:254],
                                                        defaults={"created_by": a.label})
        if created:
            audit_record(actor=a, verb="incident.subscriber_add", target=incident, after={"kind": kind, "target": target})
    return sub


def _people_to_remind(inc: Incident) -> list:
    roles = {r.role: r.user for r in inc.command_roles.select_related("user")}
    person = roles.get(RoleKind.COMMUNICATIONS) or roles.get(RoleKind.COMMANDER) or inc.assignee
    return [person] if person is not None else []


def _email_of(user) -> str:
    method = oncall_selectors.verified_method(user, "email")
    return method.value if method else (user.email or "")


def update_reminders_send(*, now: datetime | None = None) -> list[int]:
    """Remind the communications lead (else the commander) when a SEV1 (30 min) or SEV2 (1 h) declared
    incident has had no update for its interval; once per interval (the mark is claimed before sending)."""
    now = now or timezone.now()
    reminded = []
    for cmd in selectors.reminders_due(now=now):
        # Claim: a redelivered task or a second beat finds the mark moved and sends nothing.
        claimed = IncidentCommand.objects.filter(pk=cmd.pk, last_reminded_at=cmd.last_reminded_at).update(last_reminded_at=now)
        if not claimed:
            continue
        inc = cmd.incident
        interval = selectors.UPDATE_INTERVALS[cmd.sev]
        people = _people_to_remind(inc)
        names = ", ".join(p.get_username() for p in people) or "nobody holds communications or command"
        with transaction.atomic():
            timeline_write(inc, TimelineEntry.Kind.NOTIFICATION, Actor.system("command"),
                           f"Stakeholder update due: none for {int(interval.total_seconds() // 60)} minutes (reminded {names})",
                           {"command": "update_reminder"})
            audit_record(actor=Actor.system("command"), verb="incident.update_reminder", target=inc, after={"to": names})
        draft = selectors.update_draft(inc)
        for person in people:
            address = _email_of(person)
            if address:
                notify.mail(subject=f"[{cmd.sev}] Stakeholder update due: {inc.title}",
                            body=f"No update for {int(interval.total_seconds() // 60)} minutes. Post one at "
                                 f"{paging.public_url(selectors.command_url(inc))}\n\nDraft:\n{draft}\n",
                            recipients=[address])
        reminded.append(inc.pk)
    return reminded


# ------------------------------------------------------------------------------------------------ reviews


def review_start(*, incident: Incident, actor: Any) -> Review:
    """The review of a resolved incident, pre-filled with the facts measured from it (idempotent)."""
    a = _require_respond(actor)
    incident = Incident.objects.select_related("environment").get(pk=incident.pk)  # the stored state, not the caller's copy
    if incident.is_open:
        raise Conflict("review an incident after it is resolved")
    with transaction.atomic():
        review, created = Review.objects.get_or_create(incident=incident, defaults={
            "facts": selectors.measured_facts(incident), "created_by": a.label})
        if created:
            timeline_write(incident, TimelineEntry.Kind.POSTMORTEM, a, f"Review started by {a.label}")
            audit_record(actor=a, verb="review.start", target=incident, after={"facts": sorted(review.facts)})
    return review


def review_update(*, review: Review, narrative: str, actor: Any, refresh_facts: bool = False) -> Review:
    a = _require_respond(actor)
    with transaction.atomic():
        before = review.narrative
        review.narrative = narrative
        fields = ["narrative", "updated_at"]
        if refresh_facts:
            review.facts = selectors.measured_facts(review.incident)
            fields.append("facts")
        review.save(update_fields=fields)
        audit_record(actor=a, verb="review.update", target=review.incident, before={"narrative": before[:500]},
                     after={"narrative": narrative[:500], "refreshed": refresh_facts})
    return review


def action_item_add(*, incident: Incident, title: str, actor: Any, owner=None, due_date: date | None = None,
                    link_kind: str = "", link_target: str = "") -> ActionItem:
    a = _require_respond(actor)
    title = (title or "").strip()
    if not title:
        raise Invalid("an action item needs a title")
    if link_kind not in ActionItem.LinkKind.values:
        raise Invalid("link kind must be threshold, runbook or checklist")
    if link_kind and not link_target:
        raise Invalid("name what the action item links to")
    if isinstance(owner, str) and owner:
        found = get_user_model().objects.filter(username=owner, is_active=True).first()
        if found is None:
            raise Invalid(f"no user {owner!r}")
        owner = found
    with transaction.atomic():
        review = Review.objects.filter(incident=incident).first()
        item = ActionItem.objects.create(incident=incident, review=review, title=title[:300], owner=owner or None,
                                         due_date=due_date, link_kind=link_kind, link_target=link_target[:200],
                                         created_by=a.label)
        audit_record(actor=a, verb="action_item.add", target=incident,
                     after={"title": item.title, "owner": owner.get_username() if owner else None,
                            "due": due_date.isoformat() if due_date else None, "link": f"{link_kind}:{link_target}" if link_kind else ""})
    return item


def action_item_set_state(*, item: ActionItem, state: str, actor: Any) -> ActionItem:
    a = _require_respond(actor)
    if state not in ActionItem.State.values:
        raise Invalid("state must be open, done or dropped")
    with transaction.atomic():
        before = item.state
        item.state = state
        item.save(update_fields=["state"])
        audit_record(actor=a, verb="action_item.state", target=item.incident, before={"state": before},
                     after={"state": state, "item": str(item.public_id)})
    return item


def action_items_nag(*, now: datetime | None = None) -> list[int]:
    """Mail each overdue open item's owner, at most once a day per item (claimed by a conditional update)."""
    now = now or timezone.now()
    nagged = []
    for item in selectors.overdue_action_items(now=now):
        claimed = ActionItem.objects.filter(pk=item.pk, last_nagged_at=item.last_nagged_at).update(last_nagged_at=now)
        if not claimed or item.owner is None:
            continue
        address = _email_of(item.owner)
        if address:
            notify.mail(subject=f"Overdue action item: {item.title}",
                        body=f"Due {item.due_date:%Y-%m-%d}, from INC-{item.incident_id} ({item.incident.title}).\n"
                             f"{paging.public_url('/command/action-items/')}\n",
                        recipients=[address])
        audit_record(actor=Actor.system("command"), verb="action_item.nag", target=item.incident,
                     after={"item": str(item.public_id), "owner": item.owner.get_username()})
        nagged.append(item.pk)
    return nagged

