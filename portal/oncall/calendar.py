"""iCalendar feeds of computed shifts (one event per stint), built with the icalendar library."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from icalendar import Calendar, Event

from portal.oncall import schedule as compute
from portal.oncall import selectors
from portal.oncall.models import Schedule

PAST = timedelta(days=7)
AHEAD = timedelta(days=60)


def window(now: datetime | None = None) -> tuple[datetime, datetime]:
    now = (now or timezone.now()).replace(minute=0, second=0, microsecond=0)
    return now - PAST, now + AHEAD


def _calendar(name: str) -> Calendar:
    cal = Calendar()
    cal.add("prodid", "-//FairTradeWorker//Ops Portal on call//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", name)
    return cal


def _event(schedule: Schedule, seg: compute.Segment) -> Event:
    event = Event()
    # Stable per stint, so a calendar app updates rather than duplicates an event on each refresh.
    event.add("uid", f"{schedule.slug}-{seg.user.username}-{seg.start:%Y%m%dT%H%M%SZ}@{settings.PORTAL_ENV}.ftw-ops")
    event.add("summary", f"On call: {seg.user.username} ({schedule.name})")
    event.add("dtstart", seg.start)
    event.add("dtend", seg.end)
    event.add("dtstamp", timezone.now())
    event.add("description", f"{schedule.name}: {seg.user.username} is on call ({seg.source}).")
    return event


def schedule_calendar(schedule: Schedule, now: datetime | None = None) -> bytes:
    start, end = window(now)
    spec = selectors.schedule_spec(schedule, start, end)
    cal = _calendar(f"On call: {schedule.name}")
    for seg in compute.merge_segments(compute.final_schedule(spec, start, end), by_source=False):
        cal.add_component(_event(schedule, seg))
    return cal.to_ical()


def personal_calendar(user, now: datetime | None = None) -> bytes:
    start, end = window(now)
    cal = _calendar(f"On call: {user.username}")
    for schedule, seg in selectors.user_shifts(user, start, end):
        cal.add_component(_event(schedule, seg))
    return cal.to_ical()
