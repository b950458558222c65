"""Named sources of live data for `check` steps.

Each source takes a CheckContext and returns a small dict of numbers plus words a person can read
at 3 a.m.; `run_check` wraps it so an unreachable cloud, metrics backend or app answers with a
message ("unavailable") instead of an exception. The result is what gets saved as evidence.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from string import Template
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from deployments import selectors as deployment_selectors
from portal.cloud import aws
from portal.cloud import metrics as cloud_metrics
from portal.cloud.clients import client
from portal.health import thresholds
from portal.health.selectors import service_statuses
from portal.phases.selectors import current_phase

log = logging.getLogger(__name__)

COLOURS = ("blue", "green")


@dataclass
class CheckContext:
    environment: Any = None  # portal.cloud.models.Environment or None
    incident: Any = None
    params: dict = field(default_factory=dict)


class SourceUnavailable(Exception):
    """The source cannot answer (no environment, backend down, not collected); the message is shown as is."""


def _result(status: str, words: str, data: dict | None = None) -> dict:
    return {"status": status, "words": words, "data": data or {}}


def _need_env(ctx: CheckContext):
    if ctx.environment is None:
        raise SourceUnavailable("No environment is attached to this run, so there is no live data to show.")
    return ctx.environment


def _metrics(ctx: CheckContext):
    return cloud_metrics.metrics_source(_need_env(ctx))


def _thresholds(metric: str) -> dict[str, tuple[str, float]]:
    """{"critical": (comparison, value), "warning": ...} of a metric, from portal.health.thresholds."""
    return {severity: (t.comparison, t.value) for severity, t in thresholds.for_metric(metric).items()}


def _level(metric: str, value: float | None, *, requests: float | None = None) -> str:
    return thresholds.level(metric, value, requests=requests)


def _worst(*levels: str) -> str:
    order = ["unavailable", "unknown", "ok", "info", "warning", "critical"]
    return max(levels, key=order.index) if levels else "unknown"


def _fmt(value: float | None, unit: str, digits: int = 1) -> str:
    if value is None:
        return "no data"
    return f"{value:.{digits}f}{unit}"


def _hour_ago(ms, metric: str, colour: str | None) -> float | None:
    """The metric's value around 60 minutes ago (the 5-minute bucket nearest to it)."""
    try:
        points = ms.series(metric, colour, 70, 300)
    except Exception:  # noqa: BLE001 - an older window is a nice-to-have; fall back to the hour's average
        points = []
    target = timezone.now() - timedelta(minutes=60)
    best = None
    for at, value in points or []:
        if isinstance(at, datetime) and abs((at - target).total_seconds()) <= 600:
            if best is None or abs((at - target).total_seconds()) < abs((best[0] - target).total_seconds()):
                best = (at, value)
    if best is not None:
        return float(best[1])
    return None


def _now_vs_hour_ago(ctx: CheckContext, *, metric: str, getter: str, unit: str, scale: float = 1.0, digits: int = 1) -> dict:
    ms = _metrics(ctx)
    fetch = getattr(ms, getter)
    now = fetch(None, 5)
    per_colour = {c: fetch(c, 5) for c in COLOURS}
    before = _hour_ago(ms, metric, None)
    baseline_kind = "60 minutes ago"
    if before is None:
        before = fetch(None, 60)
        baseline_kind = "average of the last hour"

    def show(v):
        return _fmt(None if v is None else v * scale, unit, digits)

    data = {
        "now": now,
        "hour_ago": before,
        "baseline": baseline_kind,
        "per_colour": per_colour,
        "unit": unit.strip(),
    }
    # A share of requests has its minimum evidence: the request count over the same five minutes.
    counts: dict[str | None, float | None] = {}
    if metric in thresholds.SHARE_OF_REQUESTS:
        counts = {c: ms.request_count(c, 5) for c in (None, *COLOURS)}
        data["requests"] = {("all" if c is None else c): v for c, v in counts.items()}
    colour_levels = {c: _level(metric, v, requests=counts.get(c)) for c, v in per_colour.items()}
    status = _worst(_level(metric, now, requests=counts.get(None)), *colour_levels.values())
    worst_colour = max(
        (c for c in COLOURS if per_colour.get(c) is not None), key=lambda c: per_colour[c], default=None
    )
    data["worst_colour"] = worst_colour
    trend = ""
    if now is not None and before is not None:
        trend = " (rising)" if now > before * 1.2 + 1e-9 else " (falling)" if now < before * 0.8 else " (steady)"
    colour_words = ", ".join(f"{c} {show(v)}" for c, v in per_colour.items())
    words = f"Now {show(now)} ({colour_words}); {baseline_kind}: {show(before)}{trend}."
    marks = _thresholds(metric)
    if marks:
        words += " Thresholds: " + ", ".join(
            f"{lvl} {'>' if cmp_ == 'gt' else '<'} {limit:g}{unit.strip()}" for lvl, (cmp_, limit) in marks.items()
        ) + "."
    return _result(status, words, data)


