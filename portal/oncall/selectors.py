"""Reads: schedules as specs for the computation, and the summaries the pages, panel, API and feeds show."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Prefetch
from django.utils import timezone

from portal.errors import NotFound
from portal.oncall import schedule as compute
from portal.oncall.models import (
    ContactMethod,
    LayerMember,
    NotificationRule,
    Override,
    RotationLayer,
    Schedule,
    Severity,
)

HORIZON = timedelta(days=14)


def schedules_with_layers():
    members = Prefetch("memberships", queryset=LayerMember.objects.select_related("user").order_by("position"))
    return Schedule.objects.prefetch_related(Prefetch("layers", queryset=RotationLayer.objects.prefetch_related(members)))


def layer_spec(layer: RotationLayer) -> compute.LayerSpec:
    return compute.LayerSpec(
        members=tuple(m.user for m in layer.memberships.all()),
        starts_at=layer.starts_at, frequency=layer.frequency, interval=layer.interval, priority=layer.priority,
        name=layer.name or f"layer {layer.priority}", restrict_weekdays=tuple(layer.restrict_weekdays or ()),
        restrict_start=layer.restrict_start, restrict_end=layer.restrict_end,
    )


def schedule_spec(schedule: Schedule, start: datetime, end: datetime) -> compute.ScheduleSpec:
    """The schedule with its layers and the overrides that touch [start, end)."""
    overrides = Override.objects.filter(schedule=schedule, ends_at__gt=start, starts_at__lt=end).select_related("user")
    return compute.ScheduleSpec(
        time_zone=schedule.time_zone,
        layers=tuple(layer_spec(layer) for layer in schedule.layers.all()),
        overrides=tuple(compute.OverrideSpec(o.user, o.starts_at, o.ends_at, o.created_at, o.pk) for o in overrides),
    )


@dataclass
class ScheduleSummary:
    schedule: Schedule
    now: compute.Segment | None
    next: compute.Segment | None
    segments: list[compute.Segment]  # the next 14 days
    gaps: list[tuple[datetime, datetime]]
    start: datetime
    end: datetime

    @property
    def gap_hours(self) -> float:
        return sum((b - a).total_seconds() for a, b in self.gaps) / 3600

    def as_json(self) -> dict:
        return {
            "schedule": self.schedule.slug,
            "now": {"user": self.now.user.username, "until": self.now.end.isoformat()} if self.now else None,
            "next": {"user": self.next.user.username, "from": self.next.start.isoformat()} if self.next else None,
        }


def schedule_summary(schedule: Schedule, now: datetime | None = None) -> ScheduleSummary:
    now = now or timezone.now()
    end = now + HORIZON
    spec = schedule_spec(schedule, now, now + compute.LOOKAHEAD)
    return ScheduleSummary(
        schedule=schedule, now=compute.who_is_on_call(spec, now), next=compute.next_shift(spec, now),
        segments=compute.final_schedule(spec, now, end), gaps=compute.coverage_gaps(spec, now, end), start=now, end=end,
    )


def oncall_summaries(now: datetime | None = None) -> list[ScheduleSummary]:
    now = now or timezone.now()
    return [schedule_summary(s, now) for s in schedules_with_layers()]


def schedule_json(schedule: Schedule) -> dict:
    return {
        "slug": schedule.slug, "name": schedule.name, "time_zone": schedule.time_zone,
        "layers": [{
            "name": layer.name, "members": [m.user.username for m in layer.memberships.all()],
            "shift_hours": layer.shift_hours, "frequency": layer.frequency, "interval": layer.interval,
            "starts_at": layer.starts_at.isoformat(),
            "restrictions": {"weekdays": list(layer.restrict_weekdays or []),
                             "start": layer.restrict_start.isoformat(timespec="minutes") if layer.restrict_start else None,
                             "end": layer.restrict_end.isoformat(timespec="minutes") if layer.restrict_end else None},
        } for layer in schedule.layers.all()],
    }


def user_shifts(user, start: datetime, end: datetime) -> list[tuple[Schedule, compute.Segment]]:
    """A person's stints in every schedule over [start, end) (for the personal feed)."""
    out = []
    for schedule in schedules_with_layers():
        spec = schedule_spec(schedule, start, end)
        out.extend((schedule, seg) for seg in compute.user_shifts(spec, user, start, end))
    return sorted(out, key=lambda pair: pair[1].start)


def find_schedule(slug: str) -> Schedule:
    schedule = schedules_with_layers().filter(slug=slug).first()
    if schedule is None:
        raise NotFound(f"no schedule {slug!r}")
    return schedule


# ------------------------------------------------------------------------------------------------
# Paging: who to page and how


def on_call_user(schedule: Schedule, at: datetime):
    """The person on call on `schedule` at `at` (overrides included), or None. Read fresh each time:
    a page resolves its person when it is sent, so an override made since moves it."""
    schedule = schedules_with_layers().get(pk=schedule.pk)
    segment = compute.who_is_on_call(schedule_spec(schedule, at, at + compute.LOOKAHEAD), at)
    return segment.user if segment else None


STINT_LOOKBACK = timedelta(days=2)


def current_stint(schedule: Schedule, at: datetime) -> compute.Segment | None:
    """The unbroken stint of whoever is on call at `at`, with its real start (looking back two days at most)."""
    start = at - STINT_LOOKBACK
    spec = schedule_spec(schedule, start, at + timedelta(minutes=1))
    for stint in compute.merge_segments(compute.final_schedule(spec, start, at + timedelta(minutes=1)), by_source=False):
        if stint.start <= at < stint.end:
            return stint
    return None


def rule_severity(incident_severity: str) -> str:
    """People keep rules for critical and warning pages; anything else pages by the warning rules."""
    return Severity.CRITICAL if incident_severity == Severity.CRITICAL else Severity.WARNING


def paging_rules(user, severity: str) -> list[tuple[str, int]]:
    """(contact kind, delay minutes) of a person's rules for a severity, soonest first."""
    return list(NotificationRule.objects.filter(user=user, severity=rule_severity(severity))
                .order_by("delay_minutes", "kind").values_list("kind", "delay_minutes"))


def verified_method(user, kind: str) -> ContactMethod | None:
    """The method a page of `kind` goes to: the person's oldest verified one (never an unverified one)."""
    return (ContactMethod.objects.filter(user=user, kind=kind, verified_at__isnull=False)
            .order_by("verified_at", "pk").first())

