"""One runner a check kind. A runner returns an Outcome; it never raises (run_check makes sure).

AWS kinds go through portal.cloud.aws, metric thresholds through portal.cloud.metrics, HTTP and
status pages through portal.health.httpclient.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portal import outbound
from portal.cloud import aws
from portal.cloud.clients import client
from portal.cloud.errors import CloudError
from portal.cloud.metrics import metrics_source
from portal.health import httpclient, thresholds
from portal.health.models import Check

log = logging.getLogger(__name__)

COLOUR_METRICS = {"error_rate", "p95_response_time", "cpu", "requests"}
METRIC_LABELS = {
    "error_rate": ("error rate", "%"),
    "p95_response_time": ("P95 response time", " s"),
    "cpu": ("CPU", "%"),
    "db_connections": ("database connections", "% of max"),
    "cache_hit_ratio": ("cache hit ratio", "%"),
    "disk": ("disk usage", "%"),
    "requests": ("requests", ""),
    "users": ("users", ""),
}
COMPARISON_WORDS = {"gt": "above", "gte": "at or above", "lt": "below", "lte": "at or below"}


@dataclass
class Outcome:
    ok: bool
    reason: str
    latency_ms: float | None = None
    value: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"


# ---------------------------------------------------------------------------------------------
# External services


def _allow_private(check: Check) -> bool:
    """From data: the outbound policy of the environment whose URL this is (the one that owns the
    mirror a check was pointed at, see check_url_point), else the check's own environment."""
    env = check.outbound_environment or check.environment
    return outbound.allows_private_targets(env)


def run_http(check: Check, timeout: float) -> Outcome:
    cfg = check.config or {}
    url = cfg.get("url", "")
    if not url:
        return Outcome(False, "no URL configured")
    expect = cfg.get("expect_status", 200)
    expected = {int(x) for x in (expect if isinstance(expect, list) else [expect])}
    allow_private = _allow_private(check)
    res = httpclient.fetch(url, allow_private=allow_private, method=cfg.get("method", "GET"), timeout=timeout,
                           headers=check.request_headers() or None, body=cfg.get("body"))
    detail: dict[str, Any] = {"url": outbound.redact_url(url), "status": res.status}
    if res.error:
        return Outcome(False, res.error, res.elapsed_ms, detail=detail)
    if res.status not in expected:
        return Outcome(False, f"answered HTTP {res.status} {res.reason}, expected {', '.join(str(x) for x in sorted(expected))}",
                       res.elapsed_ms, detail=detail)
    needle = cfg.get("body_contains")
    if needle and needle not in res.text:
        return Outcome(False, f"answered {res.status} but the body does not contain {needle!r}", res.elapsed_ms, detail=detail)
    limit = cfg.get("latency_ms_max")
    if limit and res.elapsed_ms > float(limit):
        return Outcome(False, f"answered in {res.elapsed_ms:.0f} ms, slower than the {float(limit):.0f} ms limit",
                       res.elapsed_ms, detail=detail)
    min_days = cfg.get("cert_expiry_days")
    if min_days and url.startswith("https://"):
        days, why = httpclient.certificate_days_left(url, allow_private=allow_private, timeout=timeout)
        detail["cert_days_left"] = days
        if days is None:
            return Outcome(False, f"could not read the certificate: {why}", res.elapsed_ms, detail=detail)
        if days < float(min_days):
            return Outcome(False, f"certificate expires in {days:.1f} days (limit {min_days})", res.elapsed_ms,
                           value=days, detail=detail)
    return Outcome(True, f"answered HTTP {res.status} in {res.elapsed_ms:.0f} ms", res.elapsed_ms, detail=detail)


STATUSPAGE_BAD_COMPONENT = {"partial_outage", "major_outage"}


def _parse_json(res: httpclient.FetchResult, what: str) -> tuple[Any, str]:
    if res.error:
        return None, res.error
    if res.status != 200:
        return None, f"{what} answered HTTP {res.status} {res.reason}".rstrip()
    text = res.text.lstrip()
    if "html" in res.content_type.lower() or text[:1] == "<":
        return None, f"{what} answered HTML instead of Statuspage JSON"
    try:
        return json.loads(text), ""
    except ValueError as exc:
        return None, f"{what} answered invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"


