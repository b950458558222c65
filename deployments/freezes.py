"""Freeze windows: no deployments on an environment while one is on; rollbacks always run.

A freeze is one of
- a FreezeWindow a person made: one-off (starts_at to ends_at) or recurring (an RFC 5545 RRULE from
  starts_at, each occurrence as long as the first, read by dateutil like the maintenance windows);
- automatic: a critical incident open on the environment, or the uptime SLO's error budget spent.

`active_freeze(environment, at)` is the one read; `freeze_gate` is what deployment_create calls under
the environment lock: it refuses with the freeze's reason (409), or lets a lead through with a reason
(audited). Responders and above create windows; leads lift them or override them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from dateutil.rrule import rrule as RRule
from dateutil.rrule import rrulestr
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from deployments.errors import DeploymentError, InvalidInput, NeedsApproval
from deployments.mechanics import can_approve, lock_environment
from deployments.models import FreezeWindow
from portal.accounts.roles import RESPOND
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud.models import Environment
from portal.errors import Conflict, NotFound
from portal.health.models import Slo
from portal.incidents.models import Incident, Severity

OPEN_INCIDENT = (Incident.Status.TRIGGERED, Incident.Status.ACKNOWLEDGED)
MAX_WINDOW = timedelta(days=31)  # one occurrence; a longer freeze is a recurring one or a second window
RRULE_FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
RRULE_CHECK_SECONDS = 2.0  # dateutil walks to year 9999 looking for a date that never comes (BYMONTHDAY=31;BYMONTH=2)


class Frozen(DeploymentError, Conflict):
    """A deployment refused because the environment is frozen: the detail names the freeze's reason."""

    status, code = 409, "frozen"


@dataclass(frozen=True)
class Freeze:
    """What freezes an environment now: `kind` is window, incident or slo; `until` None = until it clears."""

    kind: str
    reason: str
    until: datetime | None = None
    window: FreezeWindow | None = None
    incident: Incident | None = None

    @property
    def words(self) -> str:
        end = f" until {self.until:%a %d %b %H:%M} UTC" if self.until else ""
        return f"{self.reason}{end}"


# ---------------------------------------------------------------------------------------------- reads


def occurrence_end(window: FreezeWindow, at: datetime) -> datetime | None:
    """The end of the window's occurrence covering `at`, or None (not on, or lifted)."""
    if window.ended_at is not None and window.ended_at <= at:
        return None
    if not window.rrule:
        return window.ends_at if window.starts_at <= at < window.ends_at else None
    length = window.ends_at - window.starts_at
    start = rrulestr(window.rrule, dtstart=window.starts_at).before(at, inc=True)
    if start is None or at >= start + length:
        return None
    return start + length


def next_start(window: FreezeWindow, at: datetime) -> datetime | None:
    if window.ended_at is not None:
        return None
    if not window.rrule:
        return window.starts_at if window.starts_at > at else None
    return rrulestr(window.rrule, dtstart=window.starts_at).after(at)


def _uptime_slo(environment: Environment) -> Slo | None:
    """The availability SLO measured on this environment (an SLO without one measures the default)."""
    scope = Q(environment=environment)
    if environment.name == settings.DEFAULT_ENVIRONMENT:
        scope |= Q(environment__isnull=True)
    # The environment's own SLO before the default one (NULLs sort differently on SQLite and PostgreSQL).
    return (Slo.objects.filter(scope, kind=Slo.Kind.AVAILABILITY)
            .order_by(F("environment_id").asc(nulls_last=True), "slug").first())


