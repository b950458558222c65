"""Health API, mounted at /api/v1/health: checks with their current status, recent results, SLOs; and the
thresholds at /api/v1/thresholds."""

from __future__ import annotations

from datetime import datetime

from ninja import Router, Schema

from portal.accounts.reauth import any_production
from portal.api_auth import ScopedTokenAuth, require_environment_grant, require_scope
from portal.errors import BadRequest, NotFound
from portal.health import selectors, services, thresholds
from portal.health.models import Check, CheckResult, ThresholdRule
from portal.outbound import redact_url

router = Router()


class ErrorOut(Schema):
    error: str
    detail: str


class CheckOut(Schema):
    slug: str
    name: str
    kind: str
    group: str
    environment: str | None
    enabled: bool
    status: str
    status_changed_at: datetime | None
    severity: str
    interval_seconds: int
    timeout_seconds: float
    fail_threshold: int
    recover_threshold: int
    consecutive_failures: int
    consecutive_successes: int
    last_result_at: datetime | None
    last_ok: bool | None
    last_reason: str
    last_latency_ms: float | None
    next_due_at: datetime | None
    uptime_24h: float | None
    uptime_30d: float | None
    url: str


class ResultOut(Schema):
    created_at: datetime
    ok: bool
    reason: str
    latency_ms: float | None
    value: float | None
    drift_seconds: float | None


class CheckDetailOut(CheckOut):
    config: dict
    results: list[ResultOut]


class ChecksOut(Schema):
    count: int
    counts: dict[str, int]
    results: list[CheckOut]


class SloOut(Schema):
    slug: str
    name: str
    kind: str
    comparison: str
    target: float
    unit: str
    current_value: float | None
    meets_target: bool | None
    budget_remaining_pct: float | None
    compliance_pct: float | None
    burn_rate_1h: float | None
    burn_rate_6h: float | None
    evaluated_at: datetime | None
    note: str


def _check_out(c: Check, up24: dict, up30: dict) -> dict:
    return {
        "slug": c.slug, "name": c.name, "kind": c.kind, "group": c.group,
        "environment": c.environment.name if c.environment_id else None, "enabled": c.enabled,
        "status": c.status, "status_changed_at": c.status_changed_at, "severity": c.severity,
        "interval_seconds": c.interval_seconds, "timeout_seconds": c.timeout_seconds,
        "fail_threshold": c.fail_threshold, "recover_threshold": c.recover_threshold,
        "consecutive_failures": c.consecutive_failures, "consecutive_successes": c.consecutive_successes,
        "last_result_at": c.last_result_at, "last_ok": c.last_ok, "last_reason": c.last_reason,
        "last_latency_ms": c.last_latency_ms, "next_due_at": c.next_due_at,
        "uptime_24h": up24.get(c.pk), "uptime_30d": up30.get(c.pk), "url": redact_url(c.config.get("url", "")),
    }


_STATUSES = {"ok", "failing", "unknown"}


@router.get("/checks", response={200: ChecksOut, 400: ErrorOut}, summary="Every check with its current status")
def list_checks(request, status: str = "", group: str = "", environment: str = ""):
    require_scope(request, "read")
    if status and status not in _STATUSES:
        raise BadRequest(f"status must be one of {', '.join(sorted(_STATUSES))}")
    if group and group not in Check.Group.values:
        raise BadRequest(f"group must be one of {', '.join(Check.Group.values)}")
    qs = Check.objects.select_related("environment").order_by("group", "name")
    if status:
        qs = qs.filter(status=status)
    if group:
        qs = qs.filter(group=group)
    if environment:
        qs = qs.filter(environment__name=environment)
    up24 = selectors.uptime_by_check(hours=24)
    up30 = selectors.uptime_by_check(hours=24 * 30)
    rows = [_check_out(c, up24, up30) for c in qs]
    return {"count": len(rows), "counts": selectors.status_counts(), "results": rows}


