"""Heartbeat writes: create, ping, pause/resume, token rotation and the missed-ping check.

State flips are conditional updates (`filter(status=...).update(...)` with a row-count check), so a
ping racing the check, or two checks, change a heartbeat once and raise or resolve its alert once.
The alert goes through the incidents intake (alert_ingest_internal) like a health check's.
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.text import slugify

from portal.accounts.models import hash_token
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.heartbeats.errors import BadPingToken, HeartbeatConflict, HeartbeatInvalid
from portal.heartbeats.models import Heartbeat, new_ping_token
from portal.incidents import ingest

log = logging.getLogger(__name__)

ALERT_SOURCE = "heartbeats"
MAX_PERIOD_SECONDS = 31 * 24 * 3600
SEVERITY = "critical"


def _alert(heartbeat: Heartbeat, *, firing: bool, summary: str) -> None:
    ingest.alert_ingest_internal(
        source=ALERT_SOURCE, fingerprint=f"heartbeat:{heartbeat.slug}", name=f"Heartbeat missed: {heartbeat.name}",
        severity=SEVERITY, firing=firing, summary=summary, labels={"heartbeat": heartbeat.slug, "kind": "heartbeat"},
        annotations={"period_seconds": str(heartbeat.period_seconds), "grace_seconds": str(heartbeat.grace_seconds)},
        environment=heartbeat.environment, grouping_key=f"heartbeat:{heartbeat.slug}",
    )


def _validate(period_seconds: int, grace_seconds: int) -> None:
    if not 1 <= int(period_seconds) <= MAX_PERIOD_SECONDS:
        raise HeartbeatInvalid(f"period_seconds must be between 1 and {MAX_PERIOD_SECONDS}")
    if not 0 <= int(grace_seconds) <= MAX_PERIOD_SECONDS:
        raise HeartbeatInvalid(f"grace_seconds must be between 0 and {MAX_PERIOD_SECONDS}")


def heartbeat_create(*, name: str, period_seconds: int, grace_seconds: int, slug: str = "", environment=None,
                     actor) -> tuple[Heartbeat, str]:
    """A new heartbeat and its ping token (returned once; only its hash is kept)."""
    name = (name or "").strip()
    if not name:
        raise HeartbeatInvalid("a heartbeat needs a name")
    _validate(period_seconds, grace_seconds)
    slug = slugify(slug or name)[:60]
    if not slug:
        raise HeartbeatInvalid("the name gives no usable slug")
    token = new_ping_token()
    try:
        with transaction.atomic():
            heartbeat = Heartbeat.objects.create(slug=slug, name=name[:200], period_seconds=int(period_seconds),
                                                 grace_seconds=int(grace_seconds), environment=environment,
                                                 token_hash=hash_token(token))
            audit_record(actor=actor, verb="heartbeat.create", target=heartbeat,
                         after={"name": heartbeat.name, "period_seconds": heartbeat.period_seconds,
                                "grace_seconds": heartbeat.grace_seconds})
    except IntegrityError as exc:
        raise HeartbeatConflict(f"a heartbeat {slug!r} exists already") from exc
    return heartbeat, token


def heartbeat_token_reset(*, heartbeat: Heartbeat, actor) -> str:
    """Issue a new ping token (the old one stops working); returned once."""
    token = new_ping_token()
    with transaction.atomic():
        Heartbeat.objects.filter(pk=heartbeat.pk).update(token_hash=hash_token(token))
        audit_record(actor=actor, verb="heartbeat.token_reset", target=heartbeat)
    heartbeat.token_hash = hash_token(token)
    return token


def heartbeat_authenticate(*, slug: str, token: str) -> Heartbeat:
    """The heartbeat whose ping token this is; an unknown slug and a wrong token are the same 401."""
    heartbeat = Heartbeat.objects.select_related("environment").filter(slug=str(slug)[:60]).first()
    if (heartbeat is None or not token or len(token) > 200 or not heartbeat.token_hash
            or not hmac.compare_digest(heartbeat.token_hash, hash_token(token))):
        raise BadPingToken("unknown heartbeat or wrong ping token")
    return heartbeat


def heartbeat_ping(*, heartbeat: Heartbeat, now: datetime | None = None) -> Heartbeat:
    """Record a ping: the heartbeat is up until now + period + grace; a ping to a down heartbeat resolves
    its alert (once: only the ping that flips it from down resolves). A paused heartbeat keeps its pause."""
    now = now or timezone.now()
    alert_after = now + heartbeat.allowance
    with transaction.atomic():
        recovered = Heartbeat.objects.filter(pk=heartbeat.pk, status=Heartbeat.Status.DOWN).update(
            status=Heartbeat.Status.UP, last_ping_at=now, alert_after=alert_after, down_since=None,
            ping_count=F("ping_count") + 1)
        if recovered:
            _alert(heartbeat, firing=False, summary=f"pinged again at {now:%Y-%m-%d %H:%M:%S} UTC")
        else:
            Heartbeat.objects.filter(pk=heartbeat.pk, status__in=[Heartbeat.Status.NEW, Heartbeat.Status.UP]).update(
                status=Heartbeat.Status.UP, last_ping_at=now, alert_after=alert_after, ping_count=F("ping_count") + 1)
            Heartbeat.objects.filter(pk=heartbeat.pk, status=Heartbeat.Status.PAUSED).update(
                last_ping_at=now, ping_count=F("ping_count") + 1)
    heartbeat.refresh_from_db()
    return heartbeat


def heartbeats_check(*, now: datetime | None = None) -> list[str]:
    """Flip every up heartbeat whose ping is overdue (period + grace) to down and open its incident.
    Each flip is a conditional update in the alert's transaction: a racing ping or a second check wins
    or loses cleanly, and a failed intake rolls the flip back for the next run."""
    now = now or timezone.now()
    flipped = []
    for heartbeat in Heartbeat.objects.select_related("environment").filter(status=Heartbeat.Status.UP, alert_after__lt=now):
        try:
            with transaction.atomic():
                claimed = Heartbeat.objects.filter(pk=heartbeat.pk, status=Heartbeat.Status.UP,
                                                   alert_after=heartbeat.alert_after).update(
                    status=Heartbeat.Status.DOWN, down_since=now)
                if not claimed:
                    continue
                last = heartbeat.last_ping_at
                _alert(heartbeat, firing=True, summary=(
                    f"no ping for {heartbeat.period_seconds + heartbeat.grace_seconds}s "
                    f"(period {heartbeat.period_seconds}s + grace {heartbeat.grace_seconds}s); last ping "
                    + (f"{last:%Y-%m-%d %H:%M:%S} UTC" if last else "never")))
        except Exception:
            log.exception("could not raise the missed-ping alert of heartbeat %s", heartbeat.slug)
            continue
        flipped.append(heartbeat.slug)
    return flipped


def heartbeat_pause(*, heartbeat: Heartbeat, reason: str = "", actor) -> Heartbeat:
    """Pause: no alert until resumed; a firing alert is resolved (the pause is the decision not to page)."""
    with transaction.atomic():
        locked = Heartbeat.objects.select_for_update().get(pk=heartbeat.pk)
        if locked.status == Heartbeat.Status.PAUSED:
            raise HeartbeatConflict(f"{locked.slug} is paused already")
        before = locked.status
        Heartbeat.objects.filter(pk=locked.pk).update(status=Heartbeat.Status.PAUSED, alert_after=None,
                                                      down_since=None, paused_reason=(reason or "")[:300])
        if before == Heartbeat.Status.DOWN:
            _alert(locked, firing=False, summary=f"paused by {Actor.of(actor).label}")
        audit_record(actor=actor, verb="heartbeat.pause", target=locked, before={"status": before},
                     after={"status": Heartbeat.Status.PAUSED, "reason": reason or ""})
    heartbeat.refresh_from_db()
    return heartbeat


def heartbeat_resume(*, heartbeat: Heartbeat, actor, now: datetime | None = None) -> Heartbeat:
    """Resume: up again with a fresh allowance from now if it had pinged before, otherwise new."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Heartbeat.objects.select_for_update().get(pk=heartbeat.pk)
        if locked.status != Heartbeat.Status.PAUSED:
            raise HeartbeatConflict(f"{locked.slug} is not paused")
        status = Heartbeat.Status.UP if locked.last_ping_at else Heartbeat.Status.NEW
        Heartbeat.objects.filter(pk=locked.pk, status=Heartbeat.Status.PAUSED).update(
            status=status, alert_after=now + locked.allowance if status == Heartbeat.Status.UP else None,
            paused_reason="")
        audit_record(actor=actor, verb="heartbeat.resume", target=locked, before={"status": Heartbeat.Status.PAUSED},
                     after={"status": status})
    heartbeat.refresh_from_db()
    return heartbeat

