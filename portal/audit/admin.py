"""The admin site either writes audit rows or cannot change a model.

`AuditedAdmin` is for configuration that has no page of its own (channels, escalation, mappings,
check settings, phases): every add, change and delete through the admin, list edits and bulk
deletes included, writes an audit row in the admin's own transaction, with the changed fields
before and after (encrypted fields only as "changed"). `ReadOnlyAdmin` is for state that only the
services may change (incidents, deliveries): the admin shows it and nothing else. The audit log
itself is read-only here like everywhere.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models

from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.cloud.fields import EncryptedTextField

REDACTED = "(encrypted)"


def snapshot(obj: models.Model | None) -> dict[str, Any] | None:
    """The row's concrete fields, encrypted ones redacted (the audit log shows who changed them, not the value)."""
    if obj is None:
        return None
    out = {}
    for field in obj._meta.concrete_fields:
        value = getattr(obj, field.attname)
        out[field.attname] = (REDACTED if value else "") if isinstance(field, EncryptedTextField) else value
    return out


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class AuditedAdmin(admin.ModelAdmin):
    def _verb(self, action: str) -> str:
        return f"admin.{self.model._meta.label_lower}.{action}"

    def save_model(self, request, obj, form, change):
        if change:
            # Read again: the form has already put the new values on `obj`.
            obj._audit_before = snapshot(type(obj)._base_manager.filter(pk=obj.pk).first())
        super().save_model(request, obj, form, change)

    def log_addition(self, request, obj, message):
        audit_record(actor=request.user, verb=self._verb("add"), target=obj, after=snapshot(obj), extra={"admin": message})
        return super().log_addition(request, obj, message)

    def log_change(self, request, obj, message):
        before, after = getattr(obj, "_audit_before", None) or {}, snapshot(obj) or {}
        changed = sorted(k for k in after if before.get(k) != after[k])
        audit_record(actor=request.user, verb=self._verb("change"), target=obj,
                     before={k: before.get(k) for k in changed}, after={k: after[k] for k in changed}, extra={"admin": message})
        return super().log_change(request, obj, message)

    def log_deletions(self, request, queryset):
        for obj in queryset:
            audit_record(actor=request.user, verb=self._verb("delete"), target=obj, before=snapshot(obj))
        return super().log_deletions(request, queryset)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "actor_label", "verb", "target_type", "target_id", "result")
    list_filter = ("result",)
    search_fields = ("verb", "actor_label", "target_id", "request_id")
