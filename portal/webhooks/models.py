"""Endpoints a lead registers, and each event's delivery to each endpoint with its attempts."""

from __future__ import annotations

import uuid

from django.db import models

from portal.cloud.fields import EncryptedTextField


class Endpoint(models.Model):
    """A URL that receives the portal's events, signed with its own secret."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    url = models.URLField(max_length=500)
    secret = EncryptedTextField(help_text="HMAC-SHA256 key of X-Portal-Signature (stored encrypted)")
    # The environment whose outbound policy decides which addresses the URL may resolve to.
    environment = models.ForeignKey("cloud.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    kinds = models.JSONField(default=list, blank=True, help_text="event kinds to send; empty: all")
    enabled = models.BooleanField(default=True)
    created_by_label = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def wants(self, kind: str) -> bool:
        return self.enabled and (not self.kinds or kind in self.kinds)


class Delivery(models.Model):
    """One event for one endpoint: delivered once, retried with backoff, given up after MAX attempts."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Gave up"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.UUIDField()
    kind = models.CharField(max_length=40)
    event = models.JSONField()
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # Each event once per endpoint: a redelivered fan-out task finds the row and sends nothing more.
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_delivery_once_per_endpoint"),
        ]
        indexes = [
            # The sweep: pending deliveries whose next attempt is due (state=pending AND next_attempt_at <= now).
            models.Index(fields=["state", "next_attempt_at"], name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.event_id} to {self.endpoint_id}"


class Attempt(models.Model):
    """One POST of a delivery: the answer's status code, or the error's class and host (never the URL)."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_once")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"


