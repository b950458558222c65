from django.contrib import admin

from portal.checklist.models import ChecklistItem, ChecklistNotification, ChecklistVerification


@admin.register(ChecklistItem)
class ChecklistItemAdmin(admin.ModelAdmin):
    """Operators edit the seeded text and sign-off rules here; sign-off state changes only through the pages and API."""

    list_display = ("position", "title", "status", "required_signers", "verifiable", "verification_outcome")
    fields = ("slug", "position", "title", "description", "owner_role", "owner", "verifiable", "required_signers",
              "attestation_days", "status", "round", "ready_by_label", "signed_off_at", "attested_until",
              "verification_outcome", "verification_summary", "evidence_stale")
    readonly_fields = ("slug", "status", "round", "ready_by_label", "signed_off_at", "attested_until",
                       "verification_outcome", "verification_summary", "evidence_stale")


@admin.register(ChecklistVerification)
class ChecklistVerificationAdmin(admin.ModelAdmin):
    list_display = ("item", "outcome", "ran_at", "environment_name", "triggered_by")
    list_filter = ("outcome",)

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ChecklistNotification)
class ChecklistNotificationAdmin(admin.ModelAdmin):
    list_display = ("subject", "kind", "sent_at", "delivered")

    def has_change_permission(self, request, obj=None):
        return False
