"""The final schedule, computed: overrides above higher layers above lower layers. Pure functions.

Shifts recur through dateutil's rrule. Daily and weekly rotations recur on the wall clock of the
schedule's zone (a 09:00 handoff stays 09:00 across a daylight-saving change, so that shift is 23 or
25 hours long); hourly rotations recur in elapsed time (UTC). Restrictions (weekdays and a daily
window, which may cross midnight) are read in the schedule's zone and clip the shifts.

Everything here works on plain specs (`ScheduleSpec`), not on models: `portal.oncall.selectors`
builds them from the database. Users are opaque values (a User, or a name in tests).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil import rrule

HOURS, DAILY, WEEKLY = "hours", "daily", "weekly"
OVERRIDE = "override"
LOOKAHEAD = timedelta(days=35)  # how far who_is_on_call / next_shift look for the end of a stint


@dataclass(frozen=True)
class LayerSpec:
    members: Sequence[Hashable]
    starts_at: datetime
    frequency: str = WEEKLY
    interval: int = 1
    priority: int = 0
    name: str = ""
    restrict_weekdays: Sequence[int] = ()  # 0 = Monday; empty: every day
    restrict_start: time | None = None
    restrict_end: time | None = None

    @property
    def source(self) -> str:
        return self.name or f"layer {self.priority}"


@dataclass(frozen=True)
class OverrideSpec:
    user: Hashable
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    ident: Hashable = None


@dataclass(frozen=True)
class ScheduleSpec:
    time_zone: str = "UTC"
    layers: Sequence[LayerSpec] = ()
    overrides: Sequence[OverrideSpec] = field(default_factory=tuple)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)


@dataclass(frozen=True)
class Segment:
    start: datetime
    end: datetime
    user: Hashable
    source: str  # "override" or the layer's name

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600


def _aware(local_naive: datetime, zone: ZoneInfo) -> datetime:
    # A wall-clock time skipped by a spring-forward change resolves to the instant after the gap.
    return local_naive.replace(tzinfo=zone).astimezone(UTC)


def _check_window(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("schedule windows are timezone-aware datetimes")


# ------------------------------------------------------------------------------------------------
# One layer


def layer_shifts(layer: LayerSpec, zone: ZoneInfo, start: datetime, end: datetime) -> list[Segment]:
    """The layer's shifts overlapping [start, end), clipped to the window, before restrictions."""
    _check_window(start, end)
    if not layer.members or layer.interval < 1 or end <= start:
        return []
    n = len(layer.members)
    if layer.frequency == HOURS:
        origin = layer.starts_at.astimezone(UTC)
        period = timedelta(hours=layer.interval)
        freq = rrule.HOURLY
        here = start.astimezone(UTC)
        to_naive = lambda d: d  # noqa: E731 - UTC-aware throughout
        to_utc = lambda d: d  # noqa: E731
    else:
        origin = layer.starts_at.astimezone(zone).replace(tzinfo=None)
        period = timedelta(days=layer.interval * (7 if layer.frequency == WEEKLY else 1))
        freq = rrule.WEEKLY if layer.frequency == WEEKLY else rrule.DAILY
        here = start.astimezone(zone).replace(tzinfo=None)
        to_naive = lambda d: d.astimezone(zone).replace(tzinfo=None)  # noqa: E731
        to_utc = lambda d: _aware(d, zone)  # noqa: E731
    # Skip whole periods up to the window (on the wall clock, so the count is exact), then let the
    # rrule produce the handoffs from there.
    skipped = max(0, (here - origin) // period - 1)
    first = origin + skipped * period
    rule = rrule.rrule(freq, interval=layer.interval, dtstart=first)
    limit = to_naive(end)
    segments: list[Segment] = []
    prev: datetime | None = None
    index = skipped - 1
    for occurrence in rule:
        if prev is not None:
            s, e = to_utc(prev), to_utc(occurrence)
            if e > start and s < end:
                segments.append(Segment(max(s, start), min(e, end), layer.members[index % n], layer.source))
        if occurrence >= limit:
            break
        prev = occurrence
        index += 1
    return restrict(segments, layer, zone)


def _windows(layer: LayerSpec, zone: ZoneInfo, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The layer's allowed windows overlapping [start, end) (one per allowed local day)."""
    from_time = layer.restrict_start or time(0)
    to_time = layer.restrict_end or time(0)
    days = set(layer.restrict_weekdays) or set(range(7))
    day: date = start.astimezone(zone).date() - timedelta(days=1)
    last: date = end.astimezone(zone).date()
    windows = []
    while day <= last:
        if day.weekday() in days:
            ws = _aware(datetime.combine(day, from_time), zone)
            end_day = day if to_time > from_time else day + timedelta(days=1)  # crosses midnight (or whole day)
            we = _aware(datetime.combine(end_day, to_time), zone)
            if we > start and ws < end:
                windows.append((ws, we))
        day += timedelta(days=1)
    return windows


def restrict(segments: list[Segment], layer: LayerSpec, zone: ZoneInfo) -> list[Segment]:
    """Clip the shifts to the layer's weekdays and daily window; unrestricted layers pass through."""
    if not layer.restrict_weekdays and layer.restrict_start is None:
        return segments
    out = []
    for seg in segments:
        for ws, we in _windows(layer, zone, seg.start, seg.end):
            s, e = max(seg.start, ws), min(seg.end, we)
            if e > s:
                out.append(Segment(s, e, seg.user, seg.source))
    return out


# ------------------------------------------------------------------------------------------------
# The final schedule


def final_schedule(spec: ScheduleSpec, start: datetime, end: datetime, *, merge: bool = True) -> list[Segment]:
    """Who is on call across [start, end): (start, end, user, source) segments in time order.
    Where nobody is, there is no segment (see `coverage_gaps`)."""
    _check_window(start, end)
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    zone = spec.zone
    # Highest precedence first: overrides newest first, then layers from the top.
    candidates: list[list[Segment]] = []
    overrides = sorted(spec.overrides, key=lambda o: (o.created_at, str(o.ident)), reverse=True)
    for o in overrides:
        s, e = max(o.starts_at.astimezone(UTC), start), min(o.ends_at.astimezone(UTC), end)
        candidates.append([Segment(s, e, o.user, OVERRIDE)] if e > s else [])
    for layer in sorted(spec.layers, key=lambda la: la.priority, reverse=True):
        candidates.append(layer_shifts(layer, zone, start, end))
    cuts = {start, end}
    for group in candidates:
        for seg in group:
            cuts.update((seg.start, seg.end))
    points = sorted(c for c in cuts if start <= c <= end)
    out: list[Segment] = []
    for a, b in zip(points, points[1:], strict=False):
        winner = next((seg for group in candidates for seg in group if seg.start <= a and seg.end >= b), None)
        if winner is None:
            continue
        out.append(Segment(a, b, winner.user, winner.source))
    return merge_segments(out, by_source=True) if merge else out


def merge_segments(segments: list[Segment], *, by_source: bool) -> list[Segment]:
    """Join touching segments of the same person (and the same source, when `by_source`)."""
    merged: list[Segment] = []
    for seg in segments:
        last = merged[-1] if merged else None
        if last and last.end == seg.start and last.user == seg.user and (not by_source or last.source == seg.source):
            merged[-1] = Segment(last.start, seg.end, last.user, last.source if by_source or last.source == seg.source else "mixed")
        else:
            merged.append(seg)
    return merged


def who_is_on_call(spec: ScheduleSpec, at: datetime) -> Segment | None:
    """The person on call at `at`, with `end` the end of their unbroken stint (looking ahead 35 days)."""
    stints = merge_segments(final_schedule(spec, at, at + LOOKAHEAD), by_source=False)
    if stints and stints[0].start == at.astimezone(UTC):
        return stints[0]
    return None


def next_shift(spec: ScheduleSpec, at: datetime) -> Segment | None:
    """The next stint after the current one (or the first one, when nobody is on call at `at`)."""
    stints = merge_segments(final_schedule(spec, at, at + LOOKAHEAD), by_source=False)
    if stints and stints[0].start == at.astimezone(UTC):
        stints = stints[1:]
    return stints[0] if stints else None


def coverage_gaps(spec: ScheduleSpec, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The ranges in [start, end) where nobody is on call."""
    gaps = []
    cursor = start.astimezone(UTC)
    for seg in final_schedule(spec, start, end):
        if seg.start > cursor:
            gaps.append((cursor, seg.start))
        cursor = max(cursor, seg.end)
    if cursor < end.astimezone(UTC):
        gaps.append((cursor, end.astimezone(UTC)))
    return gaps


def user_shifts(spec: ScheduleSpec, user: Hashable, start: datetime, end: datetime) -> list[Segment]:
    """One person's stints in [start, end) (for their calendar feed)."""
    return [s for s in merge_segments(final_schedule(spec, start, end), by_source=False) if s.user == user]