def error_rate_now_vs_hour_ago(ctx: CheckContext) -> dict:
    return _now_vs_hour_ago(ctx, metric="error_rate", getter="error_rate", unit="%", digits=2)


def p95_now_vs_hour_ago(ctx: CheckContext) -> dict:
    return _now_vs_hour_ago(ctx, metric="p95_response_time", getter="p95_latency", unit=" s", digits=3)


def recent_deployments(ctx: CheckContext) -> dict:
    env = _need_env(ctx)
    minutes = int(ctx.params.get("within_minutes", 60))
    rows = []
    for d in list(deployment_selectors.recent_deployments(env, within_minutes=minutes))[:10]:
        release = getattr(d, "release", None)
        strategy = getattr(d, "strategy", None)
        state = getattr(d, "state", "")
        rows.append(
            {
                "id": str(getattr(d, "public_id", "") or d.pk),
                "version": str(getattr(release, "version", "") or ""),
                "from_colour": getattr(d, "from_colour", ""),
                "colour": getattr(d, "to_colour", ""),
                "status": d.get_state_display() if hasattr(d, "get_state_display") else str(state),
                "state": str(state),
                "strategy": str(getattr(strategy, "name", "") or ""),
                "started_at": (getattr(d, "started_at", None) or d.created_at).isoformat(),
            }
        )
    if not rows:
        return _result("ok", f"No deployments to {env.name} in the last {minutes} minutes.", {"deployments": []})
    first = rows[0]
    words = f"{len(rows)} deployment(s) to {env.name} in the last {minutes} minutes; latest {first['version'] or first['id']}"
    if first["colour"]:
        words += f" to {first['colour']}"
    words += f" ({first['status'].lower()}, {first['strategy'] or 'strategy unknown'}, started {first['started_at'][11:16]} UTC)."
    return _result("warning", words, {"deployments": rows, "latest_colour": first["colour"]})


def external_service_status(ctx: CheckContext) -> dict:
    wanted = [s.lower() for s in ctx.params.get("services", [])]
    rows = []
    for s in service_statuses():
        name = str(s.get("name") or s.get("slug") or "")
        if wanted and not any(w in name.lower() or w == str(s.get("slug", "")).lower() for w in wanted):
            continue
        rows.append({"name": name, "status": str(s.get("status", "unknown")), "reason": str(s.get("reason", "") or "")})
    if not rows:
        return _result("unknown", "No external service checks are configured" + (f" for {', '.join(wanted)}." if wanted else "."), {"services": []})
    bad = [r for r in rows if r["status"] not in ("ok", "up", "operational")]
    if bad:
        words = "Not OK: " + "; ".join(f"{r['name']} {r['status']}" + (f" ({r['reason']})" if r["reason"] else "") for r in bad) + "."
        status = "critical" if any(r["status"] in ("failing", "down", "major_outage") for r in bad) else "warning"
    else:
        words = "All OK: " + ", ".join(r["name"] for r in rows) + "."
        status = "ok"
    return _result(status, words, {"services": rows})


def cpu_memory_per_colour(ctx: CheckContext) -> dict:
    ms = _metrics(ctx)
    per = {}
    levels = []
    for c in COLOURS:
        cpu = ms.cpu(c, 5)
        try:
            memory = ms.value("memory", c, 5)
        except Exception:  # noqa: BLE001 - memory is not a standard CloudWatch EC2 metric; many setups lack it
            memory = None
        per[c] = {"cpu": cpu, "memory": memory}
        levels.append(_level("cpu", cpu))
    words = "; ".join(
        f"{c}: CPU {_fmt(v['cpu'], '%')}, memory {_fmt(v['memory'], '%') if v['memory'] is not None else 'not collected'}"
        for c, v in per.items()
    )
    marks = _thresholds("cpu")
    if marks:
        words += ". CPU thresholds: " + ", ".join(f"{lvl} > {limit:g}%" for lvl, (_, limit) in marks.items())
    return _result(_worst(*levels), words + ".", {"per_colour": per})


