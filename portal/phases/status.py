"""Where the platform stands against its growth phase: users, instances, cost, storage, metrics, capacity.

Each part reads the cloud through portal.cloud (aws, metrics) and degrades on its own: a part the
cloud cannot answer says so ("unavailable: why") instead of failing the page.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from portal.cloud import aws, cloudflare
from portal.cloud import metrics as cloud_metrics
from portal.cloud.models import Environment
from portal.phases.models import CapacitySample, CostSnapshot, GrowthPhase, PhaseState, UserCountSample
from portal.phases.selectors import all_phases, current_phase, phase_for_users
from portal.plan.loader import load_plan
from portal.plan.models import PlanFact

log = logging.getLogger(__name__)

TARGET_CPU_PERCENT = 70.0  # headroom below the plan's 80 % CPU warning when sizing instances
GROWTH_WINDOW_DAYS = 30
# Expected metrics the metrics source can measure: (plan slug, metric name, window in minutes).
MEASURED = [("api-rps", "requests_per_second", 5), ("daily-active-users", "active_users", 24 * 60)]

# Cost Explorer service names (and plan slugs) -> the plan's cost lines.
SERVICE_TO_PLAN = {
    "compute": "compute", "amazon elastic compute cloud - compute": "compute", "ec2 - other": "compute",
    "amazon elastic compute cloud": "compute", "elastic load balancing": "compute", "amazon ec2": "compute",
    "database": "database", "amazon relational database service": "database", "amazon rds": "database",
    "cache": "cache", "amazon elasticache": "cache",
    "storage": "storage", "amazon simple storage service": "storage", "amazon s3": "storage",
    "bandwidth": "bandwidth", "amazon cloudfront": "bandwidth", "aws data transfer": "bandwidth", "data transfer": "bandwidth",
    "monitoring": "monitoring", "amazoncloudwatch": "monitoring", "amazon cloudwatch": "monitoring",
    "services": "services", "external services (ai, sms, email)": "services",
}


def _plan() -> dict:
    """The plan's facts as an operator may have edited them (PlanFact), else plan.yaml."""
    plan = dict(load_plan())
    rows = PlanFact.objects.filter(section__in=["costs", "storage_estimates", "expected_metrics", "meta"])
    by_section: dict[str, list] = {}
    for f in rows:
        by_section.setdefault(f.section, []).append(f)
    for section in ("storage_estimates", "expected_metrics"):
        if section in by_section:
            plan[section] = [f.data for f in by_section[section]]
    for section in ("costs", "meta"):
        if section in by_section:
            plan[section] = {f.key: f.data for f in by_section[section]}
    return plan


def _get(obj, *names, default=None):
    for n in names:
        if isinstance(obj, dict) and obj.get(n) is not None:
            return obj[n]
        if not isinstance(obj, dict) and getattr(obj, n, None) is not None:
            return getattr(obj, n)
    return default


@dataclass
class Part:
    """One section of the status: its data, or why it is unavailable."""

    data: Any = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def _part(fn, *args) -> Part:
    try:
        return Part(data=fn(*args))
    except Exception as exc:  # the cloud is outside: one failing part must not hide the others
        log.info("phase status part %s unavailable: %s", getattr(fn, "__name__", fn), exc)
        return Part(error=str(exc)[:300] or type(exc).__name__)


@dataclass
class PhaseStatus:
    phase: GrowthPhase
    next_phase: GrowthPhase | None
    state: PhaseState | None
    phases: list[GrowthPhase]
    users: UserCountSample | None
    environment: Any = None
    instances: Part = field(default_factory=Part)
    cost: Part = field(default_factory=Part)
    storage: Part = field(default_factory=Part)
    metrics: Part = field(default_factory=Part)
    capacity: Part = field(default_factory=Part)
    growth: dict | None = None

    @property
    def users_phase(self) -> GrowthPhase | None:
        return phase_for_users(self.users.users) if self.users else None

    @property
    def progress_percent(self) -> int | None:
        if not self.users:
            return None
        span = self.phase.users_max - self.phase.users_min
        return max(0, min(100, int((self.users.users - self.phase.users_min) * 100 / span)))

    @property
    def users_to_next(self) -> int | None:
        if not self.users or self.next_phase is None:
            return None
        return max(self.next_phase.users_min - self.users.users, 0)

    def as_json(self) -> dict:
        def phase_json(p):
            return None if p is None else {
                "number": p.number, "slug": p.slug, "name": p.name, "users_min": p.users_min, "users_max": p.users_max,
                "months": p.months, "instances_min": p.instances_min, "instances_max": p.instances_max,
                "monthly_cost": float(p.monthly_cost), "infrastructure": p.infrastructure,
                "focus": [{"text": f.text, "done": f.done, "done_at": f.done_at} for f in p.focus_items.all()],
            }

        def part_json(part: Part):
            return {"error": part.error} if part.error else part.data

        return {
            "phase": phase_json(self.phase),
            "next_phase": phase_json(self.next_phase),
            "set_by": self.state.set_by_label if self.state else None,
            "set_at": self.state.set_at if self.state else None,
            "users": None if not self.users else {
                "count": self.users.users, "at": self.users.at, "source": self.users.source,
                "phase_by_users": self.users_phase.slug if self.users_phase else None,
                "progress_percent": self.progress_percent, "to_next_phase": self.users_to_next,
            },
            "environment": getattr(self.environment, "name", None),
            "instances": part_json(self.instances),
            "cost": _jsonable(part_json(self.cost)),
            "storage": part_json(self.storage),
            "metrics": part_json(self.metrics),
            "capacity": part_json(self.capacity),
            "growth": self.growth,
        }