def active_freezes(environment: Environment, at: datetime | None = None) -> list[Freeze]:
    """Every freeze on the environment at `at` (default now): windows first, then the automatic ones."""
    at = at or timezone.now()
    out: list[Freeze] = []
    for w in FreezeWindow.objects.filter(environment=environment, ended_at__isnull=True, starts_at__lte=at):
        until = occurrence_end(w, at)
        if until is not None:
            out.append(Freeze(kind="window", reason=f"freeze: {w.reason}", until=until, window=w))
    incident = (Incident.objects.filter(environment=environment, status__in=OPEN_INCIDENT, severity=Severity.CRITICAL,
                                        opened_at__lte=at).order_by("opened_at").first())
    if incident is not None:
        out.append(Freeze(kind="incident", reason=f"critical incident open: {incident.title}", incident=incident))
    slo = _uptime_slo(environment)
    if slo is not None and slo.budget_remaining_pct is not None and slo.budget_remaining_pct <= 0:
        out.append(Freeze(kind="slo", reason=f"the {slo.name} SLO's error budget is spent "
                                             f"({slo.budget_remaining_pct:.0f} % left over {slo.window_days} days)"))
    return out


def active_freeze(environment: Environment, at: datetime | None = None) -> Freeze | None:
    """The freeze that refuses a deployment on `environment` at `at`, or None."""
    found = active_freezes(environment, at)
    return found[0] if found else None


def frozen_environments(at: datetime | None = None) -> list[tuple[Environment, list[Freeze]]]:
    """Every environment with a freeze on (the banner on every page)."""
    return [(env, found) for env in Environment.objects.all() if (found := active_freezes(env, at))]


def windows_for(environment: Environment, at: datetime | None = None) -> list[dict]:
    """The environment's windows not yet over, each with whether it is on and its next start."""
    at = at or timezone.now()
    out = []
    for w in FreezeWindow.objects.filter(environment=environment, ended_at__isnull=True):
        until = occurrence_end(w, at)
        upcoming = next_start(w, at)
        if until is None and upcoming is None:
            continue
        out.append({"window": w, "active": until is not None, "active_until": until, "next_starts_at": upcoming})
    return out


# ---------------------------------------------------------------------------------------------- checks


def can_respond(who: Any) -> bool:
    """A responder or above (a user with the respond permission, or a token of actions scope)."""
    actor = Actor.of(who)
    if actor.token is not None:
        return bool(actor.token.grants("actions"))
    return bool(actor.user is not None and actor.user.has_perm(RESPOND))


def _first_occurrence(rule: RRule, after: datetime) -> tuple[bool, datetime | None]:
    found: list[datetime | None] = []

    def look() -> None:
        try:
            found.append(rule.after(after, inc=True))
        except (ValueError, OverflowError):
            found.append(None)

    worker = threading.Thread(target=look, name="freeze-rrule-check", daemon=True)
    worker.start()
    worker.join(RRULE_CHECK_SECONDS)
    return bool(found), (found[0] if found else None)


def clean_rrule(text: str, starts_at: datetime, length: timedelta, now: datetime) -> str:
    """The recurrence as stored (no RRULE: prefix, upper case), or InvalidInput saying what is wrong."""
    text = (text or "").strip()
    if text[:6].upper() == "RRULE:":
        text = text[6:].strip()
    if not text:
        return ""
    if len(text) > 300 or any(ord(c) < 32 for c in text):
        raise InvalidInput("rrule is one line of at most 300 characters, e.g. FREQ=WEEKLY;BYDAY=FR")
    text = text.upper()
    parts = dict(p.partition("=")[::2] for p in text.split(";"))
    if parts.get("FREQ") not in RRULE_FREQS:
        raise InvalidInput(f"rrule needs FREQ={'|'.join(RRULE_FREQS)} (a freeze recurs at most daily), "
                           f"e.g. FREQ=WEEKLY;BYDAY=FR")
    try:
        rule = rrulestr(text, dtstart=starts_at)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise InvalidInput(f"rrule is not an RFC 5545 RRULE: {exc}") from exc
    if not isinstance(rule, RRule):
        raise InvalidInput("rrule is one RRULE (no EXDATE, RDATE or DTSTART lines)")
    done, first = _first_occurrence(rule, now - length)
    if not done:
        raise InvalidInput("rrule finds no occurrence in time (a date that never comes, such as BYMONTH=2;BYMONTHDAY=30?)")
    if first is None:
        raise InvalidInput("rrule has no occurrence left from now on")
    return text


