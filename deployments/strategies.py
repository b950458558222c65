"""Analysis templates and strategies as data: saving them (leads, audited, validated) and replaying a
template over the recorded analysis runs of past deployments ("what would this template have decided").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction

from deployments import conf
from deployments.errors import InvalidInput, NeedsApproval
from deployments.mechanics import can_approve
from deployments.models import Analysis, AnalysisTemplate, Deployment, DeploymentState, Strategy
from deployments.verdicts import (
    METHOD,
    Evidence,
    Rules,
    extra_metric_reasons,
    judge,
    looks,
    simulate_false_alarms,
)
from portal.audit.services import audit_record
from portal.cloud.metrics import METRICS
from portal.tasking import enqueue

TEMPLATE_FIELDS = ("name", "description", "interval_seconds", "failure_limit", "min_requests", "alpha", "pass_confidence",
                   "pass_error_rate_pct", "error_margin_pct", "latency_margin_pct", "max_extension_seconds", "metrics",
                   "rollback_alarms")
STRATEGY_FIELDS = ("name", "kind", "description", "weights", "hold_seconds", "watch_seconds", "prepare_timeout_seconds")


def _clean_template(values: dict) -> dict:
    problems = []
    v = {k: values[k] for k in TEMPLATE_FIELDS if k in values and values[k] is not None}
    if "interval_seconds" in v and not (1 <= int(v["interval_seconds"]) <= 3600):
        problems.append("interval_seconds must be between 1 and 3600")
    if "failure_limit" in v and not (1 <= int(v["failure_limit"]) <= 100):
        problems.append("failure_limit must be between 1 and 100")
    if "alpha" in v and not (0 < float(v["alpha"]) < 0.5):
        problems.append("alpha must be above 0 and below 0.5 (0.01 is usual)")
    if "pass_confidence" in v and not (0.5 < float(v["pass_confidence"]) < 1):
        problems.append("pass_confidence must be above 0.5 and below 1 (0.9 is usual)")
    if "pass_error_rate_pct" in v and not (0 < float(v["pass_error_rate_pct"]) <= 100):
        problems.append("pass_error_rate_pct must be a percentage above 0")
    limits = {"error_margin_pct": 100, "latency_margin_pct": 1000, "min_requests": 1_000_000, "max_extension_seconds": 86_400}
    for key, top in limits.items():
        if key in v and not (0 <= float(v[key]) <= top):
            problems.append(f"{key} must be between 0 and {top}")
    if len(str(v.get("name", ""))) > 100:
        problems.append("name must be at most 100 characters")
    metrics = v.get("metrics", [])
    if not isinstance(metrics, list):
        problems.append("metrics must be a list")
        metrics = []
    for i, m in enumerate(metrics):
        if not isinstance(m, dict):
            problems.append(f"metrics[{i}] must be an object")
            continue
        kinds = [k for k in ("metric", "promql", "cloudwatch") if m.get(k)]
        if len(kinds) != 1:
            problems.append(f"metrics[{i}] needs exactly one of metric, promql, cloudwatch")
        if m.get("metric") and m["metric"] not in METRICS:
            problems.append(f"metrics[{i}].metric {m['metric']!r} is not one of {', '.join(METRICS)}")
        if m.get("cloudwatch") and not (isinstance(m["cloudwatch"], dict) and m["cloudwatch"].get("namespace")
                                        and m["cloudwatch"].get("metric_name")):
            problems.append(f"metrics[{i}].cloudwatch needs namespace and metric_name")
        comparison = m.get("comparison", "absolute")
        if comparison not in ("absolute", "baseline"):
            problems.append(f"metrics[{i}].comparison must be absolute or baseline")
        if comparison == "absolute" and not isinstance(m.get("max"), int | float):
            problems.append(f"metrics[{i}] compares with an absolute limit and needs a number max")
        if comparison == "baseline" and not isinstance(m.get("margin_pct", 25), int | float):
            problems.append(f"metrics[{i}].margin_pct must be a number")
    alarms = v.get("rollback_alarms", [])
    if not isinstance(alarms, list) or not all(isinstance(a, str) and a.strip() for a in alarms):
        problems.append("rollback_alarms must be a list of alarm names or shell patterns")
    if problems:
        raise InvalidInput("; ".join(problems))
    return v


def template_save(*, slug: str, values: dict, actor) -> tuple[AnalysisTemplate, bool]:
    """Create or change an analysis template (leads). Returns (template, created)."""
    if not can_approve(actor):
        raise NeedsApproval("only a lead or an admin can change how rollouts are judged")
    slug = (slug or "").strip()
    if not slug or len(slug) > 50 or not slug.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("slug must be 1-50 letters, digits, - or _")
    try:
        clean = _clean_template(values)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"bad template: {exc}") from exc
    with transaction.atomic():
        t = AnalysisTemplate.objects.select_for_update().filter(slug=slug).first()
        created = t is None
        before = {} if created else {k: getattr(t, k) for k in TEMPLATE_FIELDS}
        if created:
            clean.setdefault("name", slug)
            t = AnalysisTemplate(slug=slug)
        for k, val in clean.items():
            setattr(t, k, val)
        after = {k: getattr(t, k) for k in TEMPLATE_FIELDS}
        if not created and before == after:
            return t, False
        t.false_alarm_rate = None
        t.false_alarm_note = ""
        t.save()
        audit_record(actor=actor, verb="analysis_template.save", target=t, before=before, after=after,
                     extra={"created": created})
        enqueue("deployments.tasks.template_false_alarms", t.pk)
        return t, created


def strategy_save(*, slug: str, values: dict, template_slug: str, actor) -> tuple[Strategy, bool]:
    """Create or change a strategy (leads): its steps, holds, watch window and the template it uses."""
    if not can_approve(actor):
        raise NeedsApproval("only a lead or an admin can change deployment strategies")
    slug = (slug or "").strip()
    if not slug or len(slug) > 50 or not slug.replace("-", "").replace("_", "").isalnum():
        raise InvalidInput("slug must be 1-50 letters, digits, - or _")
    template = AnalysisTemplate.objects.filter(slug=template_slug).first()
    if template is None:
        raise InvalidInput(f"no analysis template {template_slug!r}")
    with transaction.atomic():
        st = Strategy.objects.select_for_update().filter(slug=slug).first()
        created = st is None
        before = {} if created else {**{k: getattr(st, k) for k in STRATEGY_FIELDS}, "template": st.template.slug}
        if created:
            st = Strategy(slug=slug, name=values.get("name") or slug, kind=values.get("kind") or Strategy.Kind.CANARY)
        for k in STRATEGY_FIELDS:
            if values.get(k) is not None:
                setattr(st, k, values[k])
        st.template = template
        problems = st.validate_steps()
        if any(not isinstance(h, int) or not 0 <= h <= 86_400 for h in st.hold_seconds or []):
            problems.append("each hold must be between 0 and 86400 seconds")
        if not 0 <= int(st.watch_seconds) <= 86_400 or not 1 <= int(st.prepare_timeout_seconds) <= 86_400:
            problems.append("watch_seconds must be 0-86400 and prepare_timeout_seconds 1-86400")
        if len(st.name or "") > 100:
            problems.append("name must be at most 100 characters")
        if st.kind not in Strategy.Kind.values:
            problems.append("kind must be blue_green or canary")
        if problems:
            raise InvalidInput("; ".join(problems))
        after = {**{k: getattr(st, k) for k in STRATEGY_FIELDS}, "template": template.slug}
        if not created and before == after:
            return st, False
        st.save()
        audit_record(actor=actor, verb="strategy.save", target=st, before=before, after=after, extra={"created": created})
        return st, created


def template_false_alarms(template: AnalysisTemplate) -> AnalysisTemplate:
    """Simulate clean steps under the template (sandbox-like traffic) and store the share it fails."""
    trials = int(conf.get("SIMULATION_TRIALS"))
    rps = float(conf.get("SIMULATION_RPS"))
    weight = 0.05
    rules = Rules(alpha=template.alpha, pass_confidence=template.pass_confidence, min_requests=template.min_requests,
                  error_margin_pct=template.error_margin_pct, latency_margin_pct=template.latency_margin_pct,
                  pass_error_rate=template.pass_error_rate_pct)
    hold = max(template.interval_seconds * 4, 60)
    failed, undecided = simulate_false_alarms(
        rules, new_rps=rps * weight, old_rps=rps * (1 - weight), error_rate_pct=0.5, hold_seconds=hold,
        interval_seconds=template.interval_seconds, failure_limit=template.failure_limit,
        max_extension_seconds=template.max_extension_seconds, trials=trials)
    note = (f"{trials} simulated clean 5 % steps at {rps:g} requests/s, both colours at 0.5 % errors, a {hold} s hold: "
            f"{failed:.1%} failed (false alarms), {undecided:.1%} still undecided after the extension")
    AnalysisTemplate.objects.filter(pk=template.pk).update(false_alarm_rate=failed, false_alarm_note=note[:200])
    template.false_alarm_rate, template.false_alarm_note = failed, note[:200]
    return template


# --------------------------------------------------------------------------------------------- replay

@dataclass
class ReplayRun:
    at: object
    seconds: float
    live: str
    replay: str
    reasons: list[str] = field(default_factory=list)


@dataclass
class ReplayHold:
    weight: int
    watching: bool
    live: str  # the last live decision of the hold
    replay: str  # pass | fail | undecided
    decided_after: float | None  # seconds from the hold's start
    runs: list[ReplayRun] = field(default_factory=list)


@dataclass
class ReplayResult:
    deployment: Deployment
    holds: list[ReplayHold]
    live_outcome: str
    replay_outcome: str
    same: bool


def _rules_for(template: AnalysisTemplate, run: Analysis, span_seconds: float) -> Rules:
    t = run.thresholds or {}
    return Rules(alpha=template.alpha / looks(span_seconds, template.interval_seconds), pass_confidence=template.pass_confidence, min_requests=template.min_requests,
                 error_margin_pct=template.error_margin_pct, latency_margin_pct=template.latency_margin_pct,
                 critical_error_rate=t.get("critical_error_rate"), critical_error_min_requests=t.get("critical_error_min_requests"),
                 critical_p95=t.get("critical_p95"), pass_error_rate=template.pass_error_rate_pct)


def replay_deployment(template: AnalysisTemplate, dep: Deployment) -> ReplayResult:
    """The template's verdicts over the deployment's recorded runs, taken at the template's interval."""
    runs = list(Analysis.objects.filter(deployment=dep).order_by("at", "id"))
    groups: dict[tuple[int, bool], list[Analysis]] = {}
    for r in runs:
        groups.setdefault((r.step_index, r.watching), []).append(r)
    holds: list[ReplayHold] = []
    replay_outcome = "completed"
    steps = dep.strategy.steps
    for (step_index, watching), rows in sorted(groups.items(), key=lambda kv: kv[1][0].at):
        start = rows[0].window_started_at or rows[0].at
        hold_s = dep.strategy.watch_seconds if watching else (steps[step_index][1] if 0 <= step_index < len(steps) else 0)
        span = hold_s if watching else hold_s + template.max_extension_seconds
        hold = ReplayHold(weight=rows[0].weight, watching=watching, live=rows[-1].decision, replay="undecided", decided_after=None)
        fails = 0
        last_taken = None
        for r in rows:
            at_end = (r.at - start).total_seconds() >= hold_s - 0.5
            if last_taken is not None and not at_end and (r.at - last_taken).total_seconds() < template.interval_seconds - 0.5:
                continue  # the template runs less often than the live one did
            last_taken = r.at
            v = judge(Evidence(r.new_requests or 0, r.new_errors or 0, r.old_requests or 0, r.old_errors or 0,
                               r.new_p95, r.old_p95), _rules_for(template, r, span))
            decision, reasons = v.decision, list(v.reasons) + extra_metric_reasons(template.metrics, r.extra or {})
            if reasons and decision in ("pass", "inconclusive"):
                decision = "fail"
            seconds = round((r.at - start).total_seconds(), 1)
            hold.runs.append(ReplayRun(at=r.at, seconds=seconds, live=r.decision, replay=decision, reasons=reasons))
            if decision == "critical":
                hold.replay, hold.decided_after = "fail", seconds
                break
            if decision == "fail":
                fails += 1
                if fails >= max(1, template.failure_limit):
                    hold.replay, hold.decided_after = "fail", seconds
                    break
            elif decision == "pass" and (watching or seconds >= hold_s - 0.5):
                hold.replay, hold.decided_after = "pass", seconds
                if not watching:
                    break
        if watching and hold.replay == "undecided" and hold.runs:
            hold.replay = "pass"  # the watch window rolls back only on evidence
        holds.append(hold)
        if hold.replay == "fail":
            replay_outcome = "rolled back"
            break
        if hold.replay == "undecided":
            replay_outcome = "paused"
            break
    live = {DeploymentState.COMPLETED: "completed", DeploymentState.ROLLED_BACK: "rolled back"}.get(dep.state, dep.state)
    return ReplayResult(deployment=dep, holds=holds, live_outcome=live, replay_outcome=replay_outcome,
                        same=live == replay_outcome)