def _jsonable(v):
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


# --- the parts -------------------------------------------------------------------------------------

def instances_part(env, phase: GrowthPhase) -> dict:
    groups = aws.describe_groups(env)
    out = {"range": [phase.instances_min, phase.instances_max], "colours": {}, "total_in_service": 0}
    for colour in ("blue", "green"):
        g = groups.get(colour)
        if g is None:
            continue
        in_service = int(_get(g, "in_service", default=0) or 0)
        desired = int(_get(g, "desired", default=0) or 0)
        if in_service == 0 and desired == 0:
            verdict = "idle"
        elif in_service < phase.instances_min:
            verdict = "below"
        elif in_service > phase.instances_max:
            verdict = "above"
        else:
            verdict = "within"
        out["colours"][colour] = {"name": _get(g, "name"), "in_service": in_service, "desired": desired,
                                  "min_size": _get(g, "min_size"), "max_size": _get(g, "max_size"), "verdict": verdict}
        out["total_in_service"] += in_service
    return out


def plan_cost_lines(plan: dict, phase: GrowthPhase) -> list[dict]:
    """The plan's cost table (at 300k users) and each line's share of this phase's budget."""
    costs = plan.get("costs") or {}
    items = costs.get("items") or []
    total = Decimal(str(costs.get("total") or sum(Decimal(str(i["monthly"])) for i in items) or 1))
    lines = []
    for i in items:
        monthly = Decimal(str(i["monthly"]))
        lines.append({"slug": i["slug"], "service": i["service"], "plan_at_300k": monthly,
                      "phase_budget": (monthly * phase.monthly_cost / total).quantize(Decimal("0.01"))})
    return lines


def cost_part(env, phase: GrowthPhase, plan: dict, report=None) -> dict:
    if report is None:
        report = aws.cost_month_to_date(env)
    total = Decimal(str(_get(report, "total", default=0) or 0))
    forecast_raw = _get(report, "forecast")
    forecast = Decimal(str(forecast_raw)) if forecast_raw is not None else None
    by_service_raw = dict(_get(report, "by_service", default={}) or {})
    lines = plan_cost_lines(plan, phase)
    actual: dict[str, Decimal] = {line["slug"]: Decimal("0") for line in lines}
    unmapped: dict[str, Decimal] = {}
    for service, amount in by_service_raw.items():
        slug = SERVICE_TO_PLAN.get(str(service).strip().lower())
        value = Decimal(str(amount or 0))
        if slug in actual:
            actual[slug] += value
        else:
            unmapped[str(service)] = value
    if unmapped and "services" in actual:
        actual["services"] += sum(unmapped.values(), Decimal("0"))
    budget = phase.monthly_cost
    for line in lines:
        line["month_to_date"] = actual.get(line["slug"], Decimal("0"))
        line["over"] = line["month_to_date"] > line["phase_budget"]
    basis = forecast if forecast is not None else total
    return {
        "currency": _get(report, "currency", default="USD"),
        "month_to_date": total, "forecast": forecast, "budget": budget,
        "forecast_over_budget": basis > budget, "over_by": max(basis - budget, Decimal("0")),
        "percent_of_budget": int(basis * 100 / budget) if budget else None,
        "by_service": lines, "other_services": unmapped,
    }


def _approx_bytes(n: int) -> str:
    """The plan's way of writing a size: decimal units, about three digits (~6.16 TB)."""
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= size:
            return f"~{n / size:.3g} {unit}"
    return f"~{n} B"


