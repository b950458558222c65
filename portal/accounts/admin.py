"""Admin for API tokens: a list with last use and expiry, and one action, revoke. Tokens are created
with `manage.py create_api_token` (the raw value is shown once); nothing else is editable here."""

from django.contrib import admin, messages

from portal.accounts.models import ApiToken
from portal.accounts.roles import ADMINISTER
from portal.accounts.services import api_token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "scope", "environments", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("scope",)
    search_fields = ("name", "prefix")
    ordering = ("name",)
    readonly_fields = ("public_id", "name", "scope", "environments", "prefix", "created_by", "created_at",
                       "last_used_at", "expires_at", "revoked_at")
    exclude = ("token_hash",)
    actions = ["revoke"]

    # Portal admins hold `administer`, not Django's per-model permissions.
    def has_module_permission(self, request):
        return request.user.has_perm(ADMINISTER)

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm(ADMINISTER)

    def has_administer_permission(self, request):
        return request.user.has_perm(ADMINISTER)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # audit rows point at tokens; revoke instead

    @admin.action(description="Revoke the selected tokens (their next call gets 401)", permissions=["administer"])
    def revoke(self, request, queryset):
        revoked = [t.name for t in queryset if api_token_revoke(token=t, actor=request.user)]
        self.message_user(request, f"Revoked {len(revoked)} token(s): {', '.join(revoked) or 'none were live'}.",
                          messages.SUCCESS)