@router.get("/checks/{slug}", response={200: CheckDetailOut, 404: ErrorOut}, summary="One check with its recent results")
def get_check(request, slug: str, results: int = 50):
    require_scope(request, "read")
    c = Check.objects.select_related("environment").filter(slug=slug).first()
    if c is None:
        raise NotFound(f"no check {slug!r}")
    limit = max(0, min(results, 500))
    rows: list[CheckResult] = list(selectors.check_history(c, limit=limit)) if limit else []
    out = _check_out(c, selectors.uptime_by_check(hours=24), selectors.uptime_by_check(hours=24 * 30))
    out["config"] = selectors.check_config_for_display(c)  # header values and URL credentials never leave
    out["results"] = [
        {"created_at": r.created_at, "ok": r.ok, "reason": r.reason, "latency_ms": r.latency_ms, "value": r.value,
         "drift_seconds": r.drift_seconds}
        for r in rows
    ]
    return out


@router.post("/checks/{slug}/run", response={202: CheckOut, 404: ErrorOut}, summary="Run a check on the next poll",
             auth=ScopedTokenAuth("actions"))
def run_check_now(request, slug: str):
    token = require_scope(request, "actions")
    c = Check.objects.select_related("environment").filter(slug=slug).first()
    if c is None:
        raise NotFound(f"no check {slug!r}")
    c = services.check_run_now(check=c, actor=token)
    return 202, _check_out(c, {}, {})


@router.get("/slos", response=list[SloOut], summary="Service level objectives: target, current value, budget left")
def list_slos(request):
    require_scope(request, "read")
    return [
        {"slug": s.slug, "name": s.name, "kind": s.kind, "comparison": s.comparison, "target": s.target, "unit": s.unit,
         "current_value": s.current_value, "meets_target": s.meets_target, "budget_remaining_pct": s.budget_remaining_pct,
         "compliance_pct": s.compliance_pct, "burn_rate_1h": s.burn_rate_1h, "burn_rate_6h": s.burn_rate_6h,
         "evaluated_at": s.evaluated_at, "note": s.note}
        for s in selectors.slos()
    ]


# ------------------------------------------------------------------------------------------------
# Thresholds, mounted at /api/v1/thresholds: the values every reader of portal.health.thresholds uses.

thresholds_router = Router()


class ThresholdOut(Schema):
    slug: str
    metric: str
    severity: str
    comparison: str
    value: float
    unit: str
    window_minutes: int
    min_requests: int
    enabled: bool
    summary: str
    readers: list[str]


class ThresholdIn(Schema):
    value: float
    min_requests: int | None = None


def _threshold_out(rule: ThresholdRule) -> dict:
    return {"slug": rule.slug, "metric": rule.metric, "severity": rule.severity, "comparison": rule.comparison,
            "value": rule.value, "unit": rule.unit, "window_minutes": rule.window_minutes,
            "min_requests": rule.min_requests, "enabled": rule.enabled, "summary": rule.summary,
            "readers": [r.name for r in thresholds.readers_of(rule.metric)]}


@thresholds_router.get("", response=list[ThresholdOut], summary="Every threshold with its minimum evidence and its readers")
def threshold_list(request):
    require_scope(request, "read")
    return [_threshold_out(r) for r in ThresholdRule.objects.order_by("severity", "metric", "slug")]


@thresholds_router.put("/{metric}/{severity}", response={200: ThresholdOut, 404: ErrorOut, 422: ErrorOut},
                       auth=ScopedTokenAuth("lead"), summary="Change a threshold's value (every reader follows; audited)")
def threshold_put(request, metric: str, severity: str, payload: ThresholdIn):
    # A threshold applies to every environment: a lead token changes it only with a production grant.
    production = any_production()
    if production is not None:
        require_environment_grant(request.auth, production)
    rule = services.threshold_set(metric=metric, severity=severity, value=payload.value,
                                  min_requests=payload.min_requests, actor=request.auth)
    return _threshold_out(rule)
