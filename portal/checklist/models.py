"""The pre-launch checklist: items, evidence, sign-offs, automated verifications, notifications."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class ItemStatus(models.TextChoices):
    OPEN = "open", "Open"
    READY = "ready", "Ready for sign-off"
    SIGNED_OFF = "signed_off", "Signed off"
    REVOKED = "revoked", "Revoked"


class VerificationOutcome(models.TextChoices):
    PASSING = "passing", "Verified"
    FAILING = "failing", "Failing"
    ERROR = "error", "Could not check"


class ChecklistItem(models.Model):
    """One pre-launch item (seeded from plan.yaml: slug, position, title, description, owner_role, verifiable)."""

    slug = models.SlugField(max_length=50, unique=True)
    position = models.PositiveSmallIntegerField(default=0)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner_role = models.CharField(max_length=20, default="lead")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    verifiable = models.BooleanField(default=False, help_text="The cloud can answer this one (an automated verification exists)")
    required_signers = models.PositiveSmallIntegerField(default=2, help_text="Distinct leads who must sign; the preparer is never enough alone")
    attestation_days = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Default expiry of a sign-off, in days (empty: none)")

    status = models.CharField(max_length=12, choices=ItemStatus.choices, default=ItemStatus.OPEN)
    # Sign-offs of the current round count; a revoke or a re-attestation starts a new round.
    round = models.PositiveIntegerField(default=1)
    ready_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    ready_by_label = models.CharField(max_length=150, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    signed_off_at = models.DateTimeField(null=True, blank=True)
    attested_until = models.DateTimeField(null=True, blank=True, help_text="The earliest expiry of the counted sign-offs")
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoke_reason = models.CharField(max_length=500, blank=True)

    # The latest automated verification (cached from ChecklistVerification for the board).
    verification_outcome = models.CharField(max_length=8, choices=VerificationOutcome.choices, blank=True)
    verification_summary = models.CharField(max_length=500, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    # Set when a verification failed after the item was signed off: the sign-off is no longer backed by evidence.
    evidence_stale = models.BooleanField(default=False)
    evidence_stale_since = models.DateTimeField(null=True, blank=True)
    # Set once when the sign-off's expiry passed and the leads were asked to re-attest.
    expiry_flagged_at = models.DateTimeField(null=True, blank=True)

    seeded_hash = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position", "slug"]
        constraints = [
            models.CheckConstraint(condition=Q(required_signers__gte=1), name="checklist_required_signers_min1"),
            models.CheckConstraint(
                condition=~Q(status="signed_off") | Q(signed_off_at__isnull=False), name="checklist_signed_off_has_time"
            ),
            models.CheckConstraint(condition=~Q(status="revoked") | ~Q(revoke_reason=""), name="checklist_revoked_has_reason"),
        ]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return f"/checklist/{self.slug}/"

    @property
    def expired(self) -> bool:
        return self.status == ItemStatus.SIGNED_OFF and self.attested_until is not None and self.attested_until <= timezone.now()

    @property
    def verified(self) -> bool:
        return self.verification_outcome == VerificationOutcome.PASSING

    @property
    def complete(self) -> bool:
        """Counts toward launch: signed off, not expired, not contradicted by the cloud."""
        if self.status != ItemStatus.SIGNED_OFF or self.expired or self.evidence_stale:
            return False
        return not self.verifiable or self.verified


class Evidence(models.Model):
    """A note, a link or a file attached to an item (files go through default_storage: S3 in production)."""

    class Kind(models.TextChoices):
        NOTE = "note", "Note"
        LINK = "link", "Link"
        FILE = "file", "File"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="evidence")
    kind = models.CharField(max_length=4, choices=Kind.choices)
    text = models.TextField(blank=True)
    url = models.URLField(max_length=500, blank=True)
    file = models.FileField(upload_to="checklist/evidence/%Y/%m/", max_length=300, blank=True)
    file_name = models.CharField(max_length=200, blank=True)
    file_size = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    added_by_label = models.CharField(max_length=150, blank=True)
    added_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["added_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=~Q(kind="link") | ~Q(url=""), name="evidence_link_has_url"),
            models.CheckConstraint(condition=~Q(kind="file") | ~Q(file=""), name="evidence_file_has_file"),
            models.CheckConstraint(condition=~Q(kind="note") | ~Q(text=""), name="evidence_note_has_text"),
        ]

    def __str__(self) -> str:
        return self.file_name or self.url or self.text[:60]

    def snapshot(self) -> dict:
        return {
            "id": str(self.public_id), "kind": self.kind, "text": self.text, "url": self.url,
            "file_name": self.file_name, "file_size": self.file_size, "sha256": self.sha256,
            "added_by": self.added_by_label, "added_at": self.added_at.isoformat(),
        }


class SignOff(models.Model):
    """One person's signature on an item in one round, with the evidence as it stood."""

    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="sign_offs")
    round = models.PositiveIntegerField()
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # "user:<pk>" (or "token:<pk>" for a token not tied to a person): distinct signers are counted by it.
    signer_key = models.CharField(max_length=60)
    signer_label = models.CharField(max_length=150)
    signed_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=500, blank=True)
    evidence_snapshot = models.JSONField(default=dict)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by_label = models.CharField(max_length=150, blank=True)
    revoke_reason = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["item", "-round", "signed_at"]
        constraints = [
            # One live signature per person per round: a second click cannot count twice.
            models.UniqueConstraint(
                fields=["item", "round", "signer_key"], condition=Q(revoked_at__isnull=True), name="signoff_one_live_per_signer"
            ),
        ]
        indexes = [
            # the counted signatures of an item's current round
            models.Index(fields=["item", "round"], name="signoff_item_round_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.signer_label} signed {self.item} (round {self.round})"


class ChecklistVerification(models.Model):
    """One run of an item's automated verification against the cloud, with what it saw."""

    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="verifications")
    environment_name = models.CharField(max_length=50, blank=True)
    ran_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=8, choices=VerificationOutcome.choices)
    summary = models.CharField(max_length=500)
    evidence = models.JSONField(default=dict)
    triggered_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-ran_at", "-pk"]
        indexes = [
            # an item's page: its latest verifications
            models.Index(fields=["item", "-ran_at"], name="verification_item_ran_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.item.slug} {self.outcome} at {self.ran_at:%Y-%m-%d %H:%M}"


class ChecklistNotification(models.Model):
    """A notice sent to the leads (e.g. a signed-off item regressed), kept as a record."""

    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=30)
    subject = models.CharField(max_length=200)
    body = models.TextField()
    recipients = models.JSONField(default=list)
    sent_at = models.DateTimeField(default=timezone.now)
    delivered = models.BooleanField(default=False)
    error = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-sent_at"]

    def __str__(self) -> str:
        return self.subject