def replay(template: AnalysisTemplate, *, environment=None, last: int = 10) -> list[ReplayResult]:
    """The template over the last N completed or rolled-back deployments that have recorded runs."""
    qs = Deployment.objects.select_related("strategy", "release", "environment").filter(
        state__in=[DeploymentState.COMPLETED, DeploymentState.ROLLED_BACK], analyses__isnull=False).distinct()
    if environment is not None:
        qs = qs.filter(environment=environment)
    return [replay_deployment(template, d) for d in qs.order_by("-created_at")[: max(1, min(last, 50))]]


def method_text(template: AnalysisTemplate) -> str:
    bound = f"{template.pass_error_rate_pct:g} %" if template.pass_error_rate_pct is not None else "the critical error rate"
    return (f"Every {template.interval_seconds} s through each hold and the watch window: {METHOD}. alpha = {template.alpha:g} "
            f"per step, {template.failure_limit} failed run(s) fail the step, pass bound {bound} at "
            f"{template.pass_confidence:.0%} confidence, at least {template.min_requests} requests; an undecided hold "
            f"runs on up to {template.max_extension_seconds} s, then pauses once.")


def hold_seconds_left(dep: Deployment, now) -> float | None:
    """Seconds until the current hold (or watch window) has run its minimum time; None outside one."""
    if dep.hold_started_at is None or dep.state not in (DeploymentState.HOLDING, DeploymentState.WATCHING):
        return None
    if dep.state == DeploymentState.WATCHING:
        length = dep.strategy.watch_seconds
    else:
        length = dep.strategy.steps[dep.step_index][1] if 0 <= dep.step_index < len(dep.strategy.steps) else 0
    left = (dep.hold_started_at + timedelta(seconds=length) - now).total_seconds()
    return max(0.0, math.ceil(left))


