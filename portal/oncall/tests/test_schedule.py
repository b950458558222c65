"""The computed schedule against hand-checked expectations (no database).

March 2027 in Europe/Berlin: 1 March is a Monday; clocks go from 02:00 CET to 03:00 CEST on Sunday
28 March, so 09:00 Berlin is 08:00 UTC before and 07:00 UTC after.
Layer "primary" (lower): daily at 09:00 Berlin, alice, bob, carol, from Monday 1 March.
Layer "office" (higher): weekly at 09:00 Berlin on Mondays, dave, erin, restricted Mon-Fri 09:00-18:00.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from portal.oncall.schedule import (
    DAILY,
    HOURS,
    OVERRIDE,
    WEEKLY,
    LayerSpec,
    OverrideSpec,
    ScheduleSpec,
    Segment,
    coverage_gaps,
    final_schedule,
    layer_shifts,
    next_shift,
    who_is_on_call,
)

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


PRIMARY = LayerSpec(members=["alice", "bob", "carol"], starts_at=datetime(2027, 3, 1, 9, tzinfo=BERLIN),
                    frequency=DAILY, priority=0, name="primary")
OFFICE = LayerSpec(members=["dave", "erin"], starts_at=datetime(2027, 3, 1, 9, tzinfo=BERLIN), frequency=WEEKLY,
                   priority=1, name="office", restrict_weekdays=(0, 1, 2, 3, 4), restrict_start=time(9), restrict_end=time(18))
CREATED = utc(2027, 2, 1)
OVERRIDES = (
    OverrideSpec("heidi", utc(2027, 3, 10, 15), utc(2027, 3, 10, 22), created_at=CREATED, ident=1),
    OverrideSpec("frank", utc(2027, 3, 10, 12), utc(2027, 3, 10, 20), created_at=CREATED + timedelta(hours=1), ident=2),
    OverrideSpec("grace", utc(2027, 3, 10, 14), utc(2027, 3, 10, 16), created_at=CREATED + timedelta(hours=2), ident=3),
)
SPEC = ScheduleSpec(time_zone="Europe/Berlin", layers=(PRIMARY, OFFICE), overrides=OVERRIDES)


def test_daily_handoff_keeps_its_wall_clock_time_across_the_dst_change():
    shifts = layer_shifts(PRIMARY, BERLIN, utc(2027, 3, 27), utc(2027, 3, 30))
    assert [(s.start, s.end, s.user) for s in shifts] == [
        (utc(2027, 3, 27), utc(2027, 3, 27, 8), "bob"),  # 26 March (day 25): bob
        (utc(2027, 3, 27, 8), utc(2027, 3, 28, 7), "carol"),  # 23 hours: the night the clocks go forward
        (utc(2027, 3, 28, 7), utc(2027, 3, 29, 7), "alice"),
        (utc(2027, 3, 29, 7), utc(2027, 3, 30, 0), "bob"),
    ]


def test_a_day_with_both_layers_and_overlapping_overrides_newest_wins():
    day = final_schedule(SPEC, utc(2027, 3, 10), utc(2027, 3, 11))
    assert [(s.start.hour, s.end.hour or 24, s.user, s.source) for s in day] == [
        (0, 8, "carol", "primary"),  # 9 March (day 8) 09:00 CET until 10 March 09:00 CET
        (8, 12, "erin", "office"),  # week 2 (8-14 March) is erin's, 09:00-18:00 CET = 08:00-17:00 UTC
        (12, 14, "frank", OVERRIDE),
        (14, 16, "grace", OVERRIDE),  # newest override
        (16, 20, "frank", OVERRIDE),  # frank's is newer than heidi's
        (20, 22, "heidi", OVERRIDE),
        (22, 24, "alice", "primary"),  # 10 March (day 9) from 08:00 UTC
    ]


def test_restricted_layer_after_the_dst_change_uses_summer_time():
    assert who_is_on_call(SPEC, utc(2027, 3, 30, 7, 30)).user == "dave"  # Tue 09:30 CEST, week 5: dave
    assert who_is_on_call(SPEC, utc(2027, 3, 30, 6, 30)).user == "bob"  # 08:30 CEST: still 29 March's primary shift (day 28)
    assert who_is_on_call(SPEC, utc(2027, 3, 26, 16, 30)).user == "erin"  # Fri 17:30 CET, week 4
    assert who_is_on_call(SPEC, utc(2027, 3, 26, 17, 30)).user == "bob"  # Fri 18:30 CET: primary (day 25)
    office = who_is_on_call(SPEC, utc(2027, 3, 30, 7, 30))
    assert office.end == utc(2027, 3, 30, 16)  # 18:00 CEST


def test_the_whole_month():
    month = final_schedule(SPEC, utc(2027, 3, 1), utc(2027, 4, 1))
    # Covered from the first handoff (1 March 09:00 CET = 08:00 UTC) to the end of the month.
    assert month[0].start == utc(2027, 3, 1, 8)
    assert coverage_gaps(SPEC, utc(2027, 3, 1), utc(2027, 4, 1)) == [(utc(2027, 3, 1), utc(2027, 3, 1, 8))]
    for a, b in zip(month, month[1:], strict=False):
        assert a.end == b.start and (a.user, a.source) != (b.user, b.source)
    hours = {}
    for seg in month:
        hours[seg.user] = hours.get(seg.user, 0) + seg.hours
    # 31 days of elapsed (UTC) time minus the 8 uncovered hours: the skipped wall-clock hour is no real hour.
    assert sum(hours.values()) == 744 - 8
    # Office hours: 23 weekdays x 9 h; 10 March loses 12:00-17:00 UTC (5 h) to the overrides.
    assert hours["dave"] + hours["erin"] == 23 * 9 - 5
    # Weeks 1, 3 and 5 are dave's: 1-5, 15-19 and 29-31 March, 5 + 5 + 3 weekdays.
    assert hours["dave"] == 13 * 9
    assert hours["frank"] == 6 and hours["grace"] == 2 and hours["heidi"] == 2


def test_next_shift_and_gaps():
    nxt = next_shift(SPEC, utc(2027, 3, 10, 13))  # frank is on; grace is next at 14:00
    assert nxt == Segment(utc(2027, 3, 10, 14), utc(2027, 3, 10, 16), "grace", OVERRIDE)
    before = next_shift(SPEC, utc(2027, 3, 1))  # nobody yet: the first shift is next (office hours, the top layer)
    assert before == Segment(utc(2027, 3, 1, 8), utc(2027, 3, 1, 17), "dave", "office")
    assert next_shift(SPEC, utc(2027, 3, 1, 9)).user == "alice"  # after office hours, the primary
    assert who_is_on_call(SPEC, utc(2027, 3, 1)) is None


def test_window_crossing_midnight_and_hourly_rotation():
    night = LayerSpec(members=["nina", "otto"], starts_at=utc(2027, 1, 4), frequency=HOURS, interval=12,
                      restrict_start=time(22), restrict_end=time(6))
    spec = ScheduleSpec(time_zone="UTC", layers=(night,))
    segs = final_schedule(spec, utc(2027, 1, 4), utc(2027, 1, 6))
    assert [(s.start, s.end, s.user) for s in segs] == [
        (utc(2027, 1, 4), utc(2027, 1, 4, 6), "nina"),  # the window of 3 January reaches into the 4th
        (utc(2027, 1, 4, 22), utc(2027, 1, 5), "otto"),  # 12:00-24:00 is otto's, clipped to 22-24
        (utc(2027, 1, 5), utc(2027, 1, 5, 6), "nina"),
        (utc(2027, 1, 5, 22), utc(2027, 1, 6), "otto"),
    ]
    assert coverage_gaps(spec, utc(2027, 1, 4), utc(2027, 1, 5)) == [(utc(2027, 1, 4, 6), utc(2027, 1, 4, 22))]


def test_november_fall_back_makes_a_25_hour_daily_shift():
    ny = ZoneInfo("America/New_York")
    layer = LayerSpec(members=["a", "b"], starts_at=datetime(2027, 11, 1, 9, tzinfo=ny), frequency=DAILY)
    shifts = layer_shifts(layer, ny, utc(2027, 11, 6, 13), utc(2027, 11, 8, 14))
    # 6 Nov 09:00 EDT = 13:00 UTC; 7 Nov 09:00 EST = 14:00 UTC (clocks fall back at 02:00 on the 7th).
    assert [(s.start, s.end, s.user) for s in shifts] == [
        (utc(2027, 11, 6, 13), utc(2027, 11, 7, 14), "b"),
        (utc(2027, 11, 7, 14), utc(2027, 11, 8, 14), "a"),
    ]
