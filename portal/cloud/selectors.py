"""Reads for the environment pages and API. Each AWS section fails on its own, in words."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from portal.cloud import aws
from portal.cloud.errors import CloudError
from portal.cloud.models import COLOURS, Drill, Environment, SimulatorState


@dataclass
class Section:
    value: Any = None
    error: CloudError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def words(self) -> str:
        return self.error.words if self.error else ""


def _read(fn, *args) -> Section:
    try:
        return Section(fn(*args))
    except CloudError as exc:
        return Section(error=exc)
    except ValueError as exc:
        return Section(error=CloudError("InvalidSetting", getattr(fn, "__name__", "read"), getattr(args[0], "name", "?"), str(exc)))


def active_drills(env: Environment | None = None):
    qs = Drill.objects.filter(stopped_at__isnull=True, ends_at__gt=timezone.now()).select_related("environment")
    return qs.filter(environment=env) if env is not None else qs


def recent_drills(limit: int = 20):
    return Drill.objects.select_related("environment").order_by("-started_at")[:limit]


@dataclass
class Live:
    """What changes by the second: groups, target health, weights, the last minutes' metrics."""

    groups: Section
    weights: Section
    targets: dict[str, Section] = field(default_factory=dict)
    metrics: Section = field(default_factory=Section)

    def colours(self) -> list[dict]:
        rows = []
        groups = self.groups.value or {}
        weights = self.weights.value or {}
        for c in COLOURS:
            t = self.targets.get(c)
            health = {th.id: th for th in (t.value or [])} if t and t.ok else {}
            g = groups.get(c)
            m = (self.metrics.value or {}).get(c, {}) if self.metrics.ok else {}
            rows.append({"colour": c, "group": g, "weight": weights.get(c), "targets": t, "metrics": m,
                         "healthy": sum(1 for th in health.values() if th.state == "healthy") if t and t.ok else None,
                         "instances": [{"i": i, "target": health.get(i.id)} for i in (g.instances if g else [])]})
        return rows


METRIC_MINUTES = 5


def colour_metrics(env: Environment, minutes: int = METRIC_MINUTES) -> dict[str, dict[str, float | None]]:
    from portal.cloud.metrics import metrics_source

    src = metrics_source(env)
    return {c: {"requests": src.request_count(c, minutes), "error_rate": src.error_rate(c, minutes),
                "p95": src.p95_latency(c, minutes), "cpu": src.cpu(c, minutes)} for c in COLOURS}


def live_state(env: Environment) -> Live:
    live = Live(groups=_read(aws.describe_groups, env), weights=_read(aws.get_listener_weights, env))
    if live.groups.ok:
        for c in COLOURS:
            live.targets[c] = _read(aws.describe_target_health, env, c)
    live.metrics = _read(colour_metrics, env)
    return live


def environment_detail(env: Environment) -> dict[str, Any]:
    return {
        "live": live_state(env),
        "rds": _read(aws.describe_rds, env),
        "cache": _read(aws.describe_cache, env),
        "alarms": _read(aws.list_alarms, env),
        "cost": _read(aws.cost_month_to_date, env),
        "buckets": _read(aws.bucket_sizes, env),
        "drills": list(active_drills(env)),
        "simulator": SimulatorState.objects.filter(environment=env).first(),
    }


def environment_json(env: Environment) -> dict[str, Any]:
    """The API's view: groups, listener weights, automation state. Raises CloudError when AWS fails."""
    groups = aws.describe_groups(env)
    weights = aws.get_listener_weights(env)
    out_groups = {}
    for c, g in groups.items():
        targets = aws.describe_target_health(env, c)
        out_groups[c] = {
            "name": g.name, "desired": g.desired, "min_size": g.min_size, "max_size": g.max_size, "in_service": g.in_service,
            "healthy": sum(1 for t in targets if t.state == "healthy"),
            "instances": [{"id": i.id, "lifecycle_state": i.lifecycle_state, "health_status": i.health_status,
                           "availability_zone": i.availability_zone} for i in g.instances],
            "targets": [{"id": t.id, "state": t.state, "reason": t.reason} for t in targets],
        }
    live = [c for c in COLOURS if weights.get(c)]
    return {
        "name": env.name, "region": env.region, "is_production": env.is_production,
        "metrics_source": env.metrics_source,
        "listener": {"arn": env.listener_arn, "weights": weights, "live_colours": live},
        "groups": out_groups,
        "automation": {"paused": env.automation_paused, "reason": env.automation_paused_reason, "dry_run": env.dry_run},
        "drills": [{"id": d.pk, "kind": d.kind, "colour": d.colour or None, "level": d.level, "target": d.target or None,
                    "ends_at": d.ends_at.isoformat()} for d in active_drills(env)],
    }
