"""Checks of the platform and its dependencies, their results, hourly rollups, threshold rules and SLOs."""

from __future__ import annotations

import json

from django.db import models
from django.db.models import Q
from django.urls import reverse

from portal.cloud.fields import EncryptedTextField
from portal.cloud.models import Environment


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"


class Comparison(models.TextChoices):
    GT = "gt", ">"
    GTE = "gte", "≥"
    LT = "lt", "<"
    LTE = "lte", "≤"


def compare(value: float, comparison: str, limit: float) -> bool:
    """True when `value comparison limit` holds (i.e. the rule is breached for thresholds)."""
    return {
        "gt": value > limit,
        "gte": value >= limit,
        "lt": value < limit,
        "lte": value <= limit,
    }[comparison]


class ThresholdRule(models.Model):
    """One of the plan's critical/warning rules, editable by an operator (value, window, severity)."""

    slug = models.SlugField(max_length=80, unique=True)
    metric = models.CharField(
        max_length=40,
        help_text="error_rate, p95_response_time, cpu, db_connections, cache_hit_ratio, disk, requests, users",
    )
    comparison = models.CharField(max_length=3, choices=Comparison.choices)
    value = models.FloatField()
    unit = models.CharField(max_length=10, blank=True)
    window_minutes = models.PositiveIntegerField(default=5)
    # Minimum evidence for a share of requests (error rate, cache hit ratio): below this many requests
    # in the window the percentage is noise (two errors in twenty requests is 10 %) and breaches nothing.
    # 0 for levels of a capacity (CPU, disk, connections), where one reading over the window is the evidence.
    min_requests = models.PositiveIntegerField(default=0)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    summary = models.CharField(max_length=200, blank=True)
    enabled = models.BooleanField(default=True)
    seeded_hash = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["severity", "metric", "slug"]
        constraints = [
            models.CheckConstraint(condition=Q(window_minutes__gte=1), name="threshold_window_positive"),
            # portal.health.thresholds.threshold(metric, severity) reads one value per pair.
            models.UniqueConstraint(fields=["metric", "severity"], name="threshold_one_per_metric_severity"),
        ]

    def __str__(self) -> str:
        return self.summary or f"{self.metric} {self.get_comparison_display()} {self.value}{self.unit}"


