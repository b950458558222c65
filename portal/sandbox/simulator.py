"""The sandbox's traffic simulator: one `tick()` writes one interval of CloudWatch metrics as AWS would.

It reads the sandbox's real listener weights, group sizes and (simulated) target health, so when
the portal shifts traffic or scales, the numbers follow. Active Drills change them. Given the
same seed (an `rng`) and the same inputs, a tick writes the same numbers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from portal.cloud import aws
from portal.cloud.metrics import RUM_NAMESPACE, RUM_PAGE_LOAD, CloudWatchSource, rum_app_monitor
from portal.cloud.models import Drill, Environment, SimulatorState
from portal.health import thresholds as threshold_reads
from portal.plan.loader import load_plan
from portal.sandbox.costs import costs_sync
from portal.sandbox.platform import current_phase_bounds

log = logging.getLogger(__name__)

COLOURS = ("blue", "green")
USERS_AT_PLAN_RPS = 300_000  # the plan's expected metrics are for 300k users
BASE_ERROR_RATE = 0.001  # 0.1 % of requests fail without any drill
BASE_ELB_ERROR_RATE = 0.0002  # and the load balancer answers 0.02 % with its own 5xx (a target that reset)
BASE_LATENCY_S = 0.06  # median target response time
RPS_PER_INSTANCE_AT_70_CPU = 50.0
LATENCY_SAMPLES = 20  # raw TargetResponseTime values per colour per tick (CloudWatch computes p95 from them)
# A page navigation as CloudWatch RUM measures it (PerformanceNavigationDuration, ms): the browser's own
# work (HTML, assets, render) plus the API calls the page waits on one after another. Drawn from the
# tick's TargetResponseTime samples (no rng draw), so a latency drill slows page loads with it.
PAGE_RENDER_MS = 350.0
PAGE_API_CALLS = 3
DEFAULT_LEVELS = {"error-rate": 10.0, "latency": 3.0, "cpu": 95.0, "db-connections": 97.0, "cache-hit-ratio": 50.0,
                  "unhealthy-instance": 1.0, "service-outage": None}


@dataclass
class Effects:
    error_pct: dict[str, float] = field(default_factory=dict)
    latency_s: dict[str, float] = field(default_factory=dict)
    cpu_pct: dict[str, float] = field(default_factory=dict)
    db_pct: float | None = None
    cache_pct: float | None = None
    unhealthy: list[Drill] = field(default_factory=list)
    outages: list[Drill] = field(default_factory=list)


@dataclass
class TickReport:
    at: dt.datetime
    weights: dict[str, int]
    requests: dict[str, int]
    errors: dict[str, int]
    p95: dict[str, float | None]
    cpu: dict[str, float | None]
    db_connections: int
    cache_hit_ratio: float
    users: int
    rps: float
    datums: int = 0
    drills: list[str] = field(default_factory=list)
    elb_errors: int = 0  # the load balancer's own 5xx (HTTPCode_ELB_5XX_Count)
    page_load_p95: float | None = None  # seconds, of the tick's page navigations (AWS/RUM)

    def line(self) -> str:
        parts = [f"{c}: w={self.weights.get(c, 0)} req={self.requests.get(c, 0)} 5xx={self.errors.get(c, 0)} "
                 f"p95={_fmt(self.p95.get(c))}s cpu={_fmt(self.cpu.get(c))}%" for c in COLOURS]
        return (f"{self.at:%H:%M:%S} users={self.users} rps={self.rps:.1f} " + " | ".join(parts)
                + f" | db={self.db_connections} cache={self.cache_hit_ratio:.1f}%"
                + (f" page-load p95={_fmt(self.page_load_p95)}s" if self.page_load_p95 is not None else "")
                + (f" | drills: {', '.join(self.drills)}" if self.drills else ""))


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def active_drills(env: Environment, now: dt.datetime) -> list[Drill]:
    return list(Drill.objects.filter(environment=env, stopped_at__isnull=True, ends_at__gt=now).order_by("started_at", "pk"))


def _colours_of(drill: Drill) -> tuple[str, ...]:
    return (drill.colour,) if drill.colour else COLOURS


def collect_effects(drills: list[Drill]) -> Effects:
    fx = Effects()
    for d in drills:
        raw_level = d.level if d.level is not None else DEFAULT_LEVELS.get(d.kind)
        level = float(raw_level) if raw_level is not None else 0.0
        if d.kind == Drill.Kind.ERROR_RATE:
            for c in _colours_of(d):
                fx.error_pct[c] = max(fx.error_pct.get(c, 0.0), float(level))
        elif d.kind == Drill.Kind.LATENCY:
            for c in _colours_of(d):
                fx.latency_s[c] = max(fx.latency_s.get(c, 0.0), float(level))
        elif d.kind == Drill.Kind.CPU:
            for c in _colours_of(d):
                fx.cpu_pct[c] = max(fx.cpu_pct.get(c, 0.0), float(level))
        elif d.kind == Drill.Kind.DB_CONNECTIONS:
            fx.db_pct = max(fx.db_pct or 0.0, float(level))
        elif d.kind == Drill.Kind.CACHE_HIT_RATIO:
            fx.cache_pct = float(level) if fx.cache_pct is None else min(fx.cache_pct, float(level))
        elif d.kind == Drill.Kind.UNHEALTHY_INSTANCE:
            fx.unhealthy.append(d)
        elif d.kind == Drill.Kind.SERVICE_OUTAGE:
            fx.outages.append(d)
    return fx


def sync_state(env: Environment, *, now: dt.datetime | None = None, groups: dict | None = None,
               drills: list[Drill] | None = None) -> SimulatorState:
    """Bring the shared state (unhealthy targets, outages) in line with the active drills."""
    now = now or timezone.now()
    drills = active_drills(env, now) if drills is None else drills
    fx = collect_effects(drills)
    if groups is None and (fx.unhealthy or _has_marks(env)):
        groups = aws.describe_groups(env)
    with transaction.atomic():
        state, _ = SimulatorState.objects.select_for_update().get_or_create(environment=env)
        live = {i.id: colour for colour, g in (groups or {}).items() for i in g.instances
                if i.lifecycle_state in ("InService", "Pending")}
        keep_ids = {d.pk for d in fx.unhealthy}
        unhealthy = {iid: mark for iid, mark in (state.unhealthy or {}).items()
                     if mark.get("drill") in keep_ids and iid in live}
        for d in fx.unhealthy:
            want = max(int(d.level or 1), 1)
            have = [iid for iid, m in unhealthy.items() if m.get("drill") == d.pk]
            colour = d.colour or _busiest(groups or {})
            candidates = sorted(iid for iid, c in live.items() if c == colour and iid not in unhealthy)
            picker = random.Random(f"{d.seed}:{d.pk}")
            while len(have) < want and candidates:
                iid = picker.choice(candidates)
                candidates.remove(iid)
                unhealthy[iid] = {"drill": d.pk, "colour": colour, "since": now.isoformat()}
                have.append(iid)
        outages = {}
        for d in fx.outages:
            slug = d.target or "openai"
            outages[slug] = {"drill": d.pk, "since": d.started_at.isoformat() if d.started_at else now.isoformat(),
                             "description": f"Major outage (drill #{d.pk})"}
        changed = []
        if unhealthy != (state.unhealthy or {}):
            state.unhealthy = unhealthy
            changed.append("unhealthy")
        if outages != (state.outages or {}):
            state.outages = outages
            changed.append("outages")
        if changed:
            state.save(update_fields=[*changed, "updated_at"])
    return state


def _has_marks(env: Environment) -> bool:
    return SimulatorState.objects.filter(environment=env).exclude(unhealthy={}).exists()


def _busiest(groups: dict) -> str:
    return max(COLOURS, key=lambda c: (groups[c].in_service if c in groups else 0, c == "blue"))


def _phase() -> dict[str, int]:
    return current_phase_bounds()


def _storage_estimates() -> dict[str, int]:
    return {s["bucket"]: int(s["bytes"]) for s in load_plan().get("storage_estimates", []) if s.get("bucket")}


def bucket_sizes_at(env: Environment, users: float) -> dict[str, int]:
    """Bucket name -> bytes: each bucket's year-one estimate scaled by the users (10 GiB at 300k when it has none)."""
    estimates = _storage_estimates()
    return {bucket: int(estimates.get(logical, 10 * 1024**3) * users / USERS_AT_PLAN_RPS)
            for logical, bucket in (env.buckets or {}).items()}


