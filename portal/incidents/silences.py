"""Silences and maintenance windows: label matchers over a time range that keep an alert's page.

A silenced alert is stored and joins its incident like any other; the incident is marked with the
silence's reason and pages nobody. The portal makes silences for its own actions (a drill, an RDS
failover, a scale, a deployment hold) through `silence_expected`, matching the environment and the
metrics the action is expected to move, for as long as it runs plus a margin. Planned work is a
MaintenanceWindow, one-off or recurring (an RRULE read by dateutil).

Matching: every matcher must equal the alert's label, except `colour`: an alert that names no
colour (a check over both colours, a load balancer's alarm) is matched by a silence for either.
"""

from __future__ import annotations

import math
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from dateutil.rrule import rrule as RRule
from dateutil.rrule import rrulestr
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud.models import Environment
from portal.errors import Invalid, NotFound
from portal.incidents.models import Incident, MaintenanceWindow, Silence

# An action's alerts trail it: metrics are read over windows of minutes, alarms evaluate a few periods.
EXPECTED_MARGIN = timedelta(minutes=15)
MAX_SILENCE = timedelta(days=31)
# A colour matcher also matches an alert that names no colour (it covers both).
COLOUR_LABELS = ("colour", "color")


_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def _unstorable(text: str) -> bool:
    """Control characters and lone surrogates (valid JSON escapes the database cannot store)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return bool(_CONTROL_CHARS.search(text))


class SilenceInvalid(Invalid):
    pass


@dataclass(frozen=True)
class Hold:
    """What keeps an alert's page: a silence or a maintenance window occurrence."""

    reason: str
    until: datetime
    silence: Silence | None = None


def labels_match(matchers: dict, labels: dict) -> bool:
    if not matchers:
        return False
    for name, value in matchers.items():
        have = labels.get(name)
        if name in COLOUR_LABELS and not have and not labels.get("colour") and not labels.get("color"):
            continue
        if str(have or "") != str(value):
            return False
    return True


def _clean_matchers(matchers) -> dict[str, str]:
    if not isinstance(matchers, dict) or not matchers:
        raise SilenceInvalid("matchers must be a non-empty object of label: value")
    out = {}
    for k, v in matchers.items():
        if not isinstance(k, str) or not k.strip() or not isinstance(v, (str, int, float)) or not str(v).strip():
            raise SilenceInvalid("each matcher is a label name and a non-empty value")
        if _unstorable(k + str(v)):
            raise SilenceInvalid("a matcher holds a NUL, newline or control character")
        if len(k) > 100 or len(str(v)) > 300:
            raise SilenceInvalid("a matcher's label is at most 100 characters, its value 300")
        out[k.strip()] = str(v).strip()
    return out


def _snapshot(s: Silence) -> dict:
    return {"matchers": s.matchers, "starts_at": s.starts_at.isoformat(), "ends_at": s.ends_at.isoformat(),
            "reason": s.reason, "expected": s.expected, "ref": s.ref}


def silence_create(*, matchers: dict, starts_at: datetime | None, ends_at: datetime, reason: str, actor,
                   expected: str = "", ref: str = "") -> Silence:
    """A silence, audited. starts_at defaults to now."""
    matchers = _clean_matchers(matchers)
    reason = (reason or "").strip()
    if not reason:
        raise SilenceInvalid("a reason is required")
    if _unstorable(reason) or _unstorable(expected + ref):
        raise SilenceInvalid("the reason holds a NUL, newline or control character")
    now = timezone.now()
    starts_at = starts_at or now
    if timezone.is_naive(starts_at) or timezone.is_naive(ends_at):
        raise SilenceInvalid("starts_at and ends_at need a time zone")
    if ends_at <= starts_at:
        raise SilenceInvalid("ends_at must be after starts_at")
    if ends_at <= now:
        raise SilenceInvalid("ends_at is in the past")
    if ends_at - starts_at > MAX_SILENCE:
        raise SilenceInvalid(f"a silence lasts at most {MAX_SILENCE.days} days; plan longer work as a maintenance window")
    with transaction.atomic():
        s = Silence.objects.create(matchers=matchers, starts_at=starts_at, ends_at=ends_at, reason=reason[:500],
                                   expected=expected[:40], ref=ref[:200], created_by=Actor.of(actor).label)
        audit_record(actor=actor, verb="silence.create", target=("silence", str(s.public_id)), after=_snapshot(s))
    return s


def silence_delete(*, silence: Silence, actor) -> Silence:
    """End a silence now (kept for the record). Deleting twice is a no-op."""
    with transaction.atomic():
        s = Silence.objects.select_for_update().get(pk=silence.pk)
        if s.deleted_at is not None:
            return s
        before = _snapshot(s)
        s.deleted_at = timezone.now()
        s.save(update_fields=["deleted_at"])
        audit_record(actor=actor, verb="silence.delete", target=("silence", str(s.public_id)), before=before)
    return s


