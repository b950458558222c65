"""JSON API (mounted at /api/v1/): deployment strategies, the analysis templates they reference, and
a template's replay over past deployments."""

from __future__ import annotations

from typing import Any

from ninja import Router, Schema, Status

from deployments import strategies as svc
from deployments.models import AnalysisTemplate, Strategy
from portal.api_auth import ScopedTokenAuth, require_scope
from portal.cloud.models import Environment
from portal.errors import NotFound

router = Router()


class TemplateIn(Schema):
    slug: str
    name: str | None = None
    description: str | None = None
    interval_seconds: int | None = None
    failure_limit: int | None = None
    min_requests: int | None = None
    alpha: float | None = None
    pass_confidence: float | None = None
    pass_error_rate_pct: float | None = None
    error_margin_pct: float | None = None
    latency_margin_pct: float | None = None
    max_extension_seconds: int | None = None
    metrics: list[dict[str, Any]] | None = None
    rollback_alarms: list[str] | None = None


class TemplateOut(Schema):
    slug: str
    name: str
    description: str
    interval_seconds: int
    failure_limit: int
    min_requests: int
    alpha: float
    pass_confidence: float
    pass_error_rate_pct: float | None
    error_margin_pct: float
    latency_margin_pct: float
    max_extension_seconds: int
    metrics: list[dict[str, Any]]
    rollback_alarms: list[str]
    false_alarm_rate: float | None
    false_alarm_note: str
    method: str


class StrategyIn(Schema):
    slug: str
    template: str
    name: str | None = None
    kind: str | None = None
    description: str | None = None
    weights: list[int] | None = None
    hold_seconds: list[int] | None = None
    watch_seconds: int | None = None
    prepare_timeout_seconds: int | None = None


class StrategyOut(Schema):
    slug: str
    name: str
    kind: str
    description: str
    weights: list[int]
    hold_seconds: list[int]
    watch_seconds: int
    prepare_timeout_seconds: int
    template: TemplateOut


class ReplayRunOut(Schema):
    seconds: float
    live: str
    replay: str
    reasons: list[str]


class ReplayHoldOut(Schema):
    weight: int
    watching: bool
    live: str
    replay: str
    decided_after: float | None
    runs: list[ReplayRunOut]


class ReplayOut(Schema):
    deployment: str
    version: str
    environment: str
    live_outcome: str
    replay_outcome: str
    same: bool
    holds: list[ReplayHoldOut]


def template_out(t: AnalysisTemplate) -> dict:
    return {**{k: getattr(t, k) for k in svc.TEMPLATE_FIELDS}, "slug": t.slug, "false_alarm_rate": t.false_alarm_rate,
            "false_alarm_note": t.false_alarm_note, "method": svc.method_text(t)}


def strategy_out(s: Strategy) -> dict:
    return {**{k: getattr(s, k) for k in svc.STRATEGY_FIELDS}, "slug": s.slug, "template": template_out(s.template)}


@router.get("/strategies", response=list[StrategyOut], summary="Deployment strategies with their analysis templates")
def list_strategies(request):
    require_scope(request, "read")
    return [strategy_out(s) for s in Strategy.objects.select_related("template").order_by("slug")]


@router.post("/strategies", response={200: StrategyOut, 201: StrategyOut}, auth=ScopedTokenAuth("lead"),
             summary="Create or change a strategy (leads; audited)")
def save_strategy(request, payload: StrategyIn):
    token = require_scope(request, "lead")
    values = payload.dict(exclude={"slug", "template"})
    st, created = svc.strategy_save(slug=payload.slug, values=values, template_slug=payload.template, actor=token)
    return Status(201 if created else 200, strategy_out(Strategy.objects.select_related("template").get(pk=st.pk)))


@router.get("/analysis-templates", response=list[TemplateOut], summary="Analysis templates")
def list_templates(request):
    require_scope(request, "read")
    return [template_out(t) for t in AnalysisTemplate.objects.order_by("slug")]


@router.post("/analysis-templates", response={200: TemplateOut, 201: TemplateOut}, auth=ScopedTokenAuth("lead"),
             summary="Create or change an analysis template (leads; audited)")
def save_template(request, payload: TemplateIn):
    token = require_scope(request, "lead")
    t, created = svc.template_save(slug=payload.slug, values=payload.dict(exclude={"slug"}), actor=token)
    return Status(201 if created else 200, template_out(t))


@router.get("/analysis-templates/{slug}/replay", response=list[ReplayOut],
            summary="What this template would have decided over the last N completed or rolled-back deployments")
def replay_template(request, slug: str, last: int = 10, environment: str = ""):
    require_scope(request, "read")
    t = AnalysisTemplate.objects.filter(slug=slug).first()
    if t is None:
        raise NotFound(f"no analysis template {slug!r}")
    env = None
    if environment:
        env = Environment.objects.filter(name=environment).first()
        if env is None:
            raise NotFound(f"no environment named {environment!r}")
    out = []
    for r in svc.replay(t, environment=env, last=last):
        out.append({"deployment": str(r.deployment.public_id), "version": r.deployment.release.version,
                    "environment": r.deployment.environment.name, "live_outcome": r.live_outcome,
                    "replay_outcome": r.replay_outcome, "same": r.same,
                    "holds": [{"weight": h.weight, "watching": h.watching, "live": h.live, "replay": h.replay,
                               "decided_after": h.decided_after,
                               "runs": [{"seconds": x.seconds, "live": x.live, "replay": x.replay, "reasons": x.reasons}
                                        for x in h.runs]} for h in r.holds]})
    return out
