"""Writes of the cloud app: environment edits. Audited."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from portal.audit.services import audit_record
from portal.cloud.models import Environment

log = logging.getLogger(__name__)

ENV_EDITABLE = ("description", "region", "credentials_mode", "profile", "role_arn", "endpoint_url", "listener_arn",
                "load_balancer_arn", "blue_asg", "green_asg", "blue_target_group_arn", "green_target_group_arn",
                "launch_template_id", "rds_instance_id", "cache_replication_group_id", "buckets", "alb_dimension",
                "blue_tg_dimension", "green_tg_dimension", "platform_namespace", "metrics_source", "prometheus_url",
                "prometheus_queries", "dns_provider", "cdn_provider", "storage_provider", "cloudflare_zone",
                "cloudflare_account_id", "cloudflare_base_url", "grafana_url", "is_production", "dry_run")
# Write-only: stored encrypted, never echoed; the audit row says replaced/cleared/unchanged, never the value.
ENV_SECRETS = ("external_id", "cloudflare_api_token", "grafana_token")


def _check_names(changes: dict, secrets: dict, clear: Iterable[str]) -> None:
    unknown = set(changes) - set(ENV_EDITABLE)
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    unknown = (set(secrets) | set(clear)) - set(ENV_SECRETS)
    if unknown:
        raise ValueError(f"not a secret of an environment: {', '.join(sorted(unknown))}")


def environment_create(*, name: str, changes: dict, actor: Any, secrets: dict[str, str] | None = None) -> Environment:
    """A new environment (a real account is entered by an admin; the sandbox registers itself)."""
    secrets = {k: v for k, v in (secrets or {}).items() if v}
    _check_names(changes, secrets, ())
    with transaction.atomic():
        if Environment.objects.filter(name=name).exists():
            raise ValueError(f"an environment named {name!r} exists already")
        env = Environment(name=name, **changes)
        for k, v in secrets.items():
            setattr(env, k, v)
        env.save()
        audit_record(actor=actor, verb="environment.create", target=env, after={"name": name, **changes},
                     extra={k: "set" if k in secrets else "none" for k in ENV_SECRETS})
    return env


def environment_update(*, environment: Environment, changes: dict, actor: Any, secrets: dict[str, str] | None = None,
                       clear: Iterable[str] = ()) -> Environment:
    """Change an environment's settings. Secrets (ENV_SECRETS) are write-only: a value given replaces the stored
    one, a name in `clear` removes it (clearing wins), anything else keeps it; audited as replaced/cleared/unchanged."""
    secrets = {k: v for k, v in (secrets or {}).items() if v}
    clear = set(clear)
    _check_names(changes, secrets, clear)
    from portal.cloud.clients import reset_cache

    with transaction.atomic():
        env = Environment.objects.select_for_update().get(pk=environment.pk)
        before = {k: getattr(env, k) for k in changes}
        for k, v in changes.items():
            setattr(env, k, v)
        notes = {}
        for k in ENV_SECRETS:
            if k in clear:
                notes[k] = "cleared" if getattr(env, k) else "unchanged"
                setattr(env, k, "")
            elif k in secrets:
                notes[k] = "replaced" if secrets[k] != getattr(env, k) else "unchanged"
                setattr(env, k, secrets[k])
            else:
                notes[k] = "unchanged"
        diff_before = {k: v for k, v in before.items() if v != getattr(env, k)}
        diff_after = {k: getattr(env, k) for k in diff_before}
        touched = [k for k, note in notes.items() if note != "unchanged"]
        if not diff_before and not touched:
            return env
        env.save(update_fields=[*changes, *touched, "updated_at"])
        audit_record(actor=actor, verb="environment.update", target=env, before=diff_before, after=diff_after,
                     extra=notes)
    reset_cache()
    return env