def r2_usage_sync(env: Environment, sizes: dict[str, int]) -> bool:
    """Tell the sandbox's CloudFlare stand-in what the buckets hold, through its sandbox-only endpoint (it
    may run in another process). Only for storage on CloudFlare at a stand-in on this machine: CloudFlare's
    own API has no such endpoint and never gets the token from here. True when there was nothing to do or it took it."""
    base = (env.cloudflare_base_url or "").rstrip("/")
    if env.storage_provider != Environment.Provider.CLOUDFLARE or not base or not env.cloudflare_api_token:
        return True
    if urlsplit(base).hostname not in ("127.0.0.1", "localhost", "::1"):
        return True
    try:
        resp = requests.put(f"{base}/__sandbox/r2/usage", json={"buckets": sizes}, timeout=3,
                            headers={"Authorization": f"Bearer {env.cloudflare_api_token}"})
    except requests.RequestException as exc:
        log.info("sandbox: the CloudFlare stand-in did not take the R2 usage: %s", exc)
        return False
    if resp.status_code != 200:
        log.info("sandbox: the CloudFlare stand-in refused the R2 usage: %s %s", resp.status_code, resp.text[:200])
        return False
    return True


def _diurnal(now: dt.datetime) -> float:
    hours = now.hour + now.minute / 60.0
    return 1.0 + 0.5 * math.sin((hours - 9.0) / 24.0 * 2 * math.pi)  # 0.5x at night .. 1.5x mid-afternoon UTC