def cache_hit_ratio(ctx: CheckContext) -> dict:
    ms = _metrics(ctx)
    now = ms.cache_hit_ratio(5)
    hour = ms.cache_hit_ratio(60)
    words = f"Cache hit ratio now {_fmt(now, '%')}; last hour {_fmt(hour, '%')}."
    marks = _thresholds("cache_hit_ratio")
    if marks:
        words += " " + ", ".join(f"{lvl} below {limit:g}%" for lvl, (_, limit) in marks.items()) + "."
    return _result(_level("cache_hit_ratio", now), words, {"now": now, "hour": hour})


def rds_connections_vs_max(ctx: CheckContext) -> dict:
    env = _need_env(ctx)
    pct = _metrics(ctx).db_connections_pct(5)
    rds = aws.describe_rds(env)
    max_conn = getattr(rds, "max_connections", None)
    used = round(pct * max_conn / 100) if pct is not None and max_conn else None
    words = f"Database connections at {_fmt(pct, '%')} of the maximum"
    if max_conn:
        words += f" (about {used if used is not None else '?'} of {max_conn})"
    words += f"; RDS status {rds.status}, Multi-AZ {'on' if rds.multi_az else 'off'}."
    return _result(
        _level("db_connections", pct),
        words,
        {"pct": pct, "max_connections": max_conn, "used": used, "rds_status": rds.status, "multi_az": rds.multi_az},
    )


# The database's slow queries and lock waits are not CloudWatch metrics of RDS itself: the platform
# publishes the PostgreSQL log to CloudWatch Logs (log_min_duration_statement, log_lock_waits) with
# metric filters that count them into the platform namespace. With Prometheus, postgres_exporter
# and a PromQL query (overridable per step with params.promql) give the same numbers.
DB_LOG_METRICS = {
    "slow_queries": ("SlowQueries", "Sum", "sum(increase(pg_slow_queries_total[$window]))",
                     "log_min_duration_statement lines ('duration: ')"),
    "lock_waits": ("LockWaits", "Maximum", 'sum(pg_stat_activity_count{wait_event_type="Lock"})',
                   "log_lock_waits lines ('still waiting for')"),
}


def _db_log_metric(ctx: CheckContext, key: str) -> tuple[float | None, str]:
    env = _need_env(ctx)
    name, stat, promql, filter_hint = DB_LOG_METRICS[key]
    minutes = int(ctx.params.get("minutes", 15))
    if env.metrics_source == "prometheus":
        ms = _metrics(ctx)
        query = Template(ctx.params.get("promql") or promql).safe_substitute(window=f"{minutes}m")
        data = ms.query(query)
        result = data.get("result") or []
        if not result:
            raise SourceUnavailable(f"Prometheus has no data for {query!r}: is postgres_exporter scraped?")
        raw = result[0]["value"][1] if data.get("resultType") == "vector" else result[1]
        return float(raw), f"Prometheus {query}"
    now = timezone.now()
    answer = client(env, "cloudwatch").get_metric_statistics(
        Namespace=env.platform_namespace, MetricName=name, StartTime=now - timedelta(minutes=minutes), EndTime=now,
        Period=60, Statistics=[stat],
    )
    points = answer.get("Datapoints") or []
    if not points:
        raise SourceUnavailable(
            f"No {name} data in CloudWatch ({env.platform_namespace}) for the last {minutes} minutes: publish the RDS "
            f"PostgreSQL log to CloudWatch Logs with a metric filter counting {filter_hint}, or look at the log directly."
        )
    values = [float(p[stat]) for p in points]
    return (sum(values) if stat == "Sum" else max(values)), f"CloudWatch {env.platform_namespace}/{name}"


def slow_query_count(ctx: CheckContext) -> dict:
    minutes = int(ctx.params.get("minutes", 15))
    value, where = _db_log_metric(ctx, "slow_queries")
    limit = float(ctx.params.get("warn_above", 10))
    status = "warning" if value > limit else "ok"
    words = f"{value:.0f} slow queries in the last {minutes} minutes (look closer above {limit:g})."
    return _result(status, words, {"count": value, "minutes": minutes, "from": where})


def locks(ctx: CheckContext) -> dict:
    value, where = _db_log_metric(ctx, "lock_waits")
    limit = float(ctx.params.get("warn_above", 0))
    status = "warning" if value > limit else "ok"
    words = f"{value:.0f} sessions waiting on locks (most in one minute over the last {int(ctx.params.get('minutes', 15))} minutes)."
    if value > limit:
        words += " Find the blocker in pg_stat_activity and end it if it is stuck."
    return _result(status, words, {"waiting": value, "from": where})


