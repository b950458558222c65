from __future__ import annotations

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
