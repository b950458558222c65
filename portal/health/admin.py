"""Admin for the editable health data: checks (interval, timeout, thresholds, config) and rules."""

from django.contrib import admin

from portal.audit.admin import AuditedAdmin
from portal.health.models import Check, OutboundPolicy, Slo, ThresholdRule


@admin.register(Check)
class CheckAdmin(AuditedAdmin):
    list_display = ("slug", "name", "kind", "group", "environment", "status", "enabled", "interval_seconds",
                    "fail_threshold", "recover_threshold", "severity", "last_result_at")
    list_filter = ("group", "kind", "status", "enabled", "environment")
    search_fields = ("slug", "name")
    readonly_fields = ("status", "status_changed_at", "consecutive_failures", "consecutive_successes", "alert_raised",
                       "claimed_until", "claim_token", "claimed_for", "last_result_at", "last_ok", "last_reason",
                       "last_latency_ms", "last_value", "seeded_hash", "created_at", "updated_at")


@admin.register(ThresholdRule)
class ThresholdRuleAdmin(AuditedAdmin):
    list_display = ("slug", "metric", "comparison", "value", "unit", "window_minutes", "severity", "enabled")
    list_filter = ("severity", "enabled")


@admin.register(Slo)
class SloAdmin(AuditedAdmin):
    list_display = ("slug", "name", "kind", "metric", "comparison", "target", "current_value", "budget_remaining_pct",
                    "evaluated_at")
    readonly_fields = ("current_value", "compliance_pct", "budget_remaining_pct", "burn_rate_1h", "burn_rate_6h",
                       "evaluated_at", "note", "alert_raised", "seeded_hash")


@admin.register(OutboundPolicy)
class OutboundPolicyAdmin(AuditedAdmin):
    """Whether an environment's checks and Prometheus may reach loopback/private addresses (sandbox only)."""

    list_display = ("environment", "allow_private_targets", "updated_at")
    readonly_fields = ("updated_at",)
