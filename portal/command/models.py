"""Incident command: a declared incident's SEV, roles, stakeholder updates, subscribers, review and action items.

Stands on portal.incidents (an Incident is the thing commanded); portal.incidents never imports this app.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Sev(models.TextChoices):
    SEV1 = "SEV1", "SEV1 (critical: a journey is down for many)"
    SEV2 = "SEV2", "SEV2 (major: a journey is degraded)"
    SEV3 = "SEV3", "SEV3 (minor: few are affected)"


class Journey(models.TextChoices):
    POST_JOB = "post_job", "Post a job"
    BID = "bid", "Bid"
    PAY = "pay", "Pay"
    SMS_EMAIL = "sms_email", "SMS and email"
    PHOTOS = "photos", "Photos"


class RoleKind(models.TextChoices):
    COMMANDER = "commander", "Commander"
    COMMUNICATIONS = "communications", "Communications"
    OPERATIONS = "operations", "Operations"


class UpdateStatus(models.TextChoices):
    INVESTIGATING = "investigating", "Investigating"
    IDENTIFIED = "identified", "Identified"
    MONITORING = "monitoring", "Monitoring"
    RESOLVED = "resolved", "Resolved"


class IncidentCommand(models.Model):
    """The command record of one incident: made when it is declared (or promoted, or given a SEV)."""

    incident = models.OneToOneField("incidents.Incident", on_delete=models.CASCADE, related_name="command")
    declared = models.BooleanField(default=False)
    declared_by = models.CharField(max_length=150, blank=True)
    declared_at = models.DateTimeField(null=True, blank=True)
    sev = models.CharField(max_length=4, choices=Sev.choices, default=Sev.SEV3)
    sev_reason = models.CharField(max_length=500, blank=True)
    journeys = models.JSONField(default=list, blank=True, help_text="Affected journeys: values of Journey")
    description = models.TextField(blank=True)
    merged_into = models.ForeignKey("incidents.Incident", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged_from")
    # The reminder task's mark: one reminder per due period.
    last_reminded_at = models.DateTimeField(null=True, blank=True)
    commander_paged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            # The reminder sweep: declared incidents at SEV1 or SEV2.
            models.Index(fields=["sev"], condition=Q(declared=True), name="command_declared_sev"),
        ]

    def __str__(self) -> str:
        return f"{self.sev} {self.incident_id}"

    def journey_labels(self) -> list[str]:
        names = dict(Journey.choices)
        return [names.get(j, j) for j in self.journeys]


class CommandRole(models.Model):
    incident = models.ForeignKey("incidents.Incident", on_delete=models.CASCADE, related_name="command_roles")
    role = models.CharField(max_length=20, choices=RoleKind.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="command_roles")
    taken_at = models.DateTimeField()

    class Meta:
        ordering = ["incident", "role"]
        constraints = [models.UniqueConstraint(fields=["incident", "role"], name="command_role_one_per_incident")]

    def __str__(self) -> str:
        return f"{self.role}: {self.user_id}"


class StatusUpdate(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    incident = models.ForeignKey("incidents.Incident", on_delete=models.CASCADE, related_name="status_updates")
    status = models.CharField(max_length=15, choices=UpdateStatus.choices)
    message = models.TextField()
    posted_by = models.CharField(max_length=150)
    posted_at = models.DateTimeField()
    public = models.BooleanField(default=True, help_text="Shown on the public status page")

    class Meta:
        ordering = ["-posted_at", "-id"]
        # The reminder and the status page: an incident's latest update.
        indexes = [models.Index(fields=["incident", "posted_at"], name="status_update_incident_at")]

    def __str__(self) -> str:
        return f"{self.status}: {self.message[:40]}"


class Subscriber(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SLACK = "slack", "Slack channel"

    incident = models.ForeignKey("incidents.Incident", on_delete=models.CASCADE, related_name="subscribers")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    target = models.CharField(max_length=254, help_text="An email address or a Slack channel (#name or id)")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "target"]
        constraints = [models.UniqueConstraint(fields=["incident", "kind", "target"], name="subscriber_once_per_incident")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


class Review(models.Model):
    incident = models.OneToOneField("incidents.Incident", on_delete=models.CASCADE, related_name="review")
    narrative = models.TextField(blank=True)
    facts = models.JSONField(default=dict, help_text="Measured facts, snapshot at creation (refreshable)")
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"review of {self.incident_id}"


class ActionItem(models.Model):
    class State(models.TextChoices):
        OPEN = "open", "Open"
        DONE = "done", "Done"
        DROPPED = "dropped", "Dropped"

    class LinkKind(models.TextChoices):
        NONE = "", "None"
        THRESHOLD = "threshold", "Threshold change"
        RUNBOOK = "runbook", "Runbook change"
        CHECKLIST = "checklist", "Checklist item"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    incident = models.ForeignKey("incidents.Incident", on_delete=models.CASCADE, related_name="action_items")
    review = models.ForeignKey(Review, null=True, blank=True, on_delete=models.SET_NULL, related_name="action_items")
    title = models.CharField(max_length=300)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="action_items")
    due_date = models.DateField(null=True, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    link_kind = models.CharField(max_length=10, choices=LinkKind.choices, blank=True, default="")
    link_target = models.CharField(max_length=200, blank=True, help_text="A threshold slug, runbook slug or checklist slug")
    last_nagged_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["due_date", "id"]
        indexes = [
            # The open list and the nag: open items by due date.
            models.Index(fields=["due_date"], condition=Q(state="open"), name="action_item_open_due"),
        ]

    def __str__(self) -> str:
        return self.title