def _stochastic_round(x: float, rng: random.Random) -> int:
    base = math.floor(x)
    return int(base + (1 if rng.random() < x - base else 0))


def tick(env: Environment, now: dt.datetime | None = None, rng: random.Random | None = None, *,
         interval: float | None = None, seed: int | None = None) -> TickReport:
    """Write one interval of metrics for `env` (the sandbox). Returns what was written."""
    now = now or timezone.now()
    rng = rng or random.Random(seed)
    interval = float(interval or settings.SANDBOX_INTERVAL_SECONDS or 5.0)
    drills = active_drills(env, now)
    fx = collect_effects(drills)
    weights = aws.get_listener_weights(env)
    groups = aws.describe_groups(env)
    state = sync_state(env, now=now, groups=groups, drills=drills)
    unhealthy = set(state.unhealthy or {})
    healthy = {c: sum(1 for i in groups[c].instances if i.lifecycle_state == "InService" and i.id not in unhealthy)
               if c in groups else 0 for c in COLOURS}

    # Users and traffic, from the plan's expected metrics scaled to the current phase.
    phase = _phase()
    data = dict(state.data or {})
    users = data.get("users")
    if users is None or not phase["users_min"] <= users <= phase["users_max"]:
        users = phase["users_min"] + 0.5 * (phase["users_max"] - phase["users_min"])
    users = min(float(users) * (1 + 0.00002 * interval / 5.0), float(phase["users_max"]))
    api_rps = _plan_rps()
    rps = api_rps * users / USERS_AT_PLAN_RPS * _diurnal(now)
    rps = max(rps, float(getattr(settings, "SANDBOX_MIN_RPS", 10.0))) * rng.uniform(0.95, 1.05)
    total_requests = rps * interval

    live = {c: weights.get(c, 0) if healthy[c] > 0 else 0 for c in COLOURS}
    wsum = sum(live.values())
    requests = {c: (_stochastic_round(total_requests * live[c] / wsum, rng) if wsum else 0) for c in COLOURS}

    elb: list[dict] = []
    ec2: list[dict] = []
    errors: dict[str, int] = {}
    p95: dict[str, float | None] = {}
    cpu: dict[str, float | None] = {}
    all_samples: list[float] = []
    lb_dims = [{"Name": "LoadBalancer", "Value": env.alb_dimension}]
    for c in COLOURS:
        tg_dims = [{"Name": "TargetGroup", "Value": env.tg_dimension(c)}, *lb_dims]
        group = groups.get(c)
        in_service = [i for i in (group.instances if group else []) if i.lifecycle_state == "InService"]
        per_instance_rps = (requests[c] / interval) / max(healthy[c], 1)
        load_cpu = 8.0 + 62.0 * per_instance_rps / RPS_PER_INSTANCE_AT_70_CPU
        c_cpu = min(100.0, max(fx.cpu_pct.get(c, 0.0), load_cpu) + rng.uniform(-1.5, 1.5)) if in_service else None
        cpu[c] = round(c_cpu, 2) if c_cpu is not None else None
        if requests[c]:
            rate = fx.error_pct.get(c, BASE_ERROR_RATE * 100) / 100.0
            errors[c] = min(requests[c], _stochastic_round(requests[c] * rate, rng))
            slow = 1.0 + max(0.0, (c_cpu or 0) - 70.0) / 30.0 * 2.0
            samples = [round(rng.lognormvariate(math.log(BASE_LATENCY_S * slow), 0.5) + fx.latency_s.get(c, 0.0), 4)
                       for _ in range(LATENCY_SAMPLES)]
            all_samples.extend(samples)
            p95[c] = sorted(samples)[math.ceil(0.95 * len(samples)) - 1]
            elb.append(_datum("RequestCount", tg_dims, now, requests[c], "Count"))
            elb.append(_datum("TargetResponseTime", tg_dims, now, None, "Seconds", values=samples))
            if errors[c]:
                elb.append(_datum("HTTPCode_Target_5XX_Count", tg_dims, now, errors[c], "Count"))
            elb.append(_datum("HTTPCode_Target_2XX_Count", tg_dims, now, requests[c] - errors[c], "Count"))
        else:
            errors[c], p95[c] = 0, None
        elb.append(_datum("HealthyHostCount", tg_dims, now, healthy[c], "Count"))
        elb.append(_datum("UnHealthyHostCount", tg_dims, now, len(in_service) - healthy[c], "Count"))
        if c_cpu is not None and group is not None:
            ec2.append(_datum("CPUUtilization", [{"Name": "AutoScalingGroupName", "Value": group.name}], now, cpu[c], "Percent"))
            for inst in in_service:
                ec2.append(_datum("CPUUtilization", [{"Name": "InstanceId", "Value": inst.id}], now,
                                  round(min(100.0, max(0.0, c_cpu + rng.uniform(-3, 3))), 2), "Percent"))
    total = sum(requests.values())
    if total:
        elb.append(_datum("RequestCount", lb_dims, now, total, "Count"))
        elb.append(_datum("TargetResponseTime", lb_dims, now, None, "Seconds", values=all_samples))
        if sum(errors.values()):
            elb.append(_datum("HTTPCode_Target_5XX_Count", lb_dims, now, sum(errors.values()), "Count"))
        # Carried between ticks so low traffic still sees one now and then; no rng draw, so seeded runs stay as they were.
        carry = float(data.get("elb_5xx_carry") or 0.0) + total * BASE_ELB_ERROR_RATE
        elb_errors = int(carry)
        data["elb_5xx_carry"] = round(carry - elb_errors, 6)
        if elb_errors:
            elb.append(_datum("HTTPCode_ELB_5XX_Count", lb_dims, now, elb_errors, "Count"))

    # Page loads in the users' browsers (CloudWatch RUM, the page-load P95 SLO).
    rum: list[dict] = []
    page_load_p95 = None
    if all_samples:
        navigations = [round(PAGE_RENDER_MS + PAGE_API_CALLS * 1000.0 * s, 1) for s in all_samples]
        page_load_p95 = round(sorted(navigations)[math.ceil(0.95 * len(navigations)) - 1] / 1000.0, 3)
        rum.append(_datum(RUM_PAGE_LOAD, [{"Name": "application_name", "Value": rum_app_monitor(env)}], now, None,
                          "Milliseconds", values=navigations))

    # Database, cache, disks, storage, platform
    max_conn = aws.default_max_connections(_rds_class(env, data)) or 1000
    in_service_total = sum(g.in_service for g in groups.values())
    db_conn = int(20 + 8 * in_service_total + rps * 0.4 + rng.uniform(-3, 3))
    if fx.db_pct is not None:
        db_conn = max(db_conn, int(max_conn * fx.db_pct / 100.0 + rng.uniform(-2, 2)))
    db_conn = max(0, min(db_conn, max_conn))
    rds_dims = [{"Name": "DBInstanceIdentifier", "Value": env.rds_instance_id}]
    rds_metrics = [_datum("DatabaseConnections", rds_dims, now, db_conn, "Count"),
                   _datum("CPUUtilization", rds_dims, now, round(min(100.0, 12 + rps * 0.25 + rng.uniform(-2, 2)), 2), "Percent"),
                   _datum("FreeStorageSpace", rds_dims, now, int(500 * 1024**3 * 0.62), "Bytes")]
    ratio = fx.cache_pct if fx.cache_pct is not None else 92.0
    ratio = min(100.0, max(0.0, ratio + rng.uniform(-1.0, 1.0)))
    cache_ops = max(int(total * 3), 1)
    hits = int(round(cache_ops * ratio / 100.0))
    cache_metrics = []
    members = data.get("cache_members")
    if members is None:
        members = aws.describe_cache(env).members if env.cache_replication_group_id else []
        data["cache_members"] = members
    for m in members[:1]:  # the primary serves the reads
        d = [{"Name": "CacheClusterId", "Value": m}]
        cache_metrics += [_datum("CacheHits", d, now, hits, "Count"), _datum("CacheMisses", d, now, cache_ops - hits, "Count"),
                          _datum("CacheHitRate", d, now, round(100.0 * hits / cache_ops, 2), "Percent")]
    agent = [_datum("disk_used_percent", [{"Name": "AutoScalingGroupName", "Value": groups[c].name}], now,
                    round(42.0 + rng.uniform(-0.5, 0.5), 2), "Percent") for c in COLOURS if c in groups and groups[c].in_service]
    # The CloudWatch agent's memory gauge, rising with the colour's CPU (no rng draw, as above).
    agent += [_datum("mem_used_percent", [{"Name": "AutoScalingGroupName", "Value": groups[c].name}], now,
                     round(min(100.0, 38.0 + 0.35 * (cpu.get(c) or 0.0)), 2), "Percent")
              for c in COLOURS if c in groups and groups[c].in_service]
    active_users = int(users * 0.05 * _diurnal(now))
    job_seconds = round(18.0 + rng.uniform(0, 8) + 8 * max(fx.latency_s.values(), default=0.0), 2)
    platform_dims = [{"Name": "Environment", "Value": env.name}]
    platform = [_datum("RegisteredUsers", platform_dims, now, int(users), "Count"),
                _datum("ActiveUsers", platform_dims, now, active_users, "Count"),
                _datum("RequestsPerSecond", platform_dims, now, round(total / interval, 2), "Count/Second"),
                _datum("JobPostingSeconds", platform_dims, now, job_seconds, "Seconds")]
    s3 = []
    last_s3 = data.get("s3_at")
    storage_due = (not last_s3 or now - dt.datetime.fromisoformat(last_s3) >= dt.timedelta(hours=1)
                   or now < dt.datetime.fromisoformat(last_s3))
    sizes = bucket_sizes_at(env, users)
    if storage_due:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)  # S3 storage metrics are daily, stamped 00:00 UTC
        for bucket, size in sizes.items():
            s3.append(_datum("BucketSizeBytes", [{"Name": "BucketName", "Value": bucket},
                                                 {"Name": "StorageType", "Value": "StandardStorage"}], midnight, size, "Bytes"))
        data["s3_at"] = now.isoformat()
    if storage_due or not data.get("r2_at"):  # R2 follows the same figures (again at once when the stand-in was away)
        data["r2_at"] = now.isoformat() if r2_usage_sync(env, sizes) else None

    elb_errors = next((int(d["Value"]) for d in elb if d["MetricName"] == "HTTPCode_ELB_5XX_Count"), 0)
    written = 0
    for namespace, datums in (("AWS/ApplicationELB", elb), ("AWS/EC2", ec2), ("AWS/RDS", rds_metrics),
                              ("AWS/ElastiCache", cache_metrics), ("CWAgent", agent), (env.platform_namespace, platform),
                              ("AWS/S3", s3), (RUM_NAMESPACE, rum)):
        written += put_metrics(env, namespace, datums)

    last_alarms = data.get("alarms_at")
    if not last_alarms or abs((now - dt.datetime.fromisoformat(last_alarms)).total_seconds()) >= ALARM_EVERY_SECONDS:
        try:
            data["alarm_states"] = evaluate_alarms(env, now=now)
        except Exception:  # noqa: BLE001 - alarm evaluation must never stop the metrics
            log.exception("sandbox alarm evaluation failed")
        data["alarms_at"] = now.isoformat()
    try:  # Cost Explorer's month to date follows the phase and the cost-spike drills (seeded when they change)
        data["costs"] = costs_sync(env, drills=drills, seeded=data.get("costs"), today=now.date())
    except Exception:  # noqa: BLE001 - cost figures must never stop the metrics
        log.exception("sandbox cost seeding failed")
    data.update(users=users, last={"requests": requests, "errors": errors, "rps": round(rps, 2)})
    SimulatorState.objects.filter(pk=state.pk).update(data=data, ticks=state.ticks + 1, last_tick_at=now)
    return TickReport(at=now, weights=weights, requests=requests, errors=errors, p95=p95, cpu=cpu, db_connections=db_conn,
                      cache_hit_ratio=round(100.0 * hits / cache_ops, 2), users=int(users), rps=round(total / interval, 2),
                      datums=written, drills=[f"{d.kind}{'/' + d.colour if d.colour else ''}" for d in drills],
                      elb_errors=elb_errors, page_load_p95=page_load_p95)


