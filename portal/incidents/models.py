"""Alerts from Alertmanager, SNS/CloudWatch and the portal itself, grouped into incidents.

Every webhook body is kept as an AlertDelivery row before the sender gets its 2xx; the row is the
outbox a periodic sweep re-dispatches, so a dead broker loses nothing.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.urls import reverse

from portal.cloud.fields import EncryptedTextField


class Source(models.TextChoices):
    ALERTMANAGER = "alertmanager", "Alertmanager"
    SNS = "sns", "SNS / CloudWatch"
    INTERNAL = "internal", "Portal checks"


class Severity(models.TextChoices):
    CRITICAL = "critical", "Critical"
    WARNING = "warning", "Warning"


SEVERITY_RANK: dict[str, int] = {Severity.WARNING: 1, Severity.CRITICAL: 2}


class AlertSourceConfig(models.Model):
    """Per-source behaviour an operator can change: auto-resolve and grouping by label sets."""

    source = models.CharField(max_length=20, choices=Source.choices, unique=True)
    auto_resolve = models.BooleanField(default=True, help_text="Resolve the incident when all its alerts resolve")
    grouping_labels = models.JSONField(
        default=list, blank=True,
        help_text='Label names whose values form the grouping key (e.g. ["alertname", "service"]); empty = the source\'s own key',
    )

    def __str__(self) -> str:
        return self.source


class AlertDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSED = "processed", "Processed"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    source = models.CharField(max_length=20, choices=Source.choices)
    received_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    payload = models.JSONField()
    # SNS MessageId: a redelivered message is stored once.
    dedup_key = models.CharField(max_length=200, blank=True)
    remote_addr = models.CharField(max_length=64, blank=True)
    alert_count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "dedup_key"], condition=~Q(dedup_key=""), name="delivery_unique_dedup_key"
            ),
        ]
        indexes = [
            # The outbox sweep: pending deliveries older than a few seconds.
            models.Index(fields=["status", "received_at"], name="delivery_status_received"),
        ]

    def __str__(self) -> str:
        return f"{self.source} delivery {self.public_id} ({self.status})"


class RejectedDelivery(models.Model):
    """A webhook call refused with a 4xx (or alerts refused out of an accepted batch): kept for leads
    to read, never processed. During a flood only a sample is stored (`weight` says how many
    rejections a row stands for) and rows older than the retention are pruned."""

    source = models.CharField(max_length=20, choices=Source.choices)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    reason = models.CharField(max_length=40)
    detail = models.CharField(max_length=500, blank=True)
    status_code = models.PositiveSmallIntegerField(default=400)
    remote_addr = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)
    excerpt = models.TextField(blank=True, help_text="The first 2,000 characters of the body")
    weight = models.PositiveIntegerField(default=1, help_text="How many rejections this row stands for (more than 1 when a flood was sampled)")

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.source} rejected: {self.reason}"


class Incident(models.Model):
    class Status(models.TextChoices):
        TRIGGERED = "triggered", "Triggered"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    grouping_key = models.CharField(max_length=500)
    source = models.CharField(max_length=20, choices=Source.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.TRIGGERED)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    environment = models.ForeignKey("cloud.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents")
    title = models.CharField(max_length=300)
    service = models.CharField(max_length=100, blank=True)
    runbook_slug = models.CharField(max_length=100, blank=True)
    auto_resolve = models.BooleanField(default=True)

    opened_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=150, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolve_reason = models.CharField(max_length=500, blank=True)
    reopened_count = models.PositiveIntegerField(default=0)
    assignee = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_incidents")

    # Escalation state: the last level paged, the round (repeats) and when the next page is due.
    escalation_level = models.PositiveSmallIntegerField(default=0)
    escalation_round = models.PositiveSmallIntegerField(default=0)
    next_escalation_at = models.DateTimeField(null=True, blank=True)
    # Set while a silence (or maintenance window) holds the incident's pages; kept after it ends so
    # the incident is listed as "would have paged".
    silenced_reason = models.CharField(max_length=500, blank=True)
    silence = models.ForeignKey("Silence", null=True, blank=True, on_delete=models.SET_NULL, related_name="incidents")
    silenced_until = models.DateTimeField(null=True, blank=True)

    postmortem_summary = models.TextField(blank=True)
    postmortem_impact = models.TextField(blank=True)
    postmortem_root_cause = models.TextField(blank=True)
    postmortem_actions = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # Replays and concurrent duplicates end here: one open incident per grouping key.
            models.UniqueConstraint(fields=["grouping_key"], condition=~Q(status="resolved"), name="incident_one_open_per_key"),
        ]
        indexes = [
            # The list page: open first, newest first, filtered by status.
            models.Index(fields=["status", "opened_at"], name="incident_status_opened"),
            # The escalation task: triggered incidents whose next page is due.
            models.Index(fields=["next_escalation_at"], condition=Q(status="triggered"), name="incident_escalation_due"),
        ]

    def __str__(self) -> str:
        return f"{self.title} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("incidents:detail", args=[self.public_id])

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.RESOLVED


class Alert(models.Model):
    class Status(models.TextChoices):
        FIRING = "firing", "Firing"
        RESOLVED = "resolved", "Resolved"

    source = models.CharField(max_length=20, choices=Source.choices)
    fingerprint = models.CharField(max_length=200)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=10, choices=Status.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.WARNING)
    summary = models.CharField(max_length=500, blank=True)
    labels = models.JSONField(default=dict)
    annotations = models.JSONField(default=dict)
    generator_url = models.URLField(max_length=1000, blank=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_received_at = models.DateTimeField()
    incident = models.ForeignKey(Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    environment = models.ForeignKey("cloud.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    silenced_reason = models.CharField(max_length=500, blank=True, help_text="The silence that held its page, when one did")

    class Meta:
        ordering = ["name", "fingerprint"]
        constraints = [
            models.UniqueConstraint(fields=["source", "fingerprint"], name="alert_unique_source_fingerprint"),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.fingerprint}] {self.status}"


class AlertEvent(models.Model):
    """One firing or resolved report of an alert (its history), with the delivery it came in."""

    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="events")
    status = models.CharField(max_length=10, choices=Alert.Status.choices)
    at = models.DateTimeField(auto_now_add=True)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    delivery = models.ForeignKey(AlertDelivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    effect = models.CharField(max_length=20, blank=True, help_text="fired, resolved, repeat, stale, ignored")

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.alert_id} {self.status} ({self.effect})"


class TimelineEntry(models.Model):
    class Kind(models.TextChoices):
        OPENED = "opened", "Opened"
        ALERT_FIRING = "alert_firing", "Alert firing"
        ALERT_RESOLVED = "alert_resolved", "Alert resolved"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        ASSIGNED = "assigned", "Assigned"
        RESOLVED = "resolved", "Resolved"
        REOPENED = "reopened", "Reopened"
        NOTE = "note", "Note"
        NOTIFICATION = "notification", "Notification"
        ESCALATION = "escalation", "Escalation"
        RUNBOOK_STEP = "runbook_step", "Runbook step"
        CLOUD_ACTION = "cloud_action", "Cloud action"
        DEPLOYMENT = "deployment", "Deployment"
        POSTMORTEM = "postmortem", "Postmortem"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=20)
    actor_label = models.CharField(max_length=150)
    text = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["incident", "at"], name="timeline_incident_at")]

    def __str__(self) -> str:
        return f"{self.kind} by {self.actor_label}"


class NotificationChannel(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack-compatible webhook"
        SMS = "sms", "SMS (Twilio)"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # Email address(es, comma separated) or phone number in E.164; the webhook URL is a secret.
    target = models.CharField(max_length=300, blank=True)
    webhook_url = EncryptedTextField(blank=True)
    enabled = models.BooleanField(default=True)
    seeded_hash = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"


class EscalationPolicy(models.Model):
    severity = models.CharField(max_length=10, choices=Severity.choices, unique=True)
    name = models.CharField(max_length=100)
    repeat = models.BooleanField(default=True, help_text="Start again at level 1 after the last level")
    repeat_after_minutes = models.PositiveIntegerField(default=30)
    seeded_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        verbose_name_plural = "escalation policies"

    def __str__(self) -> str:
        return self.name


class EscalationLevel(models.Model):
    """A level pages its channels and, besides, one person: whoever is on call on `target_schedule` at
    that moment, or `target_user`, each by their own notification rules (PersonalPage rows)."""

    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="levels")
    number = models.PositiveSmallIntegerField()
    delay_minutes = models.PositiveIntegerField(default=0, help_text="Minutes unacknowledged after the previous level")
    channels = models.ManyToManyField(NotificationChannel, blank=True)
    target_schedule = models.ForeignKey("oncall.Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                        help_text="Page whoever is on call on this schedule when the level fires")
    target_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
                                    help_text="Page this person")

    class Meta:
        ordering = ["policy", "number"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "number"], name="escalation_level_unique_number"),
            # One person per level: a schedule's on-call person or a named one, never both.
            models.CheckConstraint(condition=Q(target_schedule__isnull=True) | Q(target_user__isnull=True),
                                   name="escalation_level_one_person_target"),
        ]

    def __str__(self) -> str:
        return f"{self.policy} level {self.number}"


class Notification(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="notifications")
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="notifications")
    level = models.PositiveSmallIntegerField()
    round = models.PositiveSmallIntegerField(default=0)
    # A page a person asked for (manual escalation) goes out even when the incident is acknowledged.
    manual = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # The escalation task may run twice for one due page: one notification per channel, level and round.
            models.UniqueConstraint(fields=["incident", "channel", "level", "round"], name="notification_once_per_level"),
        ]

    def __str__(self) -> str:
        return f"{self.channel_id} level {self.level} ({self.status})"


class PersonalPage(models.Model):
    """One step of a person's notification rules for one escalation level: e.g. SMS at once, a voice
    call after 3 minutes. Sent by the sweep when due, to a verified method of its kind only, and never
    after the incident is acknowledged. For a schedule's level the person is resolved again at send
    time: an override moves the page to whoever covers by then."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        MOVED = "moved", "Moved to the covering person"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="personal_pages")
    level = models.PositiveSmallIntegerField()
    round = models.PositiveSmallIntegerField(default=0)
    schedule = models.ForeignKey("oncall.Schedule", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_pages")
    kind = models.CharField(max_length=10, help_text="A contact kind: email, sms, voice, slack")
    delay_minutes = models.PositiveIntegerField(default=0)
    level_started_at = models.DateTimeField(help_text="When the level fired; due_at = this + delay")
    due_at = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    to = models.CharField(max_length=254, blank=True, help_text="Where it went (the verified method's value at send time)")
    provider_id = models.CharField(max_length=100, blank=True)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at", "id"]
        constraints = [
            # The escalation may fire twice for one level (a redelivered task): one page per person, rule, level and round.
            models.UniqueConstraint(fields=["incident", "level", "round", "user", "kind", "delay_minutes"],
                                    name="personal_page_once_per_rule"),
        ]
        indexes = [
            # The sweep: status='pending' AND due_at <= now ORDER BY due_at.
            models.Index(fields=["due_at"], condition=Q(status="pending"), name="personal_page_due"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.user_id} for incident {self.incident_id} ({self.status})"


class RunbookMapping(models.Model):
    """Alert name pattern and labels -> the troubleshooting runbook to suggest. Lower priority wins."""

    slug = models.SlugField(max_length=100, unique=True)
    priority = models.PositiveIntegerField(default=100)
    name_pattern = models.CharField(max_length=200, blank=True, help_text="Regular expression on the alert name (case-insensitive)")
    label_matchers = models.JSONField(default=dict, blank=True, help_text='Labels that must all match, e.g. {"component": "database"}')
    runbook_slug = models.SlugField(max_length=100)
    seeded_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["priority", "slug"]

    def __str__(self) -> str:
        return f"{self.slug} -> {self.runbook_slug}"


class GroupingRule(models.Model):
    """Alerts from any source whose labels give values for `labels` share one incident key (e.g.
    environment + metric + colour: the health check, the CloudWatch alarm and the Prometheus alert
    about one breach, warning and critical alike). Lower priority is tried first; a label in
    `optional_labels` may be missing (its value is then empty)."""

    slug = models.SlugField(max_length=80, unique=True)
    name = models.CharField(max_length=200)
    priority = models.PositiveIntegerField(default=100)
    enabled = models.BooleanField(default=True)
    labels = models.JSONField(default=list, help_text='Label names whose values form the key, e.g. ["environment", "metric", "colour"]')
    optional_labels = models.JSONField(default=list, blank=True, help_text="Labels of the key that may be missing")
    window_minutes = models.PositiveIntegerField(default=30, help_text="A resolved incident of the key reopens on an alert within this window")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "slug"]
        constraints = [models.CheckConstraint(condition=Q(window_minutes__gte=1), name="grouping_rule_window_positive")]

    def __str__(self) -> str:
        return self.name


class Silence(models.Model):
    """Label matchers (all must equal the alert's label) between starts_at and ends_at. A matching
    alert is stored and joins its incident, but pages nobody. The portal makes its own for what it
    does (a drill, a failover, a scale): `expected` names that (\"drill\") and `ref` the action."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    matchers = models.JSONField(default=dict)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=500)
    expected = models.CharField(max_length=40, blank=True, help_text="drill, rds-failover, scale, deployment-hold, maintenance")
    ref = models.CharField(max_length=200, blank=True, help_text="The portal action that made it (drill:<id>, scale:<id>...)")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-starts_at", "-id"]
        constraints = [models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="silence_ends_after_start")]
        indexes = [
            # Matching an alert: silences not deleted whose end is in the future (ends_at > now).
            models.Index(fields=["ends_at"], condition=Q(deleted_at__isnull=True), name="silence_live_ends"),
        ]

    def __str__(self) -> str:
        return f"silence {self.matchers} until {self.ends_at:%Y-%m-%d %H:%M}"

    def matches(self, labels: dict) -> bool:
        return bool(self.matchers) and all(str(labels.get(k, "")) == str(v) for k, v in self.matchers.items())


class MaintenanceWindow(models.Model):
    """Planned work: one-off (no rule) or recurring (an RFC 5545 RRULE, read by dateutil), each
    occurrence `duration_minutes` long; alerts matching `matchers` during an occurrence are silenced."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    matchers = models.JSONField(default=dict)
    starts_at = models.DateTimeField(help_text="The first occurrence")
    duration_minutes = models.PositiveIntegerField(default=60)
    rrule = models.CharField(max_length=300, blank=True, help_text="e.g. FREQ=WEEKLY;BYDAY=TU; empty = once")
    reason = models.CharField(max_length=500)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["starts_at", "id"]
        constraints = [models.CheckConstraint(condition=Q(duration_minutes__gte=1), name="maintenance_duration_positive")]

    def __str__(self) -> str:
        return self.name
