"""Personal pages: an escalation level that targets a schedule or a person pages that person by their rules.

When a level fires, each of the person's notification rules for the incident's severity becomes a
PersonalPage row due at the level's start plus the rule's delay (SMS at once, a voice call after 3
minutes, ...). The sweep sends what is due. Sending takes the incident's row lock first (the order
acknowledge and escalate use), claims the page with a conditional update, and re-checks the incident:
an acknowledged or resolved incident cancels the page instead, so nothing is paged after an ack.

For a schedule's level the person is resolved again at send time: when an override put someone else
on call since the level fired, the first person's pending pages for that level are marked moved and
the covering person's rules are planned from the level's start (what is overdue goes out at once).
Only verified contact methods are paged; a person without one of a rule's kind gets a failed row saying so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from portal import notify
from portal.incidents.models import EscalationLevel, Incident, PersonalPage, TimelineEntry
from portal.incidents.services import timeline_write
from portal.oncall import delivery, selectors
from portal.oncall.models import ContactKind, ContactMethod
from portal.tasking import enqueue

log = logging.getLogger(__name__)
SEND_TASK = "portal.incidents.tasks.send_personal_page"
SLACK_POSTED_TASK = "portal.inbound.slack_tasks.page_posted"
SWEEP_BATCH = 500


@dataclass(frozen=True)
class Planned:
    user: object
    pages: tuple[int, ...]
    note: str


def level_person(level: EscalationLevel, at: datetime):
    """Who a level pages besides its channels: the schedule's on-call person at `at`, or its named person."""
    if level.target_schedule_id:
        return selectors.on_call_user(level.target_schedule, at)
    return level.target_user


def _rules(user, severity: str) -> tuple[list[tuple[str, int]], str]:
    rules = selectors.paging_rules(user, severity)
    if rules:
        return rules, ""
    # A person on call without rules is still paged: every verified method at once.
    kinds = sorted(set(ContactMethod.objects.filter(user=user, verified_at__isnull=False).values_list("kind", flat=True)))
    return [(k, 0) for k in kinds], "no notification rules: every verified method at once"


# Two levels that reach the same person the same way within this span send one page, not two.
SAME_PAGE_WINDOW = timedelta(minutes=2)


def pages_plan(*, inc: Incident, level: int, round_: int, user, schedule, started_at: datetime, now: datetime) -> list[int]:
    """Create the person's pages for one level (idempotent: the unique constraint keeps one per rule);
    the caller holds the incident's row lock. Pages due now are sent after commit; the rest wait for the sweep."""
    rules, _ = _rules(user, inc.severity)
    created = []
    for kind, delay in rules:
        due = started_at + timedelta(minutes=delay)
        if PersonalPage.objects.filter(incident=inc, user=user, kind=kind, due_at__gt=due - SAME_PAGE_WINDOW,
                                       due_at__lte=due).exclude(level=level, round=round_).exists():
            continue  # another level (or the commander page) reaches this person this way for it right now
        try:
            with transaction.atomic():
                page = PersonalPage.objects.create(
                    incident=inc, level=level, round=round_, schedule=schedule, user=user, kind=kind,
                    delay_minutes=delay, level_started_at=started_at, due_at=due)
        except IntegrityError:
            continue  # this level was planned for this person already
        created.append(page.pk)
        if due <= now:
            enqueue(SEND_TASK, page.pk)
    return created


def level_page_person(*, inc: Incident, level: EscalationLevel, round_: int, now: datetime) -> Planned | None:
    """Plan the personal pages of a level that fires now; None when the level targets nobody."""
    if not (level.target_schedule_id or level.target_user_id):
        return None
    user = level_person(level, now)
    if user is None:
        return Planned(user=None, pages=(), note=f"nobody is on call on {level.target_schedule}")
    rules, note = _rules(user, inc.severity)
    if not rules:
        return Planned(user=user, pages=(), note=f"{user.get_username()} has no verified contact method")
    pages = pages_plan(inc=inc, level=level.number, round_=round_, user=user, schedule=level.target_schedule,
                       started_at=now, now=now)
    return Planned(user=user, pages=tuple(pages), note=note)


REPLY_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, 1/I/L: read off a phone screen
EMAIL_LINK_SALT = "portal.incidents.paging.email-link"
EMAIL_LINK_ACTIONS = ("acknowledge", "resolve")


def incident_ref(inc: Incident) -> str:
    """How a page and a reply name the incident: INC-42."""
    return f"INC-{inc.pk}"


def reply_code(inc: Incident) -> str:
    """The short code an SMS page carries so a reply picks this incident when several pages to one
    number are open ("ack K7"). Derived from the incident's id: unique, nothing to store."""
    n, base = inc.pk, len(REPLY_CODE_ALPHABET)
    digits = ""
    while True:
        n, r = divmod(n, base)
        digits = REPLY_CODE_ALPHABET[r] + digits
        if not n:
            break
    return digits.rjust(2, REPLY_CODE_ALPHABET[0])


