from django.contrib import admin

from portal.audit.admin import AuditedAdmin, ReadOnlyAdmin
from portal.phases.models import GrowthPhase, PhaseFocusItem, UserCountSample


class FocusInline(admin.TabularInline):
    model = PhaseFocusItem
    fields = ("position", "text", "done", "done_at")
    readonly_fields = ("done", "done_at")
    extra = 0


@admin.register(GrowthPhase)
class GrowthPhaseAdmin(AuditedAdmin):
    """Operators edit the plan's phases here (seed_defaults keeps edited rows unless --reset); moving phase is on /phases/."""

    list_display = ("number", "name", "users_min", "users_max", "instances_min", "instances_max", "monthly_cost")
    exclude = ("seeded_hash",)
    inlines = [FocusInline]


@admin.register(UserCountSample)
class UserCountSampleAdmin(ReadOnlyAdmin):
    list_display = ("at", "users", "source", "entered_by")
    list_filter = ("source",)
