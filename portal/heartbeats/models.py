"""Heartbeats: a dead-man's switch for something that should report in on a period (Alertmanager's
Watchdog, the backup job, the portal's own beat). Silence past the period plus grace opens an incident."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.urls import reverse

TOKEN_PREFIX = "hb_"


def new_ping_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(24)


class Heartbeat(models.Model):
    class Status(models.TextChoices):
        NEW = "new", "new (no ping yet)"  # never alerts: it has not started reporting
        UP = "up", "up"
        DOWN = "down", "down"  # missed its ping; its alert is firing
        PAUSED = "paused", "paused"  # opens nothing until resumed

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=200)
    period_seconds = models.PositiveIntegerField()
    grace_seconds = models.PositiveIntegerField(default=0)
    environment = models.ForeignKey("cloud.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # sha256 of the ping token (portal.accounts.models.hash_token); empty: no token issued, only the portal pings it.
    token_hash = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEW)
    last_ping_at = models.DateTimeField(null=True, blank=True)
    # When the missed-ping check flips it down: last ping + period + grace (null while new or paused).
    alert_after = models.DateTimeField(null=True, blank=True)
    ping_count = models.PositiveIntegerField(default=0)
    down_since = models.DateTimeField(null=True, blank=True)
    paused_reason = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    seeded_hash = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["slug"]
        indexes = [
            # the beat's missed-ping check: status in (up) and alert_after < now
            models.Index(fields=["status", "alert_after"], name="heartbeat_due_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(period_seconds__gte=1), name="heartbeat_period_positive"),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def allowance(self) -> timedelta:
        return timedelta(seconds=self.period_seconds + self.grace_seconds)

    def ping_path(self) -> str:
        return reverse("api:heartbeat_ping", kwargs={"slug": self.slug})

    def ping_url(self, token: str | None = None) -> str:
        """The ping URL; with `token` the one a cron job or Alertmanager calls without a header."""
        if token:
            return settings.PORTAL_PUBLIC_URL + reverse("api:heartbeat_ping_token", kwargs={"slug": self.slug, "token": token})
        return settings.PORTAL_PUBLIC_URL + self.ping_path()


# The seeded heartbeats (portal/heartbeats/seed.py); the backups verification and the beat task name them.
WATCHDOG_SLUG = "alertmanager-watchdog"
BACKUP_SLUG = "backup-job"
PORTAL_BEAT_SLUG = "portal-beat"
