"""Shift handoffs: one row per schedule and shift start, with the note generated when the shift changed,
and the notes an outgoing person writes for whoever comes next."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Not sent"


class ShiftHandoff(models.Model):
    """A shift change on one schedule: who took over from whom, and the state of things at that moment."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    schedule = models.ForeignKey("oncall.Schedule", on_delete=models.CASCADE, related_name="handoffs")
    shift_start = models.DateTimeField(help_text="When the incoming person's stint began")
    incoming = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    outgoing = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField()
    note = models.JSONField(default=dict, help_text="The generated handoff note (portal.handoff.selectors.handoff_note)")
    delivery_status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    deliveries = models.JSONField(default=list, blank=True, help_text="[{kind, to, ok, detail}] per contact method")

    class Meta:
        ordering = ["-shift_start"]
        constraints = [
            # The beat task runs every minute and may run twice: one handoff per shift (IntegrityError fallback).
            models.UniqueConstraint(fields=["schedule", "shift_start"], name="handoff_one_per_shift"),
        ]
        indexes = [
            # The check and the page read a schedule's latest handoff: schedule=X ORDER BY shift_start DESC.
            models.Index(fields=["schedule", "-shift_start"], name="handoff_schedule_latest_idx"),
        ]

    def __str__(self) -> str:
        return f"handoff on {self.schedule_id} at {self.shift_start:%Y-%m-%d %H:%M}"


class OutgoingNote(models.Model):
    """What someone on call wants the next person to know; attached to the next handoff of its schedule."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    schedule = models.ForeignKey("oncall.Schedule", on_delete=models.CASCADE, related_name="outgoing_notes")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    author_label = models.CharField(max_length=150)
    text = models.TextField(max_length=2000)
    written_at = models.DateTimeField()
    handoff = models.ForeignKey(ShiftHandoff, null=True, blank=True, on_delete=models.SET_NULL, related_name="outgoing_notes")

    class Meta:
        ordering = ["written_at", "pk"]
        indexes = [
            # The next handoff takes a schedule's pending notes: schedule=X AND handoff IS NULL.
            models.Index(fields=["schedule"], condition=models.Q(handoff__isnull=True), name="handoff_note_pending_idx"),
        ]

    def __str__(self) -> str:
        return f"note by {self.author_label} on {self.schedule_id}"
