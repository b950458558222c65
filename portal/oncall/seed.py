"""A demo rotation of the demo users: a primary and a secondary schedule (idempotent, never in production)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.contrib.auth import get_user_model
from django.utils import timezone

from portal.oncall import services
from portal.oncall.models import ContactMethod, NotificationRule, Schedule

ACTOR = "system:demo-seed"
ZONE = "Europe/Berlin"
# Critical: SMS and email at once, a voice call after 3 minutes unacknowledged. Warning: email.
DEMO_RULES = [("critical", "sms", 0), ("critical", "email", 0), ("critical", "voice", 3), ("warning", "email", 0)]


def _monday_nine(now: datetime) -> datetime:
    local = now.astimezone(ZoneInfo(ZONE))
    monday = (local - timedelta(days=local.weekday())).date()
    return datetime(monday.year, monday.month, monday.day, 9, tzinfo=ZoneInfo(ZONE))


def seed_demo_rotation(usernames: list[str], now: datetime | None = None) -> list[Schedule]:
    """Primary: the demo people in turn, daily at 09:00 Berlin. Secondary: the same people the other way
    round, weekly. Each person gets verified demo contact methods (email, an SMS and voice number) and rules."""
    users = list(get_user_model().objects.filter(username__in=usernames, is_active=True).order_by("username"))
    if not users:
        return []
    names = [u.username for u in users]
    start = _monday_nine(now or timezone.now())
    wanted = {
        "primary": ("Primary", [{"name": "primary", "members": names, "shift_hours": 24, "starts_at": start}]),
        "secondary": ("Secondary", [{"name": "secondary", "members": list(reversed(names)), "shift_hours": 168,
                                     "starts_at": start}]),
    }
    out = []
    for slug, (name, layers) in wanted.items():
        schedule = Schedule.objects.filter(slug=slug).first()
        out.append(schedule or services.schedule_create(slug=slug, name=name, time_zone=ZONE, layers=layers, actor=ACTOR))
    for index, user in enumerate(users):
        address = f"{user.username}@example.test"
        number = f"+1555010{index:04d}"  # 555-01xx: fictional numbers; the sandbox's Twilio stand-in takes them
        for kind, value in (("email", address), ("sms", number), ("voice", number)):
            if not ContactMethod.objects.filter(user=user, kind=kind).exists():
                services.contact_method_add(user=user, kind=kind, value=value, actor=ACTOR, verified=True)
        for severity, kind, delay in DEMO_RULES:
            if not NotificationRule.objects.filter(user=user, severity=severity, kind=kind).exists():
                services.notification_rule_add(user=user, severity=severity, kind=kind, delay_minutes=delay, actor=ACTOR)
    return out