def storage_part(env, plan: dict) -> list[dict]:
    """Each bucket's use against its year-one estimate, a row a bucket on S3. Storage on CloudFlare: the
    buckets R2 holds are one row, since R2's metrics give the account's total and not a bucket's."""
    buckets = dict(env.buckets or {})
    estimates = [est for est in plan.get("storage_estimates") or [] if est.get("bucket")]
    in_r2: set[str] = set()
    if env.storage_provider == Environment.Provider.CLOUDFLARE:
        held = {b.name for b in cloudflare.r2_buckets(env)}
        in_r2 = {est["bucket"] for est in estimates if buckets.get(est["bucket"], est["bucket"]) in held}
    on_s3 = [est["bucket"] for est in estimates if est["bucket"] not in in_r2]
    sizes = dict(aws.bucket_sizes(env, only=on_s3) or {}) if on_s3 else {}
    rows = []
    for est in estimates:
        logical = est["bucket"]
        if logical in in_r2:
            continue
        bucket = buckets.get(logical, logical)
        used = sizes.get(logical, sizes.get(bucket))
        estimate = int(est["bytes"])
        rows.append({"slug": est["slug"], "name": est["name"], "provider": "S3", "bucket": bucket, "buckets": [bucket],
                     "used_bytes": used, "estimate_bytes": estimate, "estimate_display": est.get("display", ""),
                     "percent": None if used is None else round(used * 100 / estimate, 2)})
    if in_r2:
        r2 = [est for est in estimates if est["bucket"] in in_r2]
        names = [buckets.get(est["bucket"], est["bucket"]) for est in r2]
        used = cloudflare.r2_storage_bytes(env)
        estimate = sum(int(est["bytes"]) for est in r2)
        first = estimates.index(r2[0])  # where its first bucket would have been
        rows.insert(sum(1 for est in estimates[:first] if est["bucket"] not in in_r2), {
            "slug": "r2", "name": " + ".join(est["name"] for est in r2), "provider": "R2", "bucket": ", ".join(names),
            "buckets": names, "used_bytes": used, "estimate_bytes": estimate, "estimate_display": _approx_bytes(estimate),
            "percent": round(used * 100 / estimate, 2) if estimate else None})
    return rows


def metrics_part(env, users: int | None, plan: dict) -> list[dict]:
    """The plan's expected metrics scaled to the current users, beside what the platform measures."""
    target = int((plan.get("meta") or {}).get("target_users") or 300000)
    measured: dict[str, float | None] = {}
    try:
        src = cloud_metrics.metrics_source(env)
        for slug, metric, minutes in MEASURED:
            try:
                v = src.value(metric, None, minutes)
            except Exception as exc:  # one missing metric must not hide the others
                log.info("phase status: %s unavailable: %s", metric, exc)
                v = None
            measured[slug] = round(v, 2) if v is not None else None
    except Exception as exc:
        log.info("phase status: metrics source unavailable: %s", exc)
    rows = []
    for m in plan.get("expected_metrics") or []:
        if users is None:
            expected = None
        elif m.get("ratio_of_users") is not None:
            expected = round(users * float(m["ratio_of_users"]))
        else:
            expected = round(float(m["value"]) * users / target, 2)
        peak = round(float(m["peak"]) * users / target, 2) if m.get("peak") is not None and users is not None else None
        rows.append({"slug": m["slug"], "name": m["name"], "at_300k": m["value"], "expected_now": expected,
                     "expected_peak_now": peak, "measured": measured.get(m["slug"]), "at_least": bool(m.get("at_least"))})
    return rows


