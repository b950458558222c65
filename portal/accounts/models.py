from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class TokenScope(models.TextChoices):
    ALERTS_WRITE = "alerts:write", "Send alerts (Alertmanager, SNS)"
    READ = "read", "Read everything"
    ACTIONS = "actions", "Read, and act as a responder (acknowledge, deploy, scale, roll back)"
    LEAD = "lead", "Act as a lead (sign-off, approvals, failover)"


# What each scope grants: a token of scope X may call endpoints that need any scope in SCOPE_GRANTS[X].
SCOPE_GRANTS: dict[str, frozenset[str]] = {
    TokenScope.ALERTS_WRITE: frozenset({"alerts:write"}),
    TokenScope.READ: frozenset({"read"}),
    TokenScope.ACTIONS: frozenset({"read", "actions"}),
    TokenScope.LEAD: frozenset({"read", "actions", "lead"}),
}


# Scopes that can change an environment: on a production environment they also need a grant by name.
CHANGING_SCOPES = frozenset({"actions", "lead"})


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the JSON API and the webhooks. Only its SHA-256 is stored."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(max_length=20, choices=TokenScope.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="First characters, to tell tokens apart in lists")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="None: never expires")
    environments = models.JSONField(
        default=list, blank=True,
        help_text="Names of the production environments an actions or lead token may change",
    )

    class Meta:
        permissions = [
            ("view_portal", "Read every page and API"),
            ("respond", "Acknowledge incidents, run runbooks, deploy, scale and roll back"),
            ("sign_off", "Sign off and revoke checklist items"),
            ("approve", "Approve scale beyond the phase, move phases, fail over RDS"),
            ("view_audit", "Read the audit log and rejected deliveries"),
            ("administer", "Edit environments, run drills, manage users and tokens"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.scope})"

    @staticmethod
    def generate() -> str:
        return "ftw_" + secrets.token_urlsafe(32)

    @staticmethod
    def usable_q(now=None) -> Q:
        """Tokens that authenticate now: not revoked, not expired (read on every call, never cached)."""
        now = now or timezone.now()
        return Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))

    @property
    def is_usable(self) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > timezone.now())

    def may_change(self, environment) -> bool:
        """Whether this token may change `environment`: production needs the environment's name in `environments`."""
        if environment is None or not getattr(environment, "is_production", False):
            return True
        if self.scope not in CHANGING_SCOPES:
            return True  # such a token cannot change anything anyway; its scope check answers
        return environment.name in (self.environments or [])

    def grants(self, needed: str) -> bool:
        return needed in SCOPE_GRANTS.get(self.scope, frozenset())

    @property
    def audit_label(self) -> str:
        return f"token:{self.name}"
