"""What the sandbox's stand-ins received: every email, SMS, call and Slack message the portal sent."""

from __future__ import annotations

from django.db import models


class SandboxMessage(models.Model):
    class Kind(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"
        CALL = "call", "Voice call"
        SLACK = "slack", "Slack"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    to = models.CharField(max_length=254)
    sender = models.CharField(max_length=254, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    body = models.TextField(blank=True)
    provider_id = models.CharField(max_length=100, blank=True, help_text="The SID, ts or Message-ID the stand-in answered")
    raw = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # /sandbox/messages/ lists the newest first, optionally of one kind.
            models.Index(fields=["kind", "-received_at"], name="sandbox_message_kind_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} to {self.to}"
