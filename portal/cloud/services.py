"""Writes of the cloud app: environment edits. Audited."""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction

from portal.audit.services import audit_record
from portal.cloud.models import Environment

log = logging.getLogger(__name__)

ENV_EDITABLE = ("description", "region", "credentials_mode", "profile", "role_arn", "endpoint_url", "listener_arn",
                "load_balancer_arn", "blue_asg", "green_asg", "blue_target_group_arn", "green_target_group_arn",
                "launch_template_id", "rds_instance_id", "cache_replication_group_id", "buckets", "alb_dimension",
                "blue_tg_dimension", "green_tg_dimension", "platform_namespace", "metrics_source", "prometheus_url",
                "prometheus_queries", "is_production", "dry_run")


def environment_create(*, name: str, changes: dict, actor: Any, external_id: str | None = None) -> Environment:
    """A new environment (a real account is entered by an admin; the sandbox registers itself)."""
    unknown = set(changes) - set(ENV_EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    with transaction.atomic():
        if Environment.objects.filter(name=name).exists():
            raise ValueError(f"an environment named {name!r} exists already")
        env = Environment(name=name, **changes)
        if external_id:
            env.external_id = external_id
        env.save()
        audit_record(actor=actor, verb="environment.create", target=env, after={"name": name, **changes},
                     extra={"external_id": "set" if external_id else "none"})
    return env


def environment_update(*, environment: Environment, changes: dict, actor: Any, external_id: str | None = None,
                       clear_external_id: bool = False) -> Environment:
    """Change an environment's settings. The external id is write-only: never echoed, audited as changed/unchanged."""
    unknown = set(changes) - set(ENV_EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    from portal.cloud.clients import reset_cache

    with transaction.atomic():
        env = Environment.objects.select_for_update().get(pk=environment.pk)
        before = {k: getattr(env, k) for k in changes}
        for k, v in changes.items():
            setattr(env, k, v)
        secret_note = "unchanged"
        fields = list(changes)
        if clear_external_id:
            env.external_id = ""
            secret_note = "cleared"
            fields.append("external_id")
        elif external_id:
            env.external_id = external_id
            secret_note = "replaced"
            fields.append("external_id")
        diff_before = {k: v for k, v in before.items() if v != getattr(env, k)}
        diff_after = {k: getattr(env, k) for k in diff_before}
        if not diff_before and secret_note == "unchanged":
            return env
        env.save(update_fields=[*fields, "updated_at"])
        audit_record(actor=actor, verb="environment.update", target=env, before=diff_before, after=diff_after,
                     extra={"external_id": secret_note})
    reset_cache()
    return env
