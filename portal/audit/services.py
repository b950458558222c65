"""The one way to write an audit row. Call it inside the transaction of the change it records."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from portal import context
from portal.audit.models import AuditEvent


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, default=str))


def actor_fields(actor: Any) -> dict[str, Any]:
    """Map a user, an ApiToken, a 'system:<x>' string or None to the actor columns."""
    from portal.accounts.models import ApiToken

    if actor is None:
        return {"actor": None, "actor_token": None, "actor_label": "system"}
    if isinstance(actor, str):
        return {"actor": None, "actor_token": None, "actor_label": actor[:150]}
    if isinstance(actor, ApiToken):
        return {"actor": None, "actor_token": actor, "actor_label": actor.audit_label}
    if getattr(actor, "is_authenticated", False):
        return {"actor": actor, "actor_token": None, "actor_label": actor.get_username()}
    return {"actor": None, "actor_token": None, "actor_label": "anonymous"}


def audit_record(
    *,
    actor: Any,
    verb: str,
    target: models.Model | tuple[str, str] | None = None,
    before: Any = None,
    after: Any = None,
    extra: dict | None = None,
    result: str = "ok",
) -> AuditEvent:
    """Append an audit event. `target` is a model instance or a (type, id) pair."""
    target_type = target_id = target_label = ""
    if isinstance(target, models.Model):
        target_type = target._meta.label_lower
        target_id = str(getattr(target, "public_id", None) or getattr(target, "slug", None) or target.pk)
        target_label = str(target)[:200]
    elif isinstance(target, tuple):
        target_type, target_id = str(target[0]), str(target[1])
    ctx = context.current()
    return AuditEvent.objects.create(
        **actor_fields(actor),
        verb=verb,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        before=_jsonable(before),
        after=_jsonable(after),
        extra=_jsonable(extra or {}),
        result=result,
        remote_addr=ctx.remote_addr,
        request_id=ctx.request_id,
    )
