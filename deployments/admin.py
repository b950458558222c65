"""Admin for the deployments data leads edit: analysis templates and strategies (audited like every admin change)."""

from django.contrib import admin

from deployments.models import AnalysisTemplate, FreezeWindow, Strategy
from portal.audit.admin import AuditedAdmin
from portal.tasking import enqueue


@admin.register(AnalysisTemplate)
class AnalysisTemplateAdmin(AuditedAdmin):
    list_display = ("slug", "name", "interval_seconds", "failure_limit", "min_requests", "alpha", "pass_confidence",
                    "false_alarm_rate")
    readonly_fields = ("false_alarm_rate", "false_alarm_note", "seeded_hash")
    search_fields = ("slug", "name")

    def save_model(self, request, obj, form, change):
        obj.false_alarm_rate, obj.false_alarm_note = None, ""
        super().save_model(request, obj, form, change)
        enqueue("deployments.tasks.template_false_alarms", obj.pk)  # the stated rate follows the change


@admin.register(Strategy)
class StrategyAdmin(AuditedAdmin):
    list_display = ("slug", "name", "kind", "weights", "hold_seconds", "watch_seconds", "template")
    list_select_related = ("template",)
    readonly_fields = ("seeded_hash",)


@admin.register(FreezeWindow)
class FreezeWindowAdmin(AuditedAdmin):
    list_display = ("environment", "starts_at", "ends_at", "rrule", "reason", "ended_at", "created_by_label")
    list_filter = ("environment",)