def latest_backup_age(ctx: CheckContext) -> dict:
    env = _need_env(ctx)
    rds = aws.describe_rds(env)
    at = rds.latest_snapshot_at
    max_hours = float(ctx.params.get("max_age_hours", 26))
    data = {"latest_snapshot_at": at.isoformat() if at else None, "retention_days": rds.backup_retention_days}
    if at is None:
        return _result("critical", f"No snapshot of the database found; retention is {rds.backup_retention_days} days.", data)
    age_h = (timezone.now() - at).total_seconds() / 3600
    data["age_hours"] = round(age_h, 2)
    status = "ok" if age_h <= max_hours else "critical"
    if not rds.backup_retention_days:
        status = "critical"
    words = f"Latest snapshot {age_h:.1f} hours old ({at:%Y-%m-%d %H:%M} UTC); retention {rds.backup_retention_days} days"
    words += "." if status == "ok" else f": older than {max_hours:g} hours or retention off: backups are not running as planned."
    return _result(status, words, data)


def listener_weights(ctx: CheckContext) -> dict:
    env = _need_env(ctx)
    weights = aws.get_listener_weights(env)
    live = max(weights, key=lambda c: weights[c]) if weights else None
    words = "Traffic: " + ", ".join(f"{c} {w}%" for c, w in weights.items()) + (f"; live colour {live}." if live else ".")
    return _result("info", words, {"weights": weights, "live_colour": live})


def group_capacity(ctx: CheckContext) -> dict:
    env = _need_env(ctx)
    groups = aws.describe_groups(env)
    data: dict[str, Any] = {"groups": {}}
    parts = []
    status = "ok"
    for colour, g in groups.items():
        data["groups"][colour] = {
            "name": g.name,
            "desired": g.desired,
            "min": g.min_size,
            "max": g.max_size,
            "in_service": g.in_service,
        }
        parts.append(f"{colour}: {g.in_service} in service of {g.desired} desired (min {g.min_size}, max {g.max_size})")
        if g.desired and g.in_service < g.desired:
            status = "warning"
    try:
        phase = current_phase()
        data["phase"] = {"number": phase.number, "name": phase.name, "instances_min": phase.instances_min, "instances_max": phase.instances_max}
        parts.append(f"phase {phase.number} ({phase.name}) allows {phase.instances_min}-{phase.instances_max} per colour")
    except Exception:  # noqa: BLE001,S110 - phase bounds are context only
        pass
    return _result(status, "; ".join(parts) + ".", data)


SOURCES: dict[str, Callable[[CheckContext], dict]] = {
    "error_rate_now_vs_hour_ago": error_rate_now_vs_hour_ago,
    "p95_now_vs_hour_ago": p95_now_vs_hour_ago,
    "recent_deployments": recent_deployments,
    "external_service_status": external_service_status,
    "cpu_memory_per_colour": cpu_memory_per_colour,
    "cache_hit_ratio": cache_hit_ratio,
    "rds_connections_vs_max": rds_connections_vs_max,
    "slow_query_count": slow_query_count,
    "locks": locks,
    "latest_backup_age": latest_backup_age,
    "listener_weights": listener_weights,
    "group_capacity": group_capacity,
}


def run_check(source: str, *, environment=None, incident=None, params: dict | None = None) -> dict:
    """Run one source; never raises. Returns {source, status, words, data, at}."""
    ctx = CheckContext(environment=environment, incident=incident, params=params or {})
    func = SOURCES.get(source)
    at = timezone.now().isoformat()
    if func is None:
        return {"source": source, "status": "unavailable", "words": f"Unknown check source {source!r}.", "data": {}, "at": at}
    try:
        with thresholds.cached():
            out = func(ctx)
    except SourceUnavailable as exc:
        out = _result("unavailable", str(exc))
    except Exception as exc:  # noqa: BLE001 - a dead backend shows as a message in the step, never a 500
        log.warning("check source %s failed: %s", source, exc, exc_info=True)
        out = _result("unavailable", f"Could not read {source.replace('_', ' ')}: {_describe(exc)}")
    out = {"source": source, **out, "at": at}
    return _jsonable(out)


def _describe(exc: Exception) -> str:
    message = str(getattr(exc, "message", "") or exc) or exc.__class__.__name__
    return message[:300]


def _jsonable(value):
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, default=str))