ALARM_EVERY_SECONDS = 30
_COMPARE = {"gt": lambda v, t: v > t, "gte": lambda v, t: v >= t, "lt": lambda v, t: v < t, "lte": lambda v, t: v <= t}


def evaluate_alarms(env: Environment, *, now: dt.datetime) -> dict[str, str]:
    """moto never evaluates alarms: do what CloudWatch would for the sandbox's threshold alarms.

    Each `ftw-<threshold slug>` alarm goes to ALARM when the last minute's value breaches the
    portal's threshold (portal.health.thresholds, the values the alarms were put at) and back to OK
    when it no longer does (no data: left as it is). A share of requests also needs its minute's part
    of the minimum evidence, as the alarm's IF(requests >= ...) expression says.
    """
    thresholds = {t.slug: dataclasses.asdict(t) for t in threshold_reads.all_thresholds()}
    source = CloudWatchSource(env, clock=lambda: now)
    values: dict[str, float | None] = {}
    states = {}
    cw = aws.client(env, "cloudwatch")
    for alarm in aws.list_alarms(env):
        t = thresholds.get(alarm.name.removeprefix("ftw-"))
        if t is None:
            continue
        metric = t["metric"]
        if metric not in values:
            values[metric] = source.value(metric, None, 1)
        value = values[metric]
        if value is None:
            states[alarm.name] = alarm.state
            continue
        breach = _COMPARE.get(t.get("comparison", "gt"), _COMPARE["gt"])(value, float(t["value"]))
        if breach and t.get("min_requests"):
            if "requests" not in values:
                values["requests"] = source.value("requests", None, 1)
            per_minute = math.ceil(int(t["min_requests"]) / max(int(t.get("window_minutes") or 5), 1))
            breach = values["requests"] is None or values["requests"] >= per_minute
        want = "ALARM" if breach else "OK"
        states[alarm.name] = want
        if want != alarm.state:
            cw.set_alarm_state(AlarmName=alarm.name, StateValue=want, StateReason=(
                f"Threshold Crossed: {metric} was {value:.2f} ({t.get('comparison', 'gt')} {t['value']}) "
                "in the last minute (sandbox simulator)" if breach else
                f"Threshold no longer crossed: {metric} was {value:.2f} in the last minute (sandbox simulator)"))
    return states


def _plan_rps() -> float:
    for m in load_plan().get("expected_metrics", []):
        if m.get("slug") == "api-rps":
            return float(m.get("value", 200))
    return 200.0


def _rds_class(env: Environment, data: dict) -> str:
    cls = data.get("rds_class")
    if not cls:
        cls = aws.describe_rds(env).instance_class if env.rds_instance_id else "db.r5.large"
        data["rds_class"] = cls
    return cls


def _datum(name: str, dims: list[dict], at: dt.datetime, value: Any, unit: str, values: list[float] | None = None) -> dict:
    d: dict[str, Any] = {"MetricName": name, "Dimensions": dims, "Timestamp": at, "Unit": unit}
    if values is not None:
        d["Values"] = values
    else:
        d["Value"] = float(value)
    return d


def put_metrics(env: Environment, namespace: str, datums: list[dict]) -> int:
    cw = aws.client(env, "cloudwatch")
    for i in range(0, len(datums), 500):
        cw.put_metric_data(Namespace=namespace, MetricData=datums[i:i + 500])
    return len(datums)