def run_statuspage(check: Check, timeout: float) -> Outcome:
    cfg = check.config or {}
    url = cfg.get("url", "")
    if not url:
        return Outcome(False, "no status page URL configured")
    start = time.monotonic()
    allow_private = _allow_private(check)
    res = httpclient.fetch(url, allow_private=allow_private, timeout=timeout)
    data, err = _parse_json(res, "the status page")
    detail: dict[str, Any] = {"url": outbound.redact_url(url), "status": res.status}
    if err:
        return Outcome(False, err, res.elapsed_ms, detail=detail)
    status = data.get("status") if isinstance(data, dict) else None
    indicator = status.get("indicator") if isinstance(status, dict) else None
    if indicator not in ("none", "minor", "major", "critical", "maintenance"):
        return Outcome(False, "the status page JSON has no status.indicator (not a Statuspage v2 document?)",
                       res.elapsed_ms, detail=detail)
    description = str(status.get("description") or indicator)[:200]
    detail["indicator"] = indicator
    fail_on = set(cfg.get("fail_indicators") or ["major", "critical"])
    problems = []
    if indicator in fail_on:
        problems.append(f"{indicator}: {description}")
    wanted = cfg.get("components") or []
    if wanted:
        base = url.rsplit("/api/v2/", 1)[0]
        remaining = max(0.5, timeout - (time.monotonic() - start))
        cres = httpclient.fetch(f"{base}/api/v2/components.json", allow_private=allow_private, timeout=remaining)
        cdata, cerr = _parse_json(cres, "the components endpoint")
        if cerr:
            problems.append(cerr)
        else:
            comps = {c.get("name"): c.get("status") for c in (cdata or {}).get("components", []) if isinstance(c, dict)}
            detail["components"] = {n: comps.get(n, "missing") for n in wanted}
            for name in wanted:
                state = comps.get(name)
                if state is None:
                    problems.append(f"component {name!r} not listed")
                elif state in STATUSPAGE_BAD_COMPONENT:
                    problems.append(f"{name}: {state.replace('_', ' ')}")
    elapsed = (time.monotonic() - start) * 1000.0
    if problems:
        return Outcome(False, "; ".join(problems)[:500], elapsed, detail=detail)
    note = description if indicator == "none" else f"{indicator}: {description}"
    return Outcome(True, note, elapsed, detail=detail)


# ---------------------------------------------------------------------------------------------
# AWS (through portal.cloud.aws only)


def run_asg(check: Check, timeout: float) -> Outcome:
    colour = (check.config or {}).get("colour", "blue")
    groups = aws.describe_groups(check.environment)
    g = groups.get(colour)
    if g is None:
        return Outcome(False, f"no {colour} auto scaling group found")
    healthy = sum(1 for i in g.instances if i.lifecycle_state == "InService" and str(i.health_status).lower() == "healthy")
    detail = {"name": g.name, "desired": g.desired, "in_service": g.in_service, "healthy": healthy,
              "min": g.min_size, "max": g.max_size}
    if g.desired == 0:
        return Outcome(True, f"{g.name}: scaled to zero (idle colour)", value=0, detail=detail)
    if healthy < g.desired:
        return Outcome(False, f"{g.name}: {healthy} healthy in service of {g.desired} desired", value=healthy, detail=detail)
    return Outcome(True, f"{g.name}: {healthy}/{g.desired} in service and healthy", value=healthy, detail=detail)


def run_target_health(check: Check, timeout: float) -> Outcome:
    colour = (check.config or {}).get("colour", "blue")
    targets = aws.describe_target_health(check.environment, colour)
    weights = aws.get_listener_weights(check.environment)
    weight = int(weights.get(colour, 0) or 0)
    healthy = [t for t in targets if t.state == "healthy"]
    unhealthy = [t for t in targets if t.state == "unhealthy"]
    detail = {"weight": weight, "targets": [{"id": t.id, "state": t.state, "reason": t.reason} for t in targets]}
    if weight > 0 and not healthy:
        return Outcome(False, f"{colour} takes {weight}% of traffic but has no healthy targets", value=0, detail=detail)
    if unhealthy:
        ids = ", ".join(t.id for t in unhealthy[:5])
        return Outcome(False, f"{len(unhealthy)} of {len(targets)} {colour} targets unhealthy ({ids})",
                       value=len(healthy), detail=detail)
    if not targets:
        return Outcome(True, f"{colour}: no targets registered (weight {weight}%)", value=0, detail=detail)
    return Outcome(True, f"{colour}: {len(healthy)}/{len(targets)} targets healthy, weight {weight}%",
                   value=len(healthy), detail=detail)