def growth_rate(now: datetime | None = None) -> dict | None:
    """Users per day over the recent samples (least squares); None with fewer than two samples a day apart."""
    now = now or timezone.now()
    samples = list(UserCountSample.objects.filter(at__gte=now - timedelta(days=GROWTH_WINDOW_DAYS)).order_by("at").values_list("at", "users"))
    if len(samples) < 2 or (samples[-1][0] - samples[0][0]) < timedelta(hours=12):
        return None
    t0 = samples[0][0]
    xs = [(at - t0).total_seconds() / 86400 for at, _ in samples]
    ys = [float(u) for _, u in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var
    return {"users_per_day": round(slope, 1), "samples": len(samples), "days": round(xs[-1], 1)}


def capacity_part(users: int | None, phase: GrowthPhase, instances: Part, metrics: Part, cpu: float | None,
                  growth: dict | None, plan: dict, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    target = int((plan.get("meta") or {}).get("target_users") or 300000)
    rps_row = next((m for m in (metrics.data or []) if m["slug"] == "api-rps"), None) if metrics.ok else None
    peak_at_target = float(next((m.get("peak") or m["value"] for m in plan.get("expected_metrics") or [] if m["slug"] == "api-rps"), 600))
    peak_rps_per_user = peak_at_target / target
    in_service = instances.data["total_in_service"] if instances.ok and instances.data else None
    measured_rps = rps_row["measured"] if rps_row else None
    out: dict[str, Any] = {"users": users, "expected_peak_rps": round(users * peak_rps_per_user, 1) if users is not None else None,
                           "measured_rps": measured_rps, "in_service": in_service, "cpu_percent": cpu,
                           "range": [phase.instances_min, phase.instances_max]}
    if not (measured_rps and in_service):
        out["note"] = "needs the measured request rate and live instances"
        return out
    per_instance = measured_rps / in_service
    # What one instance can take at the target CPU, scaled from what it does now at the measured CPU.
    capacity = per_instance * (TARGET_CPU_PERCENT / cpu) if cpu and cpu > 1 else per_instance
    out["rps_per_instance"] = round(per_instance, 2)
    out["capacity_per_instance"] = round(capacity, 2)
    needed = math.ceil(out["expected_peak_rps"] / capacity) if capacity > 0 and users is not None else None
    out["instances_needed"] = needed
    if needed is not None:
        out["verdict"] = "below" if needed < phase.instances_min else ("above" if needed > phase.instances_max else "within")
    users_at_capacity = int(phase.instances_max * capacity / peak_rps_per_user) if capacity > 0 else None
    out["users_at_capacity"] = users_at_capacity
    rate = (growth or {}).get("users_per_day")
    if users is not None and rate and rate > 0:
        limits = {"users": phase.users_max}
        if users_at_capacity is not None:
            limits["instances"] = users_at_capacity
        which, limit = min(limits.items(), key=lambda kv: kv[1])
        days = max(limit - users, 0) / rate
        out["outgrow"] = {"by": which, "at_users": limit, "days": round(days, 1),
                          "date": (now + timedelta(days=days)).date().isoformat()}
    elif users is not None:
        out["outgrow"] = None
        out["note"] = "no growth measured yet (needs user samples over at least half a day)"
    return out


def phase_status(*, live: bool = True, environment=None) -> PhaseStatus:
    phase = current_phase()
    phases = all_phases()
    state = PhaseState.objects.select_related("phase").filter(key="platform").first()
    users = UserCountSample.objects.order_by("-at").first()
    nxt = next((p for p in phases if p.number > phase.number), None)
    st = PhaseStatus(phase=phase, next_phase=nxt, state=state, phases=phases, users=users)
    st.growth = growth_rate()
    if not live:
        return st
    env = environment or Environment.objects.filter(name=_default_env_name()).first()
    st.environment = env
    if env is None:
        msg = "no cloud environment is registered (run manage.py sandbox or add one)"
        st.instances = st.cost = st.storage = st.metrics = st.capacity = Part(error=msg)
        return st
    plan = _plan()
    st.instances = _part(instances_part, env, phase)
    st.cost = _part(cost_part, env, phase, plan)
    st.storage = _part(storage_part, env, plan)
    st.metrics = _part(metrics_part, env, users.users if users else None, plan)
    cpu = None
    try:
        cpu = cloud_metrics.metrics_source(env).cpu(None, 5)
    except Exception as exc:
        log.info("phase status: cpu unavailable: %s", exc)
    st.capacity = _part(capacity_part, users.users if users else None, phase, st.instances, st.metrics, cpu, st.growth, plan)
    return st


def _default_env_name() -> str:
    return settings.DEFAULT_ENVIRONMENT


# --- chart data ------------------------------------------------------------------------------------

def users_chart(days: int = 90) -> dict:
    since = timezone.now() - timedelta(days=days)
    rows = list(UserCountSample.objects.filter(at__gte=since).order_by("at").values_list("at", "users"))
    return {
        "t": [int(at.timestamp()) for at, _ in rows], "users": [u for _, u in rows],
        "boundaries": _boundaries_near(rows[-1][1] if rows else 0),
    }


def _boundaries_near(users: int) -> list[dict]:
    """The phase boundaries worth drawing: the ones at or below the users and the next one above."""
    out = []
    for p in all_phases():
        if p.users_min <= 0:
            continue
        out.append({"name": p.name, "users_min": p.users_min})
        if p.users_min > users:
            break
    return out


def instances_chart(env, days: int = 7) -> dict:
    phase = current_phase()
    rows = list(CapacitySample.objects.filter(environment=env, at__gte=timezone.now() - timedelta(days=days)).order_by("at"))
    return {"t": [int(r.at.timestamp()) for r in rows], "blue": [r.blue_in_service for r in rows],
            "green": [r.green_in_service for r in rows], "min": phase.instances_min, "max": phase.instances_max}


def cost_chart(env, months: int = 12) -> dict:
    phase = current_phase()
    rows = list(CostSnapshot.objects.filter(environment=env).order_by("-month")[:months])[::-1]
    services = sorted({k for r in rows for k in (r.by_service or {})})
    return {
        "months": [r.month.isoformat() for r in rows], "t": [int(datetime(r.month.year, r.month.month, 1, tzinfo=timezone.get_current_timezone()).timestamp()) for r in rows],
        "total": [float(r.total) for r in rows], "forecast": [float(r.forecast) if r.forecast is not None else None for r in rows],
        "budget": float(phase.monthly_cost), "services": {s: [float((r.by_service or {}).get(s) or 0) for r in rows] for s in services},
    }