def silence_get(public_id) -> Silence:
    try:
        return Silence.objects.get(public_id=uuid.UUID(str(public_id)))
    except (Silence.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound("no such silence") from exc


def silence_expected(*, environment, metrics: list[str], what: str, ends_at: datetime, actor, ref: str,
                     colour: str = "", extra: list[dict] | None = None, margin: timedelta = EXPECTED_MARGIN) -> list[Silence]:
    """Silence exactly what a portal action is expected to cause on `environment`: one silence per
    metric (environment + metric [+ colour]) and per extra matcher set, until ends_at plus margin,
    labelled "expected: <what>". Making them twice for one running action (ref) is a no-op; once
    finished (silences_finish) the ref may start again."""
    existing = list(Silence.objects.filter(ref=ref, deleted_at__isnull=True, ends_at__gt=timezone.now() + margin)) if ref else []
    if existing:
        return existing
    sets = []
    for metric in metrics:
        m = {"environment": environment.name, "metric": metric}
        if colour:
            m["colour"] = colour
            # What the whole platform reports about the metric (an SLO's burn rate) moves with one colour too;
            # an alert about the other colour carries its own colour and still pages.
            sets.append({"environment": environment.name, "metric": metric, "scope": "platform"})
        sets.append(m)
    for m in extra or []:
        sets.append({"environment": environment.name, **m})
    return [silence_create(matchers=m, starts_at=None, ends_at=ends_at + margin, reason=f"expected: {what}", actor=actor,
                           expected=what, ref=ref) for m in sets]


def silences_finish(*, ref: str, actor, margin: timedelta = EXPECTED_MARGIN) -> int:
    """The action ended early (a drill stopped): its silences end a margin from now."""
    until = timezone.now() + margin
    n = 0
    with transaction.atomic():
        for s in Silence.objects.select_for_update().filter(ref=ref, deleted_at__isnull=True, ends_at__gt=until):
            before = _snapshot(s)
            s.ends_at = max(until, s.starts_at + timedelta(seconds=1))
            s.save(update_fields=["ends_at"])
            audit_record(actor=actor, verb="silence.shorten", target=("silence", str(s.public_id)), before=before, after=_snapshot(s))
            n += 1
    return n


# ---------------------------------------------------------------------------------------------- maintenance


def occurrence_at(window: MaintenanceWindow, now: datetime) -> datetime | None:
    """The end of the window's occurrence covering `now`, or None."""
    length = timedelta(minutes=window.duration_minutes)
    if not window.rrule:
        return window.starts_at + length if window.starts_at <= now < window.starts_at + length else None
    rule = rrulestr(window.rrule, dtstart=window.starts_at)
    start = rule.before(now, inc=True)
    if start is None or now >= start + length:
        return None
    return start + length


# The parts of an RFC 5545 RRULE (section 3.3.10). A window lasts at least a minute, so it recurs at most hourly.
RRULE_PARTS = ("FREQ", "UNTIL", "COUNT", "INTERVAL", "BYSECOND", "BYMINUTE", "BYHOUR", "BYDAY", "BYMONTHDAY", "BYYEARDAY",
               "BYWEEKNO", "BYMONTH", "BYSETPOS", "WKST")
RRULE_FREQS = ("HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY")
MAX_RRULE = 300
MAX_WINDOW_MINUTES = 7 * 24 * 60
# dateutil walks period by period until year 9999 looking for a rule that can never happen (BYMONTH=2;BYMONTHDAY=30):
# the first occurrence must be found within this many seconds, or the rule is refused.
RRULE_CHECK_SECONDS = 2.0


def window_reason(window: MaintenanceWindow) -> str:
    """The hold's reason on the alerts and incidents a window silences (how they are found again when it is removed)."""
    return f"maintenance: {window.name} ({window.reason})"[:500]


def _first_occurrence(rule: RRule, now: datetime) -> tuple[bool, datetime | None]:
    """(finished in time, the first occurrence at or after `now`, or the one in progress)."""
    found: list[datetime | None] = []

    def look() -> None:
        try:
            found.append(rule.after(now, inc=True))
        except (ValueError, OverflowError):
            found.append(None)

    worker = threading.Thread(target=look, name="rrule-check", daemon=True)
    worker.start()
    worker.join(RRULE_CHECK_SECONDS)
    return (bool(found), found[0] if found else None)


def rrule_check(rrule: str, starts_at: datetime, duration_minutes: int, now: datetime | None = None) -> str:
    """The recurrence as stored (no RRULE: prefix, upper case), or SilenceInvalid saying what is wrong with it."""
    text = (rrule or "").strip()
    if text[:6].upper() == "RRULE:":
        text = text[6:].strip()
    if not text:
        return ""
    if len(text) > MAX_RRULE:
        raise SilenceInvalid(f"the recurrence is at most {MAX_RRULE} characters")
    if _unstorable(text):
        raise SilenceInvalid("the recurrence holds a NUL, newline or control character")
    text = text.upper()
    parts: dict[str, str] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not eq or not name or not value.strip():
            raise SilenceInvalid(f"the recurrence is not an RRULE: {part!r} is not NAME=value (e.g. FREQ=WEEKLY;BYDAY=TU)")
        if name not in RRULE_PARTS:
            raise SilenceInvalid(f"the recurrence is not an RRULE: {name!r} is not an RRULE part ({', '.join(RRULE_PARTS)})")
        if name in parts:
            raise SilenceInvalid(f"the recurrence names {name} twice")
        parts[name] = value.strip()
    freq = parts.get("FREQ")
    if freq is None:
        raise SilenceInvalid("the recurrence needs a FREQ (HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY)")
    if freq not in RRULE_FREQS:
        raise SilenceInvalid(f"FREQ={freq}: a maintenance window recurs at most hourly (FREQ is one of {', '.join(RRULE_FREQS)})")
    for name in ("INTERVAL", "COUNT"):
        if name in parts and not (parts[name].isdigit() and int(parts[name]) >= 1):
            raise SilenceInvalid(f"{name} is a whole number of at least 1")
    if "COUNT" in parts and "UNTIL" in parts:
        raise SilenceInvalid("the recurrence gives COUNT or UNTIL, not both (RFC 5545)")
    try:
        rule = rrulestr(text, dtstart=starts_at)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as exc:
        raise SilenceInvalid(f"the recurrence is not an RRULE: {exc}") from exc
    if not isinstance(rule, RRule):
        raise SilenceInvalid("the recurrence is one RRULE (no EXDATE, RDATE or DTSTART lines)")
    now = now or timezone.now()
    done, first = _first_occurrence(rule, now - timedelta(minutes=duration_minutes))
    if not done:
        raise SilenceInvalid("the recurrence finds no occurrence (a date that never comes, such as BYMONTH=2;BYMONTHDAY=30?)")
    if first is None:
        raise SilenceInvalid("the recurrence has no occurrence left from now on")
    return text


def maintenance_create(*, name: str, matchers: dict, starts_at: datetime, duration_minutes: int, reason: str, actor,
                       rrule: str = "") -> MaintenanceWindow:
    """A maintenance window, audited: one-off (no rrule) or recurring (an RFC 5545 RRULE from starts_at)."""
    matchers = _clean_matchers(matchers)
    name, reason = (name or "").strip(), (reason or "").strip()
    if not name or not reason:
        raise SilenceInvalid("a name and a reason are required")
    if _unstorable(name + reason):
        raise SilenceInvalid("the name or reason holds a NUL, newline or control character")
    if not isinstance(starts_at, datetime) or timezone.is_naive(starts_at):
        raise SilenceInvalid("starts_at needs a time zone")
    try:
        duration_minutes = int(duration_minutes)
    except (TypeError, ValueError) as exc:
        raise SilenceInvalid("duration_minutes must be a whole number") from exc
    if not 1 <= duration_minutes <= MAX_WINDOW_MINUTES:
        raise SilenceInvalid("a maintenance window lasts between 1 minute and 7 days")
    now = timezone.now()
    rrule = rrule_check(rrule, starts_at, duration_minutes, now)
    if not rrule and starts_at + timedelta(minutes=duration_minutes) <= now:
        raise SilenceInvalid("the window has already ended (its end is in the past)")
    with transaction.atomic():
        w = MaintenanceWindow.objects.create(name=name[:200], matchers=matchers, starts_at=starts_at, duration_minutes=duration_minutes,
                                             rrule=rrule, reason=reason[:500], created_by=Actor.of(actor).label)
        audit_record(actor=actor, verb="maintenance.create", target=("maintenance_window", str(w.public_id)),
                     after={"name": w.name, "matchers": w.matchers, "starts_at": starts_at.isoformat(),
                            "duration_minutes": duration_minutes, "rrule": w.rrule, "reason": w.reason})
    return w


def maintenance_plan(*, environment: str, starts_at: datetime, reason: str, actor, ends_at: datetime | None = None,
                     duration_minutes: int | None = None, rrule: str = "", matchers: dict | None = None,
                     name: str = "") -> MaintenanceWindow:
    """A maintenance window on one environment (the API's form): the environment's name joins the
    matchers, and the (first) occurrence lasts until ends_at or for duration_minutes, one of them;
    an end between whole minutes rounds up. Without a name the reason names it."""
    env_name = (environment or "").strip() if isinstance(environment, str) else ""
    if not env_name:
        raise SilenceInvalid("environment is required")
    if not Environment.objects.filter(name=env_name).exists():
        raise SilenceInvalid(f"no environment is named {env_name[:60]!r}")
    matchers = dict(matchers or {})
    if "environment" in matchers and str(matchers["environment"]).strip() != env_name:
        raise SilenceInvalid(f"matchers.environment ({str(matchers['environment'])[:60]!r}) differs from environment ({env_name!r})")
    matchers["environment"] = env_name
    if not isinstance(starts_at, datetime) or timezone.is_naive(starts_at):
        raise SilenceInvalid("starts_at needs a time zone")
    if (ends_at is None) == (duration_minutes is None):
        raise SilenceInvalid("give ends_at or duration_minutes (one of them)")
    minutes = duration_minutes
    if ends_at is not None:
        if timezone.is_naive(ends_at):
            raise SilenceInvalid("ends_at needs a time zone")
        if ends_at <= starts_at:
            raise SilenceInvalid("ends_at must be after starts_at")
        if ends_at - starts_at > timedelta(minutes=MAX_WINDOW_MINUTES):
            raise SilenceInvalid("a maintenance window lasts between 1 minute and 7 days (ends_at is too far after starts_at)")
        minutes = math.ceil((ends_at - starts_at) / timedelta(minutes=1))
    reason = (reason or "").strip() if isinstance(reason, str) else ""
    return maintenance_create(name=(name or "").strip() or reason[:200], matchers=matchers, starts_at=starts_at,
                              duration_minutes=minutes or 0, reason=reason, actor=actor, rrule=rrule)


def maintenance_get(public_id) -> MaintenanceWindow:
    try:
        return MaintenanceWindow.objects.get(public_id=uuid.UUID(str(public_id)))
    except (MaintenanceWindow.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound("no such maintenance window") from exc


def maintenance_delete(*, window: MaintenanceWindow, actor) -> int:
    """Remove a window, audited: an occurrence in progress ends now, and the incidents it holds are
    released (listed as "would have paged"; their next alert pages). Returns how many were released."""
    now = timezone.now()
    with transaction.atomic():
        audit_record(actor=actor, verb="maintenance.delete", target=("maintenance_window", str(window.public_id)),
                     before={"name": window.name, "matchers": window.matchers, "rrule": window.rrule,
                             "starts_at": window.starts_at.isoformat(), "duration_minutes": window.duration_minutes})
        released = Incident.objects.filter(silence__isnull=True, silenced_reason=window_reason(window),
                                           silenced_until__gt=now).update(silenced_until=now)
        window.delete()
    return released


def maintenance_next(window: MaintenanceWindow, now: datetime | None = None) -> datetime | None:
    """The start of the window's next occurrence after `now` (None: no more)."""
    now = now or timezone.now()
    if not window.rrule:
        return window.starts_at if window.starts_at > now else None
    return rrulestr(window.rrule, dtstart=window.starts_at).after(now)


# ---------------------------------------------------------------------------------------------- matching


def silences_live(now: datetime | None = None) -> QuerySet[Silence]:
    now = now or timezone.now()
    return Silence.objects.filter(deleted_at__isnull=True, starts_at__lte=now, ends_at__gt=now)


def maintenance_live(now: datetime | None = None) -> list[tuple[MaintenanceWindow, datetime]]:
    now = now or timezone.now()
    out = []
    for w in MaintenanceWindow.objects.filter(starts_at__lte=now):
        until = occurrence_at(w, now)
        if until is not None:
            out.append((w, until))
    return out


class Holds:
    """The silences and maintenance windows live at `now`, read once (on first use) for a batch of alerts."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or timezone.now()
        self._silences: list[Silence] | None = None
        self._windows: list[tuple[MaintenanceWindow, datetime]] = []

    def for_labels(self, labels: dict) -> Hold | None:
        if self._silences is None:
            self._silences = list(silences_live(self.now).order_by("-ends_at"))
            self._windows = maintenance_live(self.now)
        for s in self._silences:
            if labels_match(s.matchers, labels):
                return Hold(reason=s.reason, until=s.ends_at, silence=s)
        for w, until in self._windows:
            if labels_match(w.matchers, labels):
                return Hold(reason=window_reason(w), until=until)
        return None


def hold_for(labels: dict, now: datetime | None = None) -> Hold | None:
    """The silence or maintenance window that holds a page for an alert with these labels now."""
    return Holds(now).for_labels(labels)


def would_have_paged(now: datetime | None = None) -> QuerySet[Incident]:
    """Incidents a silence kept quiet whose silence has ended: the pages nobody got."""
    now = now or timezone.now()
    return (Incident.objects.filter(silenced_until__isnull=False)
            .filter(Q(silenced_until__lte=now) | Q(silence__deleted_at__isnull=False))
            .select_related("environment", "silence").order_by("-opened_at"))