class Check(models.Model):
    class Kind(models.TextChoices):
        ASG = "asg", "Auto scaling group"
        TARGET_HEALTH = "target_health", "Target group health"
        RDS = "rds", "RDS database"
        ELASTICACHE = "elasticache", "ElastiCache"
        ALARM = "alarm", "CloudWatch alarms"
        S3 = "s3", "S3 buckets"
        METRIC_THRESHOLD = "metric_threshold", "Metric threshold"
        STATUSPAGE = "statuspage", "Statuspage"
        HTTP = "http", "HTTP(S)"

    class Group(models.TextChoices):
        AWS = "aws", "AWS resources"
        METRICS = "metrics", "Metric thresholds"
        EXTERNAL = "external", "External services"

    class Status(models.TextChoices):
        OK = "ok", "OK"
        FAILING = "failing", "Failing"
        UNKNOWN = "unknown", "Unknown"

    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=150)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    group = models.CharField(max_length=10, choices=Group.choices)
    environment = models.ForeignKey(
        "cloud.Environment", null=True, blank=True, on_delete=models.CASCADE, related_name="health_checks"
    )
    rule = models.ForeignKey(
        ThresholdRule, null=True, blank=True, on_delete=models.CASCADE, related_name="checks",
        help_text="For metric_threshold checks: the editable rule they evaluate",
    )
    # Not a column: the environment that owns the check's URL when it is read from a mirror
    # (config "url_environment_id", see check_url_point); the dispatcher attaches it for each run.
    outbound_environment: Environment | None = None
    config = models.JSONField(default=dict, blank=True)
    # Request headers that carry credentials (Authorization, API keys): a JSON object, stored
    # encrypted, sent with HTTP checks, never shown (pages and the API list their names only).
    secret_headers = EncryptedTextField(blank=True, default="")
    interval_seconds = models.PositiveIntegerField(default=60)
    timeout_seconds = models.FloatField(default=10)
    fail_threshold = models.PositiveSmallIntegerField(default=3, help_text="Consecutive failures before it fails")
    recover_threshold = models.PositiveSmallIntegerField(default=2, help_text="Consecutive successes before it recovers")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    enabled = models.BooleanField(default=True)

    status = models.CharField(max_length=10, choices=Status.choices, default=Status.UNKNOWN)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_successes = models.PositiveIntegerField(default=0)
    # Whether the internal alert for this check is currently raised (reconciled with `status`).
    alert_raised = models.BooleanField(default=False)

    next_due_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True)
    claimed_for = models.DateTimeField(null=True, blank=True, help_text="The schedule slot the current claim runs")

    last_result_at = models.DateTimeField(null=True, blank=True)
    last_ok = models.BooleanField(null=True, blank=True)
    last_reason = models.CharField(max_length=500, blank=True)
    last_latency_ms = models.FloatField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)

    seeded_hash = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["group", "environment__name", "name"]
        constraints = [
            models.CheckConstraint(condition=Q(interval_seconds__gte=1), name="check_interval_positive"),
            models.CheckConstraint(condition=Q(timeout_seconds__gt=0), name="check_timeout_positive"),
            models.CheckConstraint(condition=Q(fail_threshold__gte=1), name="check_fail_threshold_positive"),
            models.CheckConstraint(condition=Q(recover_threshold__gte=1), name="check_recover_threshold_positive"),
        ]
        indexes = [
            # The poller's "enabled checks due now" on every beat.
            models.Index(fields=["enabled", "next_due_at"], name="check_due_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("health:check", args=[self.slug])

    def secret_header_values(self) -> dict[str, str]:
        if not self.secret_headers:
            return {}
        data = json.loads(self.secret_headers)
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def request_headers(self) -> dict[str, str]:
        """What an HTTP check sends: the plain headers of its config, then the secret ones."""
        plain = (self.config or {}).get("headers") or {}
        return {**{str(k): str(v) for k, v in plain.items()}, **self.secret_header_values()}

    def header_names(self) -> list[str]:
        return sorted(self.request_headers())


class OutboundPolicy(models.Model):
    """Which addresses an environment's outbound requests (checks, Prometheus, pages) may reach.

    Without a row, or with allow_private_targets off, only public addresses are reached (see
    portal.outbound). The local sandbox registers its row with the flag on: its endpoints are on
    127.0.0.1.
    """

    environment = models.OneToOneField("cloud.Environment", on_delete=models.CASCADE, related_name="outbound_policy")
    allow_private_targets = models.BooleanField(
        default=False, help_text="Allow loopback, private and link-local addresses (only for the local sandbox)")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "outbound policies"

    def __str__(self) -> str:
        return f"{self.environment_id}: {'private allowed' if self.allow_private_targets else 'public only'}"


class CheckResult(models.Model):
    """One run of a check, kept raw for 7 days (then only the hourly rollup remains)."""

    check_obj = models.ForeignKey(Check, on_delete=models.CASCADE, related_name="results", db_column="check_id")
    ok = models.BooleanField()
    reason = models.CharField(max_length=500, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    value = models.FloatField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    created_at = models.DateTimeField(db_index=True)  # retention sweep: results older than 7 days

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # A check's recent history (history page, sparkline, rollups).
            models.Index(fields=["check_obj", "-created_at"], name="result_check_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.check_obj_id} {'ok' if self.ok else 'fail'} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    @property
    def drift_seconds(self) -> float | None:
        """How late the run started against its schedule slot."""
        if self.scheduled_for is None:
            return None
        return (self.started_at - self.scheduled_for).total_seconds()


class CheckRollup(models.Model):
    """Per check and hour: counts and latency, kept 400 days."""

    check_obj = models.ForeignKey(Check, on_delete=models.CASCADE, related_name="rollups", db_column="check_id")
    hour = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)
    ok_count = models.PositiveIntegerField(default=0)
    latency_avg_ms = models.FloatField(null=True, blank=True)
    latency_max_ms = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-hour"]
        constraints = [
            models.UniqueConstraint(fields=["check_obj", "hour"], name="rollup_unique_check_hour"),
        ]
        indexes = [
            # Uptime over 24 h / 30 days for every check on the grid; retention by hour.
            models.Index(fields=["hour"], name="rollup_hour_idx"),
            # The grid's uptime sums read this index alone (PostgreSQL's index-only scan): a check's
            # 720 hourly rows of 30 days lie on as many heap pages, one per hour of inserts (measured on
            # a page of 100 checks at 10,000 checks: 200 ms warm, 3 s cold, against 23 ms from here).
            models.Index(fields=["check_obj", "hour"], include=["count", "ok_count"], name="rollup_check_hour_cover"),
        ]

    def __str__(self) -> str:
        return f"{self.check_obj_id} {self.hour:%Y-%m-%d %H}:00 {self.ok_count}/{self.count}"


class Slo(models.Model):
    """A service level objective from the plan's performance targets, evaluated periodically."""

    class Kind(models.TextChoices):
        AVAILABILITY = "availability", "Availability (error budget)"
        ERROR_RATIO = "error_ratio", "Error ratio (budget)"
        THRESHOLD = "threshold", "Threshold on a statistic"

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=150)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    metric = models.CharField(max_length=40, help_text="Metric name in the metrics source")
    statistic = models.CharField(max_length=10, blank=True)
    comparison = models.CharField(max_length=3, choices=Comparison.choices)
    target = models.FloatField()
    unit = models.CharField(max_length=10, blank=True)
    window_days = models.PositiveIntegerField(default=30)
    environment = models.ForeignKey("cloud.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    current_value = models.FloatField(null=True, blank=True)
    compliance_pct = models.FloatField(null=True, blank=True, help_text="Share of the window meeting the target")
    budget_remaining_pct = models.FloatField(null=True, blank=True)
    burn_rate_1h = models.FloatField(null=True, blank=True)
    burn_rate_6h = models.FloatField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)
    alert_raised = models.BooleanField(default=False)

    seeded_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name

    @property
    def meets_target(self) -> bool | None:
        if self.current_value is None:
            return None
        return compare(self.current_value, self.comparison, self.target)


class SloSample(models.Model):
    """One evaluation of an SLO: the value and, for ratio SLOs, good/total events in the interval."""

    slo = models.ForeignKey(Slo, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField()
    value = models.FloatField(null=True, blank=True)
    good = models.FloatField(default=0)
    total = models.FloatField(default=0)
    met = models.BooleanField(null=True)

    class Meta:
        ordering = ["-at"]
        indexes = [
            # Budget and compliance over the SLO's window.
            models.Index(fields=["slo", "at"], name="slosample_slo_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.slo_id} {self.at:%Y-%m-%d %H:%M} {self.value}"


class Heartbeat(models.Model):
    """Liveness marks of the poller and the watchdog, exported in /metrics."""

    name = models.SlugField(max_length=50, unique=True)
    beat_at = models.DateTimeField()
    detail = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"{self.name} at {self.beat_at:%H:%M:%S}"