# ---------------------------------------------------------------------------------------------- writes


def freeze_create(*, environment: Environment, starts_at: datetime, ends_at: datetime, reason: str, actor,
                  rrule: str = "") -> FreezeWindow:
    """A freeze window on the environment, audited: responders and above."""
    if not can_respond(actor):
        raise NeedsApproval("only a responder or a lead can freeze deployments")
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required")
    if len(reason) > 300:
        raise InvalidInput("the reason is at most 300 characters")
    if starts_at is None or ends_at is None:
        raise InvalidInput("starts_at and ends_at are required")
    if timezone.is_naive(starts_at) or timezone.is_naive(ends_at):
        raise InvalidInput("starts_at and ends_at need a time zone (e.g. 2026-12-04T15:00:00Z)")
    if ends_at <= starts_at:
        raise InvalidInput("ends_at must be after starts_at")
    if ends_at - starts_at > MAX_WINDOW:
        raise InvalidInput(f"a freeze window lasts at most {MAX_WINDOW.days} days (make a recurring one for a pattern)")
    now = timezone.now()
    rrule = clean_rrule(rrule, starts_at, ends_at - starts_at, now)
    if not rrule and ends_at <= now:
        raise InvalidInput("ends_at is in the past")
    with transaction.atomic():
        env = lock_environment(environment)
        w = FreezeWindow.objects.create(environment=env, starts_at=starts_at, ends_at=ends_at, rrule=rrule, reason=reason,
                                        created_by_label=Actor.of(actor).label)
        audit_record(actor=actor, verb="freeze.create", target=env, after={
            "starts_at": starts_at, "ends_at": ends_at, "rrule": rrule, "reason": reason},
            extra={"freeze": str(w.public_id), "environment": env.name})
        return w


def freeze_get(environment: Environment, public_id) -> FreezeWindow:
    w = FreezeWindow.objects.filter(environment=environment, public_id=public_id).first()
    if w is None:
        raise NotFound(f"no freeze window {public_id} on {environment.name}")
    return w


def freeze_lift(*, window: FreezeWindow, actor, reason: str = "") -> FreezeWindow:
    """End a freeze window now (a recurring one ends for good): leads only, audited. A second lift is a no-op."""
    if not can_approve(actor):
        raise NeedsApproval("only a lead can lift a freeze")
    with transaction.atomic():
        env = lock_environment(window.environment)
        w = FreezeWindow.objects.select_for_update().get(pk=window.pk)
        if w.ended_at is not None:
            return w
        w.ended_at = timezone.now()
        w.save(update_fields=["ended_at"])
        audit_record(actor=actor, verb="freeze.lift", target=env, before={"reason": w.reason, "rrule": w.rrule},
                     after={"ended_at": w.ended_at}, extra={"freeze": str(w.public_id), "environment": env.name,
                                                            "reason": (reason or "").strip()[:300]})
        return w


def freeze_gate(*, environment: Environment, actor, override_reason: str = "", version: str = "") -> str:
    """Call under the environment lock before a deployment: Frozen with the reason, or the lead's override
    reason (audited in the caller's transaction), or "" when nothing is frozen. Rollbacks never call this."""
    freeze = active_freeze(environment)
    if freeze is None:
        return ""
    override_reason = (override_reason or "").strip()
    if not override_reason:
        raise Frozen(f"{environment.name} is frozen ({freeze.words}): no deployments; rollbacks still run. "
                     f"A lead can override with a reason.")
    if not can_approve(actor):
        raise NeedsApproval(f"{environment.name} is frozen ({freeze.words}): only a lead can override a freeze")
    audit_record(actor=actor, verb="deployment.freeze_override", target=environment,
                 extra={"environment": environment.name, "version": version, "override_reason": override_reason[:300],
                        "freeze": freeze.kind, "freeze_reason": freeze.reason,
                        "freeze_window": str(freeze.window.public_id) if freeze.window else None,
                        "incident": str(freeze.incident.public_id) if freeze.incident else None})
    return override_reason[:300]