def public_url(path: str) -> str:
    return settings.PORTAL_PUBLIC_URL.rstrip("/") + path


def email_link_token(page: PersonalPage, action: str) -> str:
    """The credential in an email page's acknowledge or resolve link: the page and the action, signed
    with SECRET_KEY and timestamped. Whoever answers it (portal.inbound.email_links) checks its age,
    the incident, and that its hash was never used."""
    assert action in EMAIL_LINK_ACTIONS
    return signing.dumps({"p": str(page.public_id), "a": action, "t": int(timezone.now().timestamp())},
                         salt=EMAIL_LINK_SALT, compress=True)


def email_link_read(token: str, *, max_age_seconds: int) -> tuple[str, str, int]:
    """(page public id, action, issued at as a Unix time) of a link token; signing.BadSignature (or
    SignatureExpired) when it is not ours or too old."""
    data = signing.loads(token, salt=EMAIL_LINK_SALT, max_age=max_age_seconds)
    if (not isinstance(data, dict) or data.get("a") not in EMAIL_LINK_ACTIONS or not isinstance(data.get("p"), str)
            or not isinstance(data.get("t"), int)):
        raise signing.BadSignature("not an email link")
    return data["p"], data["a"], data["t"]


def what_happened(inc: Incident) -> str:
    """What happened, in one line: incident, environment, value (the latest alert's summary)."""
    env = inc.environment.name if inc.environment_id else "no environment"
    alert = inc.alerts.order_by("-last_received_at").first()
    value = (alert.summary or alert.name) if alert else ""
    return f"[{inc.severity.upper()}] {incident_ref(inc)} {inc.title} ({env})" + (f": {value}" if value else "")


def voice_words(inc: Incident) -> str:
    """What a voice page reads out, and the keys it offers (portal.inbound answers them)."""
    env = inc.environment.name if inc.environment_id else "no environment"
    return (f"F T W Ops page. {inc.severity} incident {inc.pk}: {inc.title}, in {env}. "
            "Press 4 to acknowledge, 6 to resolve, 8 to escalate.")


def _message(inc: Incident, page: PersonalPage) -> delivery.Message:
    url = public_url(inc.get_absolute_url())
    subject = f"[{inc.severity.upper()}] {inc.title}"
    what = what_happened(inc)
    code = reply_code(inc)
    body = f"{what} {url}\nReply 4 ack, 6 resolve, 8 escalate. Several pages open? Add the code: ack {code}"
    spoken = f"F T W Ops page. {inc.severity} incident: {inc.title}. Acknowledge in the portal."
    gather_url = ""
    if page.kind == ContactKind.VOICE:
        spoken = voice_words(inc)
        gather_url = public_url(reverse("api:inbound_twilio_voice")) + f"?page={page.public_id}"
    if page.kind == ContactKind.EMAIL:
        links = "\n".join(f"{action.capitalize()}: {public_url(reverse('inbound:email_action', args=[email_link_token(page, action)]))}"
                          for action in EMAIL_LINK_ACTIONS)
        body = (f"{what}\nStatus: {inc.status}\nOpened: {inc.opened_at:%Y-%m-%d %H:%M UTC}\n{url}\n\n{links}\n"
                "Each link works once, and not after the incident is resolved.")
    return delivery.Message(kind=page.kind, to="", subject=subject, body=body, purpose="page", spoken=spoken,
                            gather_url=gather_url)


def _slack_page(inc: Incident, page: PersonalPage, to: str) -> delivery.DeliveryResult:
    """A page to Slack is a message with buttons (portal.inbound answers them). Where it landed goes, by
    task name after commit, to the inbound app, which keeps the message up to date as the incident changes."""
    runbook = public_url(reverse("runbooks:detail", args=[inc.runbook_slug])) if inc.runbook_slug else ""
    url = public_url(inc.get_absolute_url())
    blocks = notify.slack_page_blocks(text=what_happened(inc), status=inc.status, value=str(inc.public_id),
                                      incident_url=url, runbook_url=runbook)
    try:
        posted = notify.slack_message(channel=to, text=f"{what_happened(inc)} {url}", blocks=blocks)
    except notify.NotificationError as exc:
        return delivery.DeliveryResult(ok=False, detail=str(exc)[:500])
    enqueue(SLACK_POSTED_TASK, inc.pk, page.pk, posted.channel, posted.ts)
    return delivery.DeliveryResult(ok=True, detail="posted to Slack", provider_id=posted.ts)


def _stopped(inc: Incident, page: PersonalPage) -> str:
    if inc.status != Incident.Status.TRIGGERED:
        return f"incident {inc.status} before the page went out"
    if inc.acknowledged_at and inc.acknowledged_at >= page.created_at:
        return "incident acknowledged before the page went out"
    return ""


