"""Who is on call: schedules of rotation layers and overrides, and each person's contact methods and rules.

The final schedule is computed (portal.oncall.schedule), never stored: layers and overrides are the facts.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import F, Q


def hash_secret(raw: str) -> str:
    """Feed tokens are stored as their SHA-256 only (like API tokens)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def new_feed_token() -> str:
    return "ftwcal_" + secrets.token_urlsafe(24)


class Schedule(models.Model):
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    time_zone = models.CharField(max_length=64, default="UTC", help_text="IANA zone the rotations and restrictions are read in")
    ical_token_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the calendar feed's token; empty: no feed")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            # /oncall/me.ics is the personal feed: no schedule may take the slug "me".
            models.CheckConstraint(condition=~Q(slug="me"), name="oncall_schedule_slug_not_me"),
        ]

    def __str__(self) -> str:
        return self.name or self.slug


class ShiftFrequency(models.TextChoices):
    HOURS = "hours", "Every N hours"
    DAILY = "daily", "Every N days at the handoff time"
    WEEKLY = "weekly", "Every N weeks at the handoff time"


class RotationLayer(models.Model):
    """Members take turns, in order, one shift each. Shifts start at `starts_at` and recur by `frequency`
    and `interval` (an rrule in the schedule's zone: daily and weekly handoffs keep their wall-clock
    time across daylight-saving changes; hourly shifts are elapsed hours). Optional restrictions
    clip the shifts to weekdays and a daily time window (the window may cross midnight)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="layers")
    name = models.CharField(max_length=100, blank=True)
    priority = models.PositiveSmallIntegerField(help_text="Higher layers cover lower ones where both have someone")
    frequency = models.CharField(max_length=10, choices=ShiftFrequency.choices, default=ShiftFrequency.WEEKLY)
    interval = models.PositiveSmallIntegerField(default=1, help_text="Hours, days or weeks per shift")
    starts_at = models.DateTimeField(help_text="The first handoff; its wall-clock time in the schedule's zone is the handoff time")
    restrict_weekdays = models.JSONField(default=list, blank=True, help_text="0=Monday..6=Sunday; empty: every day")
    restrict_start = models.TimeField(null=True, blank=True)
    restrict_end = models.TimeField(null=True, blank=True, help_text="Before or equal to the start: the window crosses midnight")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="LayerMember", related_name="+")

    class Meta:
        ordering = ["schedule", "priority"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "priority"], name="oncall_layer_priority_uniq"),
            models.CheckConstraint(condition=Q(interval__gte=1), name="oncall_layer_interval_positive"),
            # A time window is both ends or neither.
            models.CheckConstraint(
                condition=Q(restrict_start__isnull=True, restrict_end__isnull=True)
                | Q(restrict_start__isnull=False, restrict_end__isnull=False),
                name="oncall_layer_window_both_ends",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.schedule.slug} layer {self.priority}"

    @property
    def shift_hours(self) -> int:
        per = {ShiftFrequency.HOURS: 1, ShiftFrequency.DAILY: 24, ShiftFrequency.WEEKLY: 168}[self.frequency]
        return per * self.interval

    @property
    def shift_length(self) -> timedelta:
        return timedelta(hours=self.shift_hours)


class LayerMember(models.Model):
    layer = models.ForeignKey(RotationLayer, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oncall_memberships")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["layer", "position"]
        constraints = [
            models.UniqueConstraint(fields=["layer", "position"], name="oncall_member_position_uniq"),
            models.UniqueConstraint(fields=["layer", "user"], name="oncall_member_once_per_layer"),
        ]

    def __str__(self) -> str:
        return f"{self.user} #{self.position}"


class Override(models.Model):
    """Someone covers a time range. Overrides may overlap: where they do, the newest (created_at) wins."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="overrides")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oncall_overrides")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by_label = models.CharField(max_length=150, blank=True, help_text="Who made it (a token's or command's name too)")
    created_at = models.DateTimeField(auto_now_add=True)
    reason = models.CharField(max_length=200, blank=True)
    dedup_key = models.CharField(max_length=120, blank=True, help_text='"take the pager" clicks: one override per person, length and minute')

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="oncall_override_ends_after_start"),
            # A second identical "take the pager" within the same minute finds the first (IntegrityError fallback).
            models.UniqueConstraint(fields=["schedule", "dedup_key"], condition=~Q(dedup_key=""), name="oncall_override_dedup_uniq"),
        ]
        indexes = [
            # The schedule computation loads a window's overrides: schedule=X AND ends_at > start AND starts_at < end.
            models.Index(fields=["schedule", "ends_at"], name="oncall_override_window_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.user} on {self.schedule.slug} {self.starts_at:%Y-%m-%d %H:%M}–{self.ends_at:%H:%M}"


class ContactKind(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    VOICE = "voice", "Voice call"
    SLACK = "slack", "Slack"


class ContactMethod(models.Model):
    """Where a person can be paged. Only verified methods are paged (a test page may use any of one's own)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="contact_methods")
    kind = models.CharField(max_length=10, choices=ContactKind.choices)
    value = models.CharField(max_length=254, help_text="E.164 number (sms, voice), email address, or Slack user id U…/W…")
    verified_at = models.DateTimeField(null=True, blank=True)
    code_hash = models.CharField(max_length=64, blank=True, help_text="HMAC of the pending verification code")
    code_expires_at = models.DateTimeField(null=True, blank=True)
    code_attempts = models.PositiveSmallIntegerField(default=0)
    code_sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["user", "kind", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["user", "kind", "value"], name="oncall_contact_method_uniq"),
            # A pending code always has an expiry.
            models.CheckConstraint(condition=Q(code_hash="") | Q(code_expires_at__isnull=False), name="oncall_contact_code_expires"),
        ]
        indexes = [
            # Paging reads a person's verified methods of one kind: user=X AND kind=K AND verified_at IS NOT NULL.
            models.Index(fields=["user", "kind"], condition=Q(verified_at__isnull=False), name="oncall_contact_verified_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.value}"

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"


class NotificationRule(models.Model):
    """"SMS at once, voice after 3 minutes unacknowledged": one row per step, per severity."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_rules")
    severity = models.CharField(max_length=10, choices=Severity.choices)
    kind = models.CharField(max_length=10, choices=ContactKind.choices)
    delay_minutes = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["user", "severity", "delay_minutes", "kind"]
        constraints = [
            models.UniqueConstraint(fields=["user", "severity", "kind", "delay_minutes"], name="oncall_rule_uniq"),
            models.CheckConstraint(condition=Q(delay_minutes__lte=1440), name="oncall_rule_delay_at_most_a_day"),
        ]

    def __str__(self) -> str:
        return f"{self.severity}: {self.kind} after {self.delay_minutes} min"


class TestResult(models.TextChoices):
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class TestPage(models.Model):
    """A "send me a test page": what was sent where and what the transport answered."""

    __test__ = False  # not a pytest class

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oncall_test_pages")
    method = models.ForeignKey(ContactMethod, null=True, on_delete=models.SET_NULL, related_name="test_pages")
    kind = models.CharField(max_length=10, choices=ContactKind.choices)
    value = models.CharField(max_length=254)
    sent_at = models.DateTimeField()
    result = models.CharField(max_length=10, choices=TestResult.choices)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-sent_at"]
        indexes = [
            # /oncall/me/ lists a person's latest tests: user=X ORDER BY sent_at DESC.
            models.Index(fields=["user", "-sent_at"], name="oncall_testpage_user_idx"),
        ]

    def __str__(self) -> str:
        return f"test page to {self.kind} {self.value}: {self.result}"


class OncallProfile(models.Model):
    """Per-person on-call settings: the personal calendar feed's token (hashed)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oncall_profile")
    ical_token_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        constraints = [
            # The feed finds its person by token hash.
            models.UniqueConstraint(fields=["ical_token_hash"], condition=~Q(ical_token_hash=""), name="oncall_profile_token_uniq"),
        ]

    def __str__(self) -> str:
        return f"on-call profile of {self.user}"
