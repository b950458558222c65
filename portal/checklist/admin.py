from django.contrib import admin

from portal.audit.admin import AuditedAdmin, ReadOnlyAdmin
from portal.checklist.models import ChecklistItem, ChecklistNotification, ChecklistVerification


@admin.register(ChecklistItem)
class ChecklistItemAdmin(AuditedAdmin):
    """Operators edit the seeded text and sign-off rules here; sign-off state changes only through the pages and API."""

    list_display = ("position", "title", "status", "required_signers", "verifiable", "verification_outcome")
    fields = ("slug", "position", "title", "description", "owner_role", "owner", "verifiable", "required_signers",
              "attestation_days", "status", "round", "ready_by_label", "signed_off_at", "attested_until",
              "verification_outcome", "verification_summary", "evidence_stale")
    readonly_fields = ("slug", "status", "round", "ready_by_label", "signed_off_at", "attested_until",
                       "verification_outcome", "verification_summary", "evidence_stale")


@admin.register(ChecklistVerification)
class ChecklistVerificationAdmin(ReadOnlyAdmin):
    list_display = ("item", "outcome", "ran_at", "environment_name", "triggered_by")
    list_filter = ("outcome",)


@admin.register(ChecklistNotification)
class ChecklistNotificationAdmin(ReadOnlyAdmin):
    list_display = ("subject", "kind", "sent_at", "delivered")