def run_rds(check: Check, timeout: float) -> Outcome:
    cfg = check.config or {}
    state = aws.describe_rds(check.environment)
    detail = {"status": state.status, "multi_az": state.multi_az, "instance_class": state.instance_class,
              "max_connections": state.max_connections}
    problems = []
    if state.status != "available":
        problems.append(f"status {state.status}")
    if cfg.get("require_multi_az", True) and not state.multi_az:
        problems.append("not Multi-AZ")
    pct = None
    try:

        pct = metrics_source(check.environment).db_connections_pct(5)
    except Exception as exc:  # noqa: BLE001 - connections are extra information here
        detail["connections_error"] = str(exc)[:200]
    detail["connections_pct"] = pct
    limit = float(cfg.get("max_connections_pct", 95))
    if pct is not None and pct > limit:
        problems.append(f"connections at {pct:.0f}% of max (limit {limit:.0f}%)")
    if problems:
        return Outcome(False, "database " + ", ".join(problems), value=pct, detail=detail)
    conn = f", connections {pct:.0f}% of max" if pct is not None else ""
    return Outcome(True, f"available, {'Multi-AZ' if state.multi_az else 'single-AZ'}{conn}", value=pct, detail=detail)


def run_elasticache(check: Check, timeout: float) -> Outcome:
    cfg = check.config or {}
    state = aws.describe_cache(check.environment)
    detail: dict[str, Any] = {"status": state.status, "node_type": state.node_type}
    ratio = None
    try:

        ratio = metrics_source(check.environment).cache_hit_ratio(5)
    except Exception as exc:  # noqa: BLE001
        detail["hit_ratio_error"] = str(exc)[:200]
    detail["hit_ratio"] = ratio
    if state.status != "available":
        return Outcome(False, f"cache status {state.status}", value=ratio, detail=detail)
    minimum = cfg.get("min_hit_ratio")
    if minimum is not None and ratio is not None and ratio < float(minimum):
        return Outcome(False, f"cache hit ratio {ratio:.0f}% below {float(minimum):.0f}%", value=ratio, detail=detail)
    hr = f", hit ratio {ratio:.0f}%" if ratio is not None else ""
    return Outcome(True, f"available{hr}", value=ratio, detail=detail)


def run_alarm(check: Check, timeout: float) -> Outcome:
    names = set((check.config or {}).get("names") or [])
    alarms = aws.list_alarms(check.environment)
    if names:
        alarms = [a for a in alarms if a.name in names]
    firing = [a for a in alarms if a.state == "ALARM"]
    detail = {"alarms": {a.name: a.state for a in alarms},
              "firing_metrics": sorted({a.metric for a in firing if a.metric})}
    if firing:
        return Outcome(False, f"{len(firing)} alarm(s) in ALARM: {', '.join(a.name for a in firing[:5])}",
                       value=len(firing), detail=detail)
    return Outcome(True, f"{len(alarms)} alarm(s), none in ALARM", value=0, detail=detail)


def run_s3(check: Check, timeout: float) -> Outcome:
    """HeadBucket on each of the environment's buckets (through the cloud layer's client)."""
    buckets = dict(check.environment.buckets or {})
    wanted = (check.config or {}).get("buckets") or list(buckets)
    if not wanted:
        return Outcome(False, "the environment names no S3 buckets")
    s3 = client(check.environment, "s3")
    problems = []
    reached = {}
    for key in wanted:
        name = buckets.get(key, key)
        try:
            s3.head_bucket(Bucket=name)
            reached[key] = name
        except CloudError as exc:
            problems.append(f"{key} ({name}): {exc.code}")
    detail = {"reachable": reached, "problems": problems}
    if problems:
        return Outcome(False, f"bucket(s) not reachable: {'; '.join(problems)}"[:500], value=len(reached), detail=detail)
    return Outcome(True, f"{len(reached)} bucket(s) reachable: {', '.join(sorted(reached))}", value=len(reached), detail=detail)


# ---------------------------------------------------------------------------------------------
# Metric thresholds (through portal.cloud.metrics)


