from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

# --- email links (portal/inbound/email_links.py) ---


class EmailActionToken(models.Model):
    """One acknowledge or resolve link in one email page. Only the SHA-256 of the token is stored; the
    token in the link is the credential (no login session needed) and acts as `user`. Single-use:
    `used_at` is claimed with a conditional update; dead once the incident is resolved or after
    `expires_at`."""

    class Action(models.TextChoices):
        ACKNOWLEDGE = "acknowledge", "Acknowledge"
        RESOLVE = "resolve", "Resolve"

    token_hash = models.CharField(max_length=64, unique=True)
    incident = models.ForeignKey("incidents.Incident", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(max_length=12, choices=Action.choices)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="email_action_token_expires_after_created"),
        ]

    def __str__(self) -> str:
        return f"{self.action} link for incident {self.incident_id} ({'used' if self.used_at else 'unused'})"


# --- Slack (portal/inbound/slack.py) ---


class SlackMessage(models.Model):
    """Where a page to Slack is (channel + ts), so the message updates itself (chat.update) as the incident
    changes. One row per message; an incident paged to several people has several."""

    incident = models.ForeignKey("incidents.Incident", on_delete=models.CASCADE, related_name="+")
    page = models.ForeignKey("incidents.PersonalPage", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    channel = models.CharField(max_length=40)
    ts = models.CharField(max_length=40)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "ts"], name="slack_message_one_per_channel_ts")]
        # The refresh task: the messages of one incident.
        indexes = [models.Index(fields=["incident"], name="slack_message_incident")]

    def __str__(self) -> str:
        return f"Slack message {self.channel}/{self.ts} for incident {self.incident_id}"


class RollbackCode(models.Model):
    """The step-up of a production rollback from Slack: a one-time code sent to the person's verified
    Slack method. Only its hash is stored; it expires soon and takes a few attempts; `used_at` is claimed
    with a conditional update, so one code starts at most one rollback."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    incident = models.ForeignKey("incidents.Incident", on_delete=models.CASCADE, related_name="+")
    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")), name="rollback_code_expires_after_created"),
        ]

    def __str__(self) -> str:
        return f"rollback code for {self.user_id} on environment {self.environment_id}"