def waiting_text(dep: Deployment, last: Analysis | None, now) -> str:
    """Why the rollout's current step is waiting, in a sentence (the deployment page)."""
    st = dep.state
    t = dep.strategy.template
    if st == DeploymentState.PREPARING:
        return (f"Waiting for {dep.target_capacity or '?'} {dep.to_colour} instances to be InService and healthy "
                f"(gives up after {dep.strategy.prepare_timeout_seconds} s).")
    if st in (DeploymentState.HOLDING, DeploymentState.WATCHING):
        left = hold_seconds_left(dep, now)
        where = "the watch window at 100 %" if st == DeploymentState.WATCHING else f"the hold at {dep.current_weight} %"
        text = f"Analysing {where} every {t.interval_seconds} s"
        if left:
            text += f"; its minimum time ends in {left:.0f} s"
        if dep.hold_extended_until and st == DeploymentState.HOLDING:
            text += (f"; the evidence cannot tell yet, so it holds on until {dep.hold_extended_until:%H:%M:%S} UTC and then "
                     f"pauses once with the numbers")
        if dep.failed_runs:
            text += f"; {dep.failed_runs} of {t.failure_limit} failed runs"
        if last is not None:
            text += f". Last run: {last.get_decision_display().lower()}"
            if last.reasons:
                text += f" ({'; '.join(last.reasons)})"
        return text + "."
    if st == DeploymentState.PAUSED:
        return f"Paused: {dep.pause_reason}" if dep.pause_reason else "Paused."
    if st == DeploymentState.SHIFTING:
        return "Changing the listener weights and reading them back."
    return ""
