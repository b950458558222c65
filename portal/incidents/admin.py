from django.contrib import admin

from portal.audit.admin import AuditedAdmin, ReadOnlyAdmin
from portal.incidents import models


class EscalationLevelInline(admin.TabularInline):
    model = models.EscalationLevel
    extra = 0


@admin.register(models.EscalationPolicy)
class EscalationPolicyAdmin(AuditedAdmin):
    list_display = ("severity", "name", "repeat", "repeat_after_minutes")
    inlines = [EscalationLevelInline]


@admin.register(models.NotificationChannel)
class NotificationChannelAdmin(AuditedAdmin):
    list_display = ("name", "kind", "target", "enabled")


@admin.register(models.RunbookMapping)
class RunbookMappingAdmin(AuditedAdmin):
    list_display = ("slug", "priority", "name_pattern", "label_matchers", "runbook_slug")
    list_editable = ("priority", "name_pattern", "runbook_slug")


@admin.register(models.AlertSourceConfig)
class AlertSourceConfigAdmin(AuditedAdmin):
    list_display = ("source", "auto_resolve", "grouping_labels")


@admin.register(models.Incident)
class IncidentAdmin(ReadOnlyAdmin):
    """Incidents change through the pages and API (acknowledge, resolve, paging), never here."""

    list_display = ("title", "status", "severity", "environment", "opened_at")
    list_filter = ("status", "severity")
    search_fields = ("title", "grouping_key")
    readonly_fields = ("public_id", "grouping_key", "opened_at", "acknowledged_at", "resolved_at")


@admin.register(models.AlertDelivery)
class AlertDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("public_id", "source", "status", "received_at", "alert_count")
    list_filter = ("source", "status")
    readonly_fields = ("payload",)


@admin.register(models.RejectedDelivery)
class RejectedDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "source", "reason", "status_code", "remote_addr")
    list_filter = ("source", "reason")
