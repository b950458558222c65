from django.contrib import admin

from portal.incidents import models


class EscalationLevelInline(admin.TabularInline):
    model = models.EscalationLevel
    extra = 0


@admin.register(models.EscalationPolicy)
class EscalationPolicyAdmin(admin.ModelAdmin):
    list_display = ("severity", "name", "repeat", "repeat_after_minutes")
    inlines = [EscalationLevelInline]


@admin.register(models.NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "target", "enabled")


@admin.register(models.RunbookMapping)
class RunbookMappingAdmin(admin.ModelAdmin):
    list_display = ("slug", "priority", "name_pattern", "label_matchers", "runbook_slug")
    list_editable = ("priority", "name_pattern", "runbook_slug")


@admin.register(models.AlertSourceConfig)
class AlertSourceConfigAdmin(admin.ModelAdmin):
    list_display = ("source", "auto_resolve", "grouping_labels")


@admin.register(models.Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = ("title", "status", "severity", "environment", "opened_at")
    list_filter = ("status", "severity")
    search_fields = ("title", "grouping_key")
    readonly_fields = ("public_id", "grouping_key", "opened_at", "acknowledged_at", "resolved_at")


@admin.register(models.AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    list_display = ("public_id", "source", "status", "received_at", "alert_count")
    list_filter = ("source", "status")
    readonly_fields = ("payload",)


@admin.register(models.RejectedDelivery)
class RejectedDeliveryAdmin(admin.ModelAdmin):
    list_display = ("received_at", "source", "reason", "status_code", "remote_addr")
    list_filter = ("source", "reason")