def _move(inc: Incident, page: PersonalPage, covering, now: datetime) -> list[int]:
    """The schedule now has someone else on call: the first person's pending pages of this level are
    moved, and the covering person's rules are planned from the level's start."""
    moved = PersonalPage.objects.filter(incident=inc, level=page.level, round=page.round, user=page.user,
                                        status=PersonalPage.Status.PENDING)
    moved.update(status=PersonalPage.Status.MOVED, error=f"moved to {covering.get_username()} (on call now)")
    planned = pages_plan(inc=inc, level=page.level, round_=page.round, user=covering, schedule=page.schedule,
                         started_at=page.level_started_at, now=now)
    timeline_write(inc, TimelineEntry.Kind.ESCALATION, "system:paging",
                   f"Level {page.level}: {covering.get_username()} covers {page.schedule} now; "
                   f"the pages move from {page.user.get_username()}", {"level": page.level, "moved_to": covering.get_username()})
    return planned


def personal_page_send(*, page_id: int, now: datetime | None = None) -> str:
    """Send one due page. Safe to run twice: the claim (pending -> a final state) happens once, under the
    incident's row lock, and the network call is made before the lock is released, so an
    acknowledgement either lands first (the page is cancelled) or waits until the page is recorded."""
    now = now or timezone.now()
    incident_id = PersonalPage.objects.filter(pk=page_id).values_list("incident_id", flat=True).first()
    if incident_id is None:
        return "skipped"
    with transaction.atomic():
        inc = Incident.objects.select_for_update().get(pk=incident_id)
        page = PersonalPage.objects.select_related("user", "schedule").filter(pk=page_id).first()
        if page is None or page.status != PersonalPage.Status.PENDING or page.due_at > now:
            return "skipped"
        reason = _stopped(inc, page)
        if reason:
            PersonalPage.objects.filter(pk=page.pk, status=PersonalPage.Status.PENDING).update(
                status=PersonalPage.Status.CANCELLED, error=reason)
            return "cancelled"
        if page.schedule_id:
            covering = selectors.on_call_user(page.schedule, now)
            if covering is not None and covering.pk != page.user_id:
                _move(inc, page, covering, now)
                return "moved"
        method = selectors.verified_method(page.user, page.kind)
        if method is None:
            PersonalPage.objects.filter(pk=page.pk, status=PersonalPage.Status.PENDING).update(
                status=PersonalPage.Status.FAILED, error=f"{page.user.get_username()} has no verified {page.kind} method")
            timeline_write(inc, TimelineEntry.Kind.NOTIFICATION, "system:paging",
                           f"Could not page {page.user.get_username()} by {page.kind}: no verified method",
                           {"personal_page": str(page.public_id), "status": "failed"})
            return "failed"
        # The claim: only one sender moves this row out of pending (a failure below sets it to failed).
        claimed = PersonalPage.objects.filter(pk=page.pk, status=PersonalPage.Status.PENDING).update(
            status=PersonalPage.Status.SENT, to=method.value)
        if not claimed:
            return "skipped"
        message = _message(inc, page)
        if page.kind == ContactKind.SLACK:
            result = _slack_page(inc, page, method.value)
        else:
            result = delivery.send(delivery.Message(kind=message.kind, to=method.value, subject=message.subject,
                                                    body=message.body, purpose="page", spoken=message.spoken,
                                                    gather_url=message.gather_url))
        status = PersonalPage.Status.SENT if result.ok else PersonalPage.Status.FAILED
        PersonalPage.objects.filter(pk=page.pk).update(
            status=status, sent_at=now if result.ok else None, provider_id=result.provider_id[:100],
            error="" if result.ok else result.detail[:500])
        verb = "Paged" if result.ok else "Failed to page"
        timeline_write(inc, TimelineEntry.Kind.NOTIFICATION, "system:paging",
                       f"{verb} {page.user.get_username()} by {method.get_kind_display()} ({method.value}), level {page.level}"
                       + ("" if result.ok else f": {result.detail}"),
                       {"personal_page": str(page.public_id), "status": status})
        return status


def personal_pages_due(*, now: datetime | None = None) -> list[int]:
    """The sweep: send every pending page that is due (beat runs it; tests call it with `now`)."""
    now = now or timezone.now()
    done: list[int] = []
    for _ in range(3):  # a moved page plans the covering person's pages: the next pass sends those due
        ids = list(PersonalPage.objects.filter(status=PersonalPage.Status.PENDING, due_at__lte=now)
                   .exclude(pk__in=done).order_by("due_at", "pk").values_list("pk", flat=True)[:SWEEP_BATCH])
        if not ids:
            break
        for pk in ids:
            try:
                personal_page_send(page_id=pk, now=now)
            except Exception:  # noqa: BLE001 - one bad row must not stop the rest of the sweep
                log.exception("personal page %s failed", pk)
        done.extend(ids)
    return done