def run_metric_threshold(check: Check, timeout: float) -> Outcome:
    rule = check.rule
    if rule is None:
        return Outcome(False, "no threshold rule attached")
    t = thresholds.of_rule(rule)
    label, unit = METRIC_LABELS.get(rule.metric, (rule.metric, rule.unit))
    source = metrics_source(check.environment)
    colours = (check.config or {}).get("colours")
    if colours is None:
        colours = ["blue", "green"] if rule.metric in COLOUR_METRICS else [None]
    readings: dict[str, float | None] = {}
    counts: dict[str, float | None] = {}
    for colour in colours:
        key = colour or "all"
        readings[key] = source.value(rule.metric, colour=colour, minutes=rule.window_minutes)
        if t.needs_evidence and readings[key] is not None:
            counts[key] = source.value("requests", colour=colour, minutes=rule.window_minutes)
    detail: dict[str, Any] = {"readings": readings, "rule": rule.slug, "window_minutes": rule.window_minutes}
    if t.needs_evidence:
        detail.update(requests=counts, min_requests=t.min_requests)
    known = {k: v for k, v in readings.items() if v is not None}
    if not known:
        return Outcome(True, f"no {label} data over the last {rule.window_minutes} min (no traffic)", detail=detail)
    high = rule.comparison in ("gt", "gte")
    crossed = {k: v for k, v in known.items() if t.crossed(v)}
    breached = {k: v for k, v in crossed.items() if t.has_evidence(counts.get(k))}
    words = COMPARISON_WORDS.get(rule.comparison, rule.comparison)
    if breached:
        where, v = max(breached.items(), key=lambda kv: kv[1]) if high else min(breached.items(), key=lambda kv: kv[1])
        on = "" if where == "all" else f" on {where}"
        return Outcome(False, f"{label} {_fmt(v)}{unit}{on} is {words} {_fmt(rule.value)}{unit} over {rule.window_minutes} min",
                       value=v, detail=detail)
    if crossed:
        # The percentage crossed the limit on too few requests to mean anything: noise, not a breach.
        where, v = max(crossed.items(), key=lambda kv: kv[1]) if high else min(crossed.items(), key=lambda kv: kv[1])
        on = "" if where == "all" else f" on {where}"
        return Outcome(True, f"{label} {_fmt(v)}{unit}{on} over only {_fmt(counts.get(where))} requests "
                             f"(a breach needs at least {t.min_requests} in {rule.window_minutes} min)", value=v, detail=detail)
    worst_key, worst = max(known.items(), key=lambda kv: kv[1]) if high else min(known.items(), key=lambda kv: kv[1])
    on = "" if worst_key == "all" else f" ({worst_key})"
    return Outcome(True, f"{label} {_fmt(worst)}{unit}{on}, limit {_fmt(rule.value)}{unit}", value=worst, detail=detail)


RUNNERS: dict[str, Callable[[Check, float], Outcome]] = {
    Check.Kind.HTTP: run_http,
    Check.Kind.STATUSPAGE: run_statuspage,
    Check.Kind.ASG: run_asg,
    Check.Kind.TARGET_HEALTH: run_target_health,
    Check.Kind.RDS: run_rds,
    Check.Kind.ELASTICACHE: run_elasticache,
    Check.Kind.ALARM: run_alarm,
    Check.Kind.S3: run_s3,
    Check.Kind.METRIC_THRESHOLD: run_metric_threshold,
}

AWS_KINDS = {Check.Kind.ASG, Check.Kind.TARGET_HEALTH, Check.Kind.RDS, Check.Kind.ELASTICACHE, Check.Kind.ALARM,
             Check.Kind.S3, Check.Kind.METRIC_THRESHOLD}


def _cloud_error_words(exc: BaseException) -> str | None:
    if isinstance(exc, CloudError):
        return f"AWS {exc.operation} failed ({exc.code}): {exc.message or 'no details'}"[:500]
    return None


def run_check(check: Check) -> Outcome:
    """Run a check once; any exception becomes a failed Outcome with the reason in words."""
    runner = RUNNERS.get(check.kind)
    if runner is None:
        return Outcome(False, f"unknown check kind {check.kind!r}")
    if check.kind in AWS_KINDS and check.environment_id is None:
        return Outcome(False, "this AWS check has no environment")
    start = time.monotonic()
    try:
        out = runner(check, float(check.timeout_seconds))
    except Exception as exc:  # noqa: BLE001 - a check never crashes the poller
        words = _cloud_error_words(exc)
        if words is None:
            log.warning("health check %s raised %s: %s", check.slug, type(exc).__name__, exc)
            words = f"the check could not run: {type(exc).__name__}: {str(exc)[:300]}"
        out = Outcome(False, words)
    if out.latency_ms is None:
        out.latency_ms = (time.monotonic() - start) * 1000.0
    out.reason = (out.reason or ("ok" if out.ok else "failed"))[:500]
    return out
