"""Growth phases (seeded from plan.yaml), the phase the platform is in, and user-count samples."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class GrowthPhase(models.Model):
    """One of the plan's phases. Users in [users_min, users_max); the last phase's top edge is inclusive."""

    number = models.PositiveSmallIntegerField(unique=True)
    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    users_min = models.PositiveIntegerField()
    users_max = models.PositiveIntegerField()
    months = models.CharField(max_length=20, blank=True, help_text='As the plan says it, e.g. "1-3"')
    month_start = models.PositiveSmallIntegerField(default=1)
    month_end = models.PositiveSmallIntegerField(default=1)
    instances_min = models.PositiveSmallIntegerField()
    instances_max = models.PositiveSmallIntegerField()
    monthly_cost = models.DecimalField(max_digits=12, decimal_places=2)
    infrastructure = models.CharField(max_length=300, blank=True)
    seeded_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.CheckConstraint(condition=Q(users_max__gt=F("users_min")), name="phase_users_range_valid"),
            models.CheckConstraint(condition=Q(instances_max__gte=F("instances_min")), name="phase_instances_range_valid"),
            models.CheckConstraint(condition=Q(month_end__gte=F("month_start")), name="phase_month_range_valid"),
        ]

    def __str__(self) -> str:
        return f"Phase {self.number}: {self.name}"

    def contains(self, users: int) -> bool:
        return self.users_min <= users < self.users_max


class PhaseFocusItem(models.Model):
    """A phase's focus (e.g. "Enable auto-scaling") as a small checklist of its own."""

    phase = models.ForeignKey(GrowthPhase, on_delete=models.CASCADE, related_name="focus_items")
    position = models.PositiveSmallIntegerField()
    text = models.CharField(max_length=200)
    done = models.BooleanField(default=False)
    done_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    done_at = models.DateTimeField(null=True, blank=True)
    seeded_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["phase__number", "position"]
        constraints = [
            models.UniqueConstraint(fields=["phase", "position"], name="phase_focus_position_uniq"),
            models.CheckConstraint(condition=Q(done=False) | Q(done_at__isnull=False), name="phase_focus_done_has_time"),
        ]

    def __str__(self) -> str:
        return self.text


class PhaseState(models.Model):
    """The phase the platform is in, as a lead set it (one row, key "platform")."""

    key = models.CharField(max_length=30, unique=True, default="platform")
    phase = models.ForeignKey(GrowthPhase, on_delete=models.PROTECT, related_name="+")
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    set_by_label = models.CharField(max_length=150, blank=True)
    set_at = models.DateTimeField()
    reason = models.CharField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"{self.key}: {self.phase}"


class UserCountSample(models.Model):
    """How many users the platform has, from its metrics or entered by a lead."""

    class Source(models.TextChoices):
        CLOUDWATCH = "cloudwatch", "CloudWatch"
        PROMETHEUS = "prometheus", "Prometheus"
        MANUAL = "manual", "Entered by a lead"

    at = models.DateTimeField()
    users = models.PositiveIntegerField()
    source = models.CharField(max_length=12, choices=Source.choices)
    environment = models.ForeignKey("cloud.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    entered_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [
            # latest_users() and the users-over-time chart: newest samples first
            models.Index(fields=["-at"], name="usersample_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.users} users at {self.at:%Y-%m-%d %H:%M} ({self.source})"


class CapacitySample(models.Model):
    """Live instances per colour and load, sampled with the user count (the instances chart and capacity view)."""

    at = models.DateTimeField()
    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="+")
    blue_in_service = models.PositiveIntegerField(null=True, blank=True)
    green_in_service = models.PositiveIntegerField(null=True, blank=True)
    requests_per_second = models.FloatField(null=True, blank=True)
    cpu_percent = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [
            # the instances chart: an environment's recent samples
            models.Index(fields=["environment", "-at"], name="capsample_env_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.environment_id} at {self.at:%Y-%m-%d %H:%M}: blue {self.blue_in_service}, green {self.green_in_service}"


class CostSnapshot(models.Model):
    """Cost Explorer's month-to-date answer, one row per environment and month (kept up to date)."""

    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="+")
    month = models.DateField(help_text="First day of the month")
    total = models.DecimalField(max_digits=14, decimal_places=2)
    forecast = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    by_service = models.JSONField(default=dict)
    currency = models.CharField(max_length=8, default="USD")
    taken_at = models.DateTimeField()

    class Meta:
        ordering = ["month"]
        constraints = [models.UniqueConstraint(fields=["environment", "month"], name="costsnapshot_env_month_uniq")]

    def __str__(self) -> str:
        return f"{self.month:%Y-%m}: {self.total} {self.currency}"


class PhaseSettings(models.Model):
    """How the platform reads its phases' numbers, as a lead chose (one row, key "platform").

    The plan says "2-4 instances" for phase 1 without saying of what: each colour (blue and green
    each take the range) or the platform (both colours together). deployments.bounds reads it."""

    class RangeScope(models.TextChoices):
        PER_COLOUR = "per_colour", "Per colour (blue and green each)"
        PLATFORM = "platform", "The whole platform (blue and green together)"

    key = models.CharField(max_length=30, unique=True, default="platform")
    instance_range_scope = models.CharField(max_length=12, choices=RangeScope.choices, default=RangeScope.PER_COLOUR)
    set_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    set_by_label = models.CharField(max_length=150, blank=True)
    set_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.key}: instance ranges {self.instance_range_scope}"
