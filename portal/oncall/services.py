"""Every on-call change: permission-checked, validated, and audited in the same transaction.

Who may do what: leads manage schedules and overrides for anyone; a responder may take the pager
(an override) for themselves and remove their own overrides; each person manages their own contact
methods, rules and feed, and admins manage anyone's. `actor` is a user, an ApiToken (its scope is
its power, its creator is "oneself"), or None / "system:<x>" for commands and seeds.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from portal.accounts.models import ApiToken
from portal.accounts.roles import ADMINISTER, APPROVE, RESPOND
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.errors import Conflict, Forbidden, Invalid
from portal.oncall import delivery
from portal.oncall.models import (
    ContactKind,
    ContactMethod,
    LayerMember,
    NotificationRule,
    OncallProfile,
    Override,
    RotationLayer,
    Schedule,
    Severity,
    ShiftFrequency,
    TestPage,
    TestResult,
    hash_secret,
    new_feed_token,
)
from portal.oncall.selectors import schedule_json

CODE_TTL = timedelta(minutes=15)
CODE_ATTEMPTS = 5
TEST_PAGE_EVERY = timedelta(seconds=30)
MAX_OVERRIDE = timedelta(days=90)
TAKE_HOURS = (1, 2, 4, 8, 12, 24)
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{6,20}$")


# ------------------------------------------------------------------------------------------------
# Who is acting


@dataclass(frozen=True)
class Powers:
    user: Any  # the person "oneself" means (None for a system actor or a token nobody created)
    respond: bool
    lead: bool
    admin: bool


def powers_of(actor: Any) -> Powers:
    if actor is None or isinstance(actor, str):
        return Powers(user=None, respond=True, lead=True, admin=True)  # management commands and seeds
    if isinstance(actor, ApiToken):
        return Powers(user=actor.created_by, respond=actor.grants("actions"), lead=actor.grants("lead"), admin=False)
    if getattr(actor, "is_authenticated", False):
        return Powers(user=actor, respond=actor.has_perm(RESPOND), lead=actor.has_perm(APPROVE), admin=actor.has_perm(ADMINISTER))
    return Powers(user=None, respond=False, lead=False, admin=False)


def _is_self(powers: Powers, user) -> bool:
    return powers.user is not None and user is not None and powers.user.pk == user.pk


def _require_lead(actor) -> None:
    if not powers_of(actor).lead:
        raise Forbidden("only leads manage schedules")


def _require_own_or_admin(actor, user) -> None:
    powers = powers_of(actor)
    if not (powers.admin or _is_self(powers, user)):
        raise Forbidden("you manage only your own contact methods, rules and feed (admins manage anyone's)")


# ------------------------------------------------------------------------------------------------
# Schedules


def _zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"unknown time zone {name!r} (use an IANA name such as Europe/Berlin)") from exc
    return name


def _aware(value: Any, what: str) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise Invalid(f"{what} is not an ISO 8601 date-time") from exc
    if not isinstance(value, datetime) or timezone.is_naive(value):
        raise Invalid(f"{what} must be a date-time with a UTC offset")
    return value


def _time(value: Any, what: str) -> time | None:
    if value in (None, ""):
        return None
    if isinstance(value, time):
        return value
    try:
        return time.fromisoformat(str(value))
    except ValueError as exc:
        raise Invalid(f"{what} is not a time (HH:MM)") from exc


@dataclass(frozen=True)
class LayerInput:
    members: list
    frequency: str
    interval: int
    starts_at: datetime
    name: str
    weekdays: list[int]
    restrict_start: time | None
    restrict_end: time | None


def _layer_input(raw: dict, index: int) -> LayerInput:
    where = f"layer {index + 1}"
    usernames = raw.get("members") or []
    if not usernames:
        raise Invalid(f"{where} has no members: a rotation needs at least one person")
    if len(set(usernames)) != len(usernames):
        raise Invalid(f"{where} names a member twice")
    users = {u.username: u for u in get_user_model().objects.filter(username__in=usernames, is_active=True)}
    unknown = [u for u in usernames if u not in users]
    if unknown:
        raise Invalid(f"{where}: no active user {', '.join(map(repr, unknown))}")
    if raw.get("frequency"):
        frequency = raw["frequency"]
        if frequency not in ShiftFrequency.values:
            raise Invalid(f"{where}: frequency is one of {', '.join(ShiftFrequency.values)}")
        interval = int(raw.get("interval") or 1)
    else:
        hours = raw.get("shift_hours")
        if hours is None:
            raise Invalid(f"{where} needs shift_hours (or frequency and interval)")
        hours = int(hours)
        if hours <= 0:
            raise Invalid(f"{where}: a shift of {hours} hours is refused: shifts last at least one hour")
        # Whole days and weeks recur on the wall clock (the handoff time survives daylight-saving changes).
        frequency, interval = ((ShiftFrequency.WEEKLY, hours // 168) if hours % 168 == 0 else
                               (ShiftFrequency.DAILY, hours // 24) if hours % 24 == 0 else (ShiftFrequency.HOURS, hours))
    if interval <= 0 or interval > 1000:
        raise Invalid(f"{where}: a shift of zero length is refused (interval must be 1-1000)")
    restrictions = raw.get("restrictions") or {}
    weekdays = sorted(set(restrictions.get("weekdays") or []))
    if any(not isinstance(d, int) or not 0 <= d <= 6 for d in weekdays):
        raise Invalid(f"{where}: restriction weekdays are 0 (Monday) to 6 (Sunday)")
    start, end = _time(restrictions.get("start"), f"{where} restriction start"), _time(restrictions.get("end"), f"{where} restriction end")
    if (start is None) != (end is None):
        raise Invalid(f"{where}: a restriction window needs both a start and an end")
    return LayerInput(
        members=[users[u] for u in usernames], frequency=frequency, interval=interval,
        starts_at=_aware(raw.get("starts_at"), f"{where} starts_at"), name=str(raw.get("name") or "")[:100],
        weekdays=weekdays, restrict_start=start, restrict_end=end,
    )


def _write_layers(schedule: Schedule, layers: list[LayerInput]) -> None:
    schedule.layers.all().delete()
    for priority, spec in enumerate(layers):
        layer = RotationLayer.objects.create(
            schedule=schedule, priority=priority, name=spec.name, frequency=spec.frequency, interval=spec.interval,
            starts_at=spec.starts_at, restrict_weekdays=spec.weekdays, restrict_start=spec.restrict_start,
            restrict_end=spec.restrict_end,
        )
        LayerMember.objects.bulk_create(LayerMember(layer=layer, user=u, position=i) for i, u in enumerate(spec.members))


def _layers_input(layers: list[dict]) -> list[LayerInput]:
    if not layers:
        raise Invalid("a schedule needs at least one rotation layer")
    return [_layer_input(raw, i) for i, raw in enumerate(layers)]


def _snapshot(schedule: Schedule) -> dict:
    return schedule_json(Schedule.objects.prefetch_related("layers__memberships__user").get(pk=schedule.pk))


def schedule_create(*, slug: str, name: str, time_zone: str = "UTC", layers: list[dict], actor) -> Schedule:
    """Layers are listed from the bottom: a later layer covers an earlier one where both have someone."""
    _require_lead(actor)
    if not slug or slugify(slug) != slug or len(slug) > 50 or slug == "me":
        raise Invalid("slug must be 1-50 lowercase letters, digits or hyphens (and not \"me\")")
    parsed = _layers_input(layers)
    with transaction.atomic():
        if Schedule.objects.filter(slug=slug).exists():
            raise Conflict(f"a schedule {slug!r} exists already")
        schedule = Schedule.objects.create(slug=slug, name=(name or slug)[:100], time_zone=_zone(time_zone))
        _write_layers(schedule, parsed)
        audit_record(actor=actor, verb="oncall.schedule.create", target=schedule, after=_snapshot(schedule))
    return schedule


def schedule_update(*, schedule: Schedule, actor, name: str | None = None, time_zone: str | None = None,
                    layers: list[dict] | None = None) -> Schedule:
    _require_lead(actor)
    parsed = _layers_input(layers) if layers is not None else None
    with transaction.atomic():
        schedule = Schedule.objects.select_for_update().get(pk=schedule.pk)
        before = _snapshot(schedule)
        if name is not None:
            schedule.name = name[:100] or schedule.slug
        if time_zone is not None:
            schedule.time_zone = _zone(time_zone)
        schedule.save(update_fields=["name", "time_zone", "updated_at"])
        if parsed is not None:
            _write_layers(schedule, parsed)
        audit_record(actor=actor, verb="oncall.schedule.update", target=schedule, before=before, after=_snapshot(schedule))
    return schedule


def schedule_feed_token_reset(*, schedule: Schedule, actor) -> str:
    """A new secret for /oncall/<slug>.ics; the old link stops working. The raw token is returned once."""
    _require_lead(actor)
    raw = new_feed_token()
    with transaction.atomic():
        Schedule.objects.filter(pk=schedule.pk).update(ical_token_hash=hash_secret(raw))
        audit_record(actor=actor, verb="oncall.schedule.feed_token_reset", target=schedule)
    return raw


# ------------------------------------------------------------------------------------------------
# Overrides


def override_create(*, schedule: Schedule, user, starts_at: Any, ends_at: Any, actor, reason: str = "",
                    dedup_key: str = "") -> tuple[Override, bool]:
    """`user` covers [starts_at, ends_at). Overlaps are allowed (the newest wins). Returns (override, created):
    a repeat of the same `dedup_key` returns the first one."""
    powers = powers_of(actor)
    if not (powers.lead or (powers.respond and _is_self(powers, user))):
        raise Forbidden("you may take the pager for yourself; overrides for others are for leads")
    starts_at, ends_at = _aware(starts_at, "starts_at"), _aware(ends_at, "ends_at")
    if ends_at <= starts_at:
        raise Invalid("an override ends after it starts")
    if ends_at - starts_at > MAX_OVERRIDE:
        raise Invalid("an override lasts at most 90 days")
    if ends_at <= timezone.now():
        raise Invalid("this override would end in the past")
    if user is None or not user.is_active:
        raise Invalid("overrides are for active users")
    if dedup_key:
        existing = Override.objects.filter(schedule=schedule, dedup_key=dedup_key).first()
        if existing:
            return existing, False
    label = Actor.of(actor).label
    try:
        with transaction.atomic():
            override = Override.objects.create(
                schedule=schedule, user=user, starts_at=starts_at, ends_at=ends_at, reason=reason[:200],
                created_by=powers.user if not isinstance(actor, str) else None, created_by_label=label, dedup_key=dedup_key,
            )
            audit_record(actor=actor, verb="oncall.override.create", target=override, after={
                "schedule": schedule.slug, "user": user.username, "starts_at": starts_at, "ends_at": ends_at, "reason": reason})
    except IntegrityError:
        existing = Override.objects.filter(schedule=schedule, dedup_key=dedup_key).first() if dedup_key else None
        if existing is None:
            raise
        return existing, False
    return override, True


TAKE_REPEAT_WINDOW = timedelta(minutes=1)


def pager_take(*, schedule: Schedule, hours: int, actor, now: datetime | None = None) -> tuple[Override, bool]:
    """"Take the pager": an override for oneself from now for `hours`. A second identical take within a
    minute of the first (a double click, a retried form) finds the first instead of stacking another."""
    powers = powers_of(actor)
    if powers.user is None:
        raise Forbidden("taking the pager is for a person")
    if hours not in TAKE_HOURS:
        raise Invalid(f"take the pager for {', '.join(map(str, TAKE_HOURS))} hours")
    now = (now or timezone.now()).replace(microsecond=0)
    prefix = f"take:{powers.user.pk}:{hours}:"
    with transaction.atomic():
        # The schedule row serialises takes (PostgreSQL; SQLite's IMMEDIATE transactions do the same),
        # so two clicks cannot both miss each other. A window, not a minute bucket: clicks either side of
        # a minute boundary are still one take.
        Schedule.objects.select_for_update().filter(pk=schedule.pk).first()
        recent = (Override.objects.filter(schedule=schedule, user=powers.user, dedup_key__startswith=prefix,
                                          starts_at__gte=now - TAKE_REPEAT_WINDOW, starts_at__lte=now)
                  .order_by("-starts_at").first())
        if recent is not None:
            return recent, False
        return override_create(schedule=schedule, user=powers.user, starts_at=now, ends_at=now + timedelta(hours=hours),
                               actor=actor, reason=f"took the pager for {hours} h",
                               dedup_key=f"{prefix}{now:%Y%m%dT%H%M%S}")


def override_delete(*, override: Override, actor) -> None:
    powers = powers_of(actor)
    if not (powers.lead or (powers.respond and _is_self(powers, override.user))):
        raise Forbidden("you may remove your own overrides; others' are for leads")
    with transaction.atomic():
        before = {"schedule": override.schedule.slug, "user": override.user.username,
                  "starts_at": override.starts_at, "ends_at": override.ends_at}
        audit_record(actor=actor, verb="oncall.override.delete", target=override, before=before)
        override.delete()


# ------------------------------------------------------------------------------------------------
# Contact methods


def normalize_contact_value(kind: str, value: str) -> str:
    value = (value or "").strip()
    if kind in (ContactKind.SMS, ContactKind.VOICE):
        compact = re.sub(r"[\s().-]", "", value)
        if not E164.match(compact):
            raise Invalid("a phone number is in E.164 form: + then country code and number, e.g. +4915112345678")
        return compact
    if kind == ContactKind.EMAIL:
        try:
            validate_email(value)
        except ValidationError as exc:
            raise Invalid(f"{value!r} is not an email address") from exc
        return value
    if kind == ContactKind.SLACK:
        if not SLACK_USER.match(value):
            raise Invalid("a Slack user id starts with U or W, e.g. U024BE7LH (Profile > ⋮ > Copy member ID)")
        return value
    raise Invalid(f"contact kind is one of {', '.join(ContactKind.values)}")


def _code_hash(method: ContactMethod, code: str) -> str:
    # Keyed by the server secret and the method: a leaked row does not give the six digits away offline.
    key = settings.SECRET_KEY.encode()
    return hmac.new(key, f"{method.public_id}:{code}".encode(), "sha256").hexdigest()


def contact_method_add(*, user, kind: str, value: str, actor, verified: bool = False) -> ContactMethod:
    """Add a method; unverified ones get a code (sent after commit). `verified` is for setup scripts and admins."""
    _require_own_or_admin(actor, user)
    if verified and not powers_of(actor).admin:
        raise Forbidden("only admins (and setup commands) add a method as verified")
    value = normalize_contact_value(kind, value)
    try:
        with transaction.atomic():
            method = ContactMethod.objects.create(user=user, kind=kind, value=value,
                                                  verified_at=timezone.now() if verified else None)
            audit_record(actor=actor, verb="oncall.contact_method.add", target=method,
                         after={"user": user.username, "kind": kind, "value": value, "verified": verified})
    except IntegrityError as exc:
        raise Conflict(f"{user.username} has this {kind} method already") from exc
    if not verified:
        contact_method_send_code(method=method, actor=actor)
    return method


def contact_method_send_code(*, method: ContactMethod, actor) -> delivery.DeliveryResult | None:
    """A fresh six-digit code: its keyed hash is stored, the code goes out once the row is committed."""
    _require_own_or_admin(actor, method.user)
    if method.is_verified:
        raise Conflict("this method is verified already")
    code = f"{secrets.randbelow(10**6):06d}"
    now = timezone.now()
    with transaction.atomic():
        ContactMethod.objects.filter(pk=method.pk).update(
            code_hash=_code_hash(method, code), code_expires_at=now + CODE_TTL, code_attempts=0, code_sent_at=now)
        audit_record(actor=actor, verb="oncall.contact_method.code_sent", target=method)
    method.refresh_from_db()
    result = delivery.deliver_verification_code(method, code)
    return result


def contact_method_verify(*, method: ContactMethod, code: str, actor) -> ContactMethod:
    _require_own_or_admin(actor, method.user)
    code = (code or "").strip()
    refusal = None
    with transaction.atomic():
        method = ContactMethod.objects.select_for_update().get(pk=method.pk)
        if method.is_verified:
            return method
        if not method.code_hash or method.code_expires_at is None or method.code_expires_at <= timezone.now():
            refusal = Invalid("the code has expired: send a new one")
        elif method.code_attempts >= CODE_ATTEMPTS:
            refusal = Invalid("too many wrong codes: send a new one")
        elif not hmac.compare_digest(method.code_hash, _code_hash(method, code)):
            method.code_attempts += 1
            method.save(update_fields=["code_attempts"])
            audit_record(actor=actor, verb="oncall.contact_method.verify", target=method, result="error",
                         extra={"attempts": method.code_attempts})
            refusal = Invalid(f"wrong code ({CODE_ATTEMPTS - method.code_attempts} tries left)")
        else:
            method.verified_at = timezone.now()
            method.code_hash, method.code_expires_at, method.code_attempts = "", None, 0
            method.save(update_fields=["verified_at", "code_hash", "code_expires_at", "code_attempts"])
            audit_record(actor=actor, verb="oncall.contact_method.verify", target=method,
                         after={"kind": method.kind, "value": method.value})
    if refusal is not None:  # raised after the commit, so a wrong code's attempt counts
        raise refusal
    return method


def contact_method_delete(*, method: ContactMethod, actor) -> None:
    _require_own_or_admin(actor, method.user)
    with transaction.atomic():
        audit_record(actor=actor, verb="oncall.contact_method.delete", target=method,
                     before={"user": method.user.username, "kind": method.kind, "value": method.value})
        method.delete()


def test_page_send(*, method: ContactMethod, actor) -> TestPage:
    """"Send me a test page": the only page an unverified method ever gets. Recorded with its result."""
    _require_own_or_admin(actor, method.user)
    last = TestPage.objects.filter(method=method).order_by("-sent_at").values_list("sent_at", flat=True).first()
    if last and timezone.now() - last < TEST_PAGE_EVERY:
        raise Conflict("a test page went to this method a moment ago; wait half a minute")
    result = delivery.deliver_test_page(method)  # outside any transaction: a network call holds no lock
    with transaction.atomic():
        page = TestPage.objects.create(user=method.user, method=method, kind=method.kind, value=method.value,
                                       sent_at=timezone.now(), result=TestResult.SENT if result.ok else TestResult.FAILED,
                                       detail=result.detail[:500])
        audit_record(actor=actor, verb="oncall.test_page", target=method, after={"result": page.result, "detail": page.detail})
    return page


test_page_send.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


# ------------------------------------------------------------------------------------------------
# Notification rules and the personal feed


def notification_rule_add(*, user, severity: str, kind: str, delay_minutes: Any, actor) -> NotificationRule:
    _require_own_or_admin(actor, user)
    if severity not in Severity.values:
        raise Invalid(f"severity is one of {', '.join(Severity.values)}")
    if kind not in ContactKind.values:
        raise Invalid(f"contact kind is one of {', '.join(ContactKind.values)}")
    try:
        delay = int(delay_minutes)
    except (TypeError, ValueError) as exc:
        raise Invalid("the delay is a whole number of minutes") from exc
    if not 0 <= delay <= 1440:
        raise Invalid("the delay is 0-1440 minutes")
    try:
        with transaction.atomic():
            rule = NotificationRule.objects.create(user=user, severity=severity, kind=kind, delay_minutes=delay)
            audit_record(actor=actor, verb="oncall.rule.add", target=rule,
                         after={"user": user.username, "severity": severity, "kind": kind, "delay_minutes": delay})
    except IntegrityError as exc:
        raise Conflict("this rule exists already") from exc
    return rule


def notification_rule_delete(*, rule: NotificationRule, actor) -> None:
    _require_own_or_admin(actor, rule.user)
    with transaction.atomic():
        audit_record(actor=actor, verb="oncall.rule.delete", target=rule,
                     before={"user": rule.user.username, "severity": rule.severity, "kind": rule.kind, "delay_minutes": rule.delay_minutes})
        rule.delete()


def personal_feed_token_reset(*, user, actor) -> str:
    """A new secret for the personal feed /oncall/me.ics; the old link stops working. Returned once."""
    _require_own_or_admin(actor, user)
    raw = new_feed_token()
    with transaction.atomic():
        profile, _ = OncallProfile.objects.select_for_update().get_or_create(user=user)
        profile.ical_token_hash = hash_secret(raw)
        profile.save(update_fields=["ical_token_hash"])
        audit_record(actor=actor, verb="oncall.feed_token_reset", target=(get_user_model()._meta.label_lower, str(user.pk)),
                     extra={"user": user.username})
    return raw

