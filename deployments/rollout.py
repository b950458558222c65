"""The rollout state machine: one short, idempotent pass at a time (`deployment_advance`).

Each pass locks the environment and the deployment, reloads them, checks the state and does only
what that state still needs; waits (healthy targets, holds, the watch window) are a `wake_at`
time, never a sleep holding a lock. A pass that is run twice, or again after a worker died in the
middle of it, finds the state the last committed pass left and carries on from there.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from deployments import cloudops, conf
from deployments.bounds import phase_bounds
from deployments.errors import AlreadyInProgress, DeploymentError, ImageNotApproved
from deployments.images import require_approved_image
from deployments.mechanics import (
    event_add,
    fmt_weights,
    lock_environment,
    raise_alert,
    scale_apply,
    set_state,
)
from deployments.models import Analysis, AnalysisTemplate, Deployment, DeploymentState
from deployments.rollback import rollback_start
from deployments.verdicts import Evidence, Rules, extra_metric_reasons, judge, looks, metric_name
from portal.actors import Actor
from portal.audit.services import audit_record, audits_failures
from portal.health.thresholds import cached as thresholds_read_once
from portal.health.thresholds import threshold
from portal.incidents.selectors import open_critical_naming_colour
from portal.incidents.services import incident_timeline_add

log = logging.getLogger(__name__)
SYSTEM = Actor.system("rollout")
S = DeploymentState
BASELINE_MINUTES = 5  # the old colour's numbers before the rollout, compared with at 100 %
# The rollout's own alerts never count as "an alarm that rolls it back".
OWN_ALERTS = ("RolloutAnalysisFailed", "RolloutNeedsRollback", "RolloutInconclusive", "DeploymentFailed", "RolloutStalled")


@dataclass
class Verdict:
    decision: str
    reasons: list[str] = field(default_factory=list)
    numbers: dict = field(default_factory=dict)


@audits_failures("deployment.advance", actor=SYSTEM, expected=(DeploymentError,),
                 target=lambda kw: ("deployments.deployment", kw.get("deployment_id")))
def deployment_advance(*, deployment_id: int, now=None) -> str:
    """Move the deployment on as far as it can go right now. Returns its state afterwards."""
    now = now or timezone.now()
    after_commit: list = []
    state = ""
    for _ in range(12):  # bounded: each loop is one transition
        with transaction.atomic():
            dep = Deployment.objects.select_related("environment").get(pk=deployment_id)
            env = lock_environment(dep.environment)
            dep = Deployment.objects.select_for_update(of=("self",)).select_related("strategy", "release", "environment").get(pk=deployment_id)
            dep.environment = env
            state = dep.state
            if state not in (S.PENDING, S.PREPARING, S.SMOKE, S.SHIFTING, S.HOLDING, S.WATCHING, S.SCALING_DOWN):
                break
            if env.automation_paused:
                if not dep.pause_reason.startswith("automation paused"):
                    dep.pause_reason = "automation paused: the rollout holds until it is resumed"
                    dep.save(update_fields=["pause_reason"])
                    event_add(environment=env, deployment=dep, kind="note", at=now,
                              message="Automation is paused on this environment: the rollout holds")
                break
            if dep.pause_reason.startswith("automation paused"):
                dep.pause_reason = ""
                dep.save(update_fields=["pause_reason"])
            if dep.wake_at and dep.wake_at > now:
                break
            handler = HANDLERS[state]
            moved = handler(dep, env, now, after_commit)
            state = dep.state
        if not moved:
            break
    for fn in after_commit:
        try:
            fn()
        except Exception:  # noqa: BLE001
            log.exception("after-commit action of deployment %s failed", deployment_id)
    return state


def _wait(dep: Deployment, seconds: float, now) -> bool:
    dep.wake_at = now + timedelta(seconds=seconds)
    dep.save(update_fields=["wake_at"])
    return False


def _poll() -> float:
    return float(conf.get("POLL_SECONDS"))


# --- states --------------------------------------------------------------------------------------


def _pending(dep: Deployment, env, now, after_commit) -> bool:
    weights = cloudops.read_weights(env)
    if weights.get(dep.to_colour, 0) != 0:
        return _fail(dep, env, now, f"{dep.to_colour} already takes {weights[dep.to_colour]} % of the traffic; it is not idle", after_commit)
    bounds = phase_bounds()
    live = cloudops.capacity(env, dep.from_colour)
    target = max(bounds.instances_min, live.desired, live.in_service)
    baseline: dict[str, Any] = {"from_in_service": live.in_service, "from_desired": live.desired, "phase_min": bounds.instances_min}
    try:
        ms = _metrics(env)
        minutes = BASELINE_MINUTES
        baseline.update({"minutes": minutes, "error_rate": ms.error_rate(dep.from_colour, minutes),
                         "p95": ms.p95_latency(dep.from_colour, minutes), "requests": ms.request_count(dep.from_colour, minutes)})
    except Exception as exc:  # noqa: BLE001 - metrics missing is not a reason to stop here
        baseline["metrics_error"] = str(exc)[:200]
    # Checked again here: the allow-list or "$Latest" may have changed since the request. The checked
    # version number is launched, not "$Latest", which a later version would change under the group.
    try:
        image = require_approved_image(environment=env, image_id=dep.release.image_id,
                                       launch_template_version=dep.release.launch_template_version)
    except ImageNotApproved as exc:
        return _fail(dep, env, now, exc.detail, after_commit)
    spec = cloudops.set_launch_spec(env, dep.to_colour, launch_template_version=image.version,
                                    image_id=dep.release.image_id)
    event_add(environment=env, deployment=dep, kind="step", at=now,
              message=f"{dep.to_colour} now launches {dep.release.version}", data={"launch_spec": spec})
    audit_record(actor=SYSTEM, verb="environment.launch_template", target=env, after=spec,
                 extra={"colour": dep.to_colour, "deployment": str(dep.public_id), "version": dep.release.version})
    idle = cloudops.capacity(env, dep.to_colour)
    baseline["to_desired_before"] = idle.desired
    if idle.desired != target:
        scale_apply(env=env, colour=dep.to_colour, desired=target, actor=SYSTEM, automatic=True, now=now,
                    reason=f"deployment {dep.release.version}: {dep.to_colour} to the live colour's capacity ({target})")
    dep.started_at = dep.started_at or now
    dep.target_capacity = target
    dep.baseline = baseline
    dep.weights = weights
    dep.wake_at = now
    set_state(dep, S.PREPARING, now=now, message=f"Preparing {dep.to_colour}: {target} instances of {dep.release.version}",
              data={"target_capacity": target}, fields=("started_at", "target_capacity", "baseline", "weights", "wake_at"))
    return True


def _preparing(dep: Deployment, env, now, after_commit) -> bool:
    cap = cloudops.capacity(env, dep.to_colour)
    target = dep.target_capacity or 1
    if cap.healthy >= target and cap.in_service >= target:
        set_state(dep, S.SMOKE, now=now, message=f"{dep.to_colour} ready: {cap.in_service} InService, {cap.healthy} healthy targets",
                  data={"in_service": cap.in_service, "healthy": cap.healthy})
        return True
    waited = (now - (dep.state_entered_at or now)).total_seconds()
    if waited > dep.strategy.prepare_timeout_seconds:
        return _fail(dep, env, now, f"{dep.to_colour} had {cap.in_service} InService and {cap.healthy} healthy of {target} "
                                    f"after {waited:.0f} s (timeout {dep.strategy.prepare_timeout_seconds} s)", after_commit)
    return _wait(dep, _poll(), now)


def _smoke(dep: Deployment, env, now, after_commit) -> bool:
    ok, note, data = cloudops.smoke_check(env, dep.to_colour)
    dep.smoke_note = note[:300]
    event_add(environment=env, deployment=dep, kind="smoke", at=now, message=note, data={"ok": ok, **data})
    if not ok:
        return _fail(dep, env, now, f"smoke checks failed: {note}", after_commit)
    dep.wake_at = now
    set_state(dep, S.SHIFTING, now=now, message="Smoke checks passed", fields=("smoke_note", "wake_at"))
    return True


def _shifting(dep: Deployment, env, now, after_commit) -> bool:
    steps = dep.strategy.steps
    nxt = min(dep.step_index + 1, len(steps) - 1)
    weight, hold = steps[nxt]
    if dep.baseline.get("promoted"):
        hold = 0
    asked = {dep.to_colour: weight, dep.from_colour: 100 - weight}
    try:
        seen, tries = cloudops.apply_weights(env, asked)
    except cloudops.WeightsNotApplied as exc:
        event_add(environment=env, deployment=dep, kind="error", at=now,
                  message=f"Step {nxt + 1}: the listener did not take {fmt_weights(asked)}: it shows {fmt_weights(exc.seen)} {exc.error}", data={"asked": asked, "seen": exc.seen})
        audit_record(actor=SYSTEM, verb="environment.weights", target=env, result="error", before={"weights": exc.seen},
                     after={"weights": asked}, extra={"deployment": str(dep.public_id), "step": nxt, "error": exc.error or str(exc)})
        return _analysis_failed(dep, env, now, after_commit, f"weight change to {weight} % did not apply", {"asked": asked, "seen": exc.seen})
    audit_record(actor=SYSTEM, verb="environment.weights", target=env, before={"weights": dep.weights}, after={"weights": seen},
                 extra={"deployment": str(dep.public_id), "step": nxt, "steps": len(steps), "tries": tries})
    dep.step_index = nxt
    dep.weights = seen
    _hold_begin(dep, now)
    dep.wake_at = now + timedelta(seconds=min(hold, dep.strategy.template.interval_seconds))
    if weight == 100:
        dep.switched_at = now
    event_add(environment=env, deployment=dep, kind="weights", at=now,
              message=f"Step {nxt + 1} of {len(steps)}: {weight} % on {dep.to_colour}; listener read back {fmt_weights(seen)} "
                      f"after {tries} tr{'y' if tries == 1 else 'ies'}", data={"step": nxt, "asked": asked, "weights": seen, "tries": tries})
    set_state(dep, S.HOLDING, now=now, message=f"Holding {weight} % for {hold} s", data={"hold_seconds": hold},
              fields=("step_index", "weights", "wake_at", "switched_at", *HOLD_FIELDS))
    return True


HOLD_FIELDS = ("hold_started_at", "next_analysis_at", "failed_runs", "hold_extended_until", "inconclusive_paused")


def _hold_begin(dep: Deployment, now) -> None:
    """A new hold (or the watch window): its evidence starts now."""
    dep.hold_started_at = now
    dep.failed_runs = 0
    dep.hold_extended_until = None
    dep.inconclusive_paused = False
    dep.next_analysis_at = now


def _next_run(dep: Deployment, now, deadline) -> bool:
    """Sleep until the next analysis run (or the end of the hold, if sooner)."""
    nxt = now + timedelta(seconds=dep.strategy.template.interval_seconds)
    dep.next_analysis_at = nxt
    dep.wake_at = min(nxt, deadline) if deadline else nxt
    dep.save(update_fields=["wake_at", "next_analysis_at", "failed_runs", "hold_extended_until"])
    return False


def _judged(dep: Deployment, env, now, after_commit, verdict: Verdict) -> bool | None:
    """A run's verdict applied: True/False when it ended the hold (rolled back), None to carry on."""
    if verdict.decision == "critical":
        return _analysis_failed(dep, env, now, after_commit, "; ".join(verdict.reasons), verdict.numbers)
    if verdict.decision == "fail":
        dep.failed_runs += 1
        limit = max(1, dep.strategy.template.failure_limit)
        if dep.failed_runs >= limit:
            return _analysis_failed(dep, env, now, after_commit,
                                    f"{dep.failed_runs} failed analysis runs (limit {limit}): " + "; ".join(verdict.reasons),
                                    verdict.numbers)
    return None


def _holding(dep: Deployment, env, now, after_commit) -> bool:
    steps = dep.strategy.steps
    weight, hold = steps[dep.step_index]
    last = dep.step_index >= len(steps) - 1
    if hold <= 0 or dep.baseline.get("promoted"):
        event_add(environment=env, deployment=dep, kind="analysis", at=now, message=f"No hold at {weight} %: analysis skipped")
        return _step_passed(dep, env, now, weight, last)
    cause = alarm_cause(dep, env, now)
    if cause:
        return _analysis_failed(dep, env, now, after_commit, cause, {"alarm": cause})
    verdict = analyse(dep, env, now)
    ended = _judged(dep, env, now, after_commit, verdict)
    if ended is not None:
        return ended
    hold_end = (dep.hold_started_at or dep.state_entered_at or now) + timedelta(seconds=hold)
    if now < hold_end:
        return _next_run(dep, now, hold_end)
    if verdict.decision == "pass":
        return _step_passed(dep, env, now, weight, last)
    # The hold is over and the evidence cannot tell yet: hold on (up to a bound), still analysing.
    template = dep.strategy.template
    if dep.hold_extended_until is None:
        dep.hold_extended_until = hold_end + timedelta(seconds=template.max_extension_seconds)
        event_add(environment=env, deployment=dep, kind="analysis", at=now,
                  message=f"Hold at {weight} % extended up to {template.max_extension_seconds} s: " + "; ".join(verdict.reasons),
                  data=verdict.numbers)
    if now < dep.hold_extended_until:
        return _next_run(dep, now, dep.hold_extended_until)
    dep.paused_from = S.HOLDING
    dep.inconclusive_paused = True
    dep.pause_reason = (f"inconclusive at {weight} % after the hold and its {template.max_extension_seconds} s extension: "
                        + "; ".join(verdict.reasons))[:300]
    set_state(dep, S.PAUSED, now=now, message=f"Paused: {dep.pause_reason} (Resume goes on with the same evidence)",
              fields=("paused_from", "pause_reason", "inconclusive_paused", "failed_runs", "hold_extended_until"), data=verdict.numbers)
    after_commit.append(lambda: raise_alert(
        environment=env, key=f"inconclusive:{dep.public_id}", name="RolloutInconclusive", severity="warning",
        summary=f"Deployment {dep.release.version} on {env.name} paused at {weight} %: {'; '.join(verdict.reasons)}",
        deployment=dep))
    return False


def _step_passed(dep: Deployment, env, now, weight: int, last: bool) -> bool:
    if last:
        _hold_begin(dep, now)
        dep.wake_at = now
        dep.switched_at = dep.switched_at or now
        set_state(dep, S.WATCHING, now=now, message=f"{dep.to_colour} has all the traffic; watching for {dep.strategy.watch_seconds} s",
                  fields=("wake_at", "switched_at", *HOLD_FIELDS))
        return True
    dep.wake_at = now
    set_state(dep, S.SHIFTING, now=now, message=f"Analysis passed at {weight} %", fields=("wake_at", "failed_runs"))
    return True


def _watching(dep: Deployment, env, now, after_commit) -> bool:
    """The watch window: runs every interval; only evidence (or an alarm) rolls back, "cannot tell" does not."""
    watch = dep.strategy.watch_seconds
    if watch > 0 and not dep.baseline.get("promoted_unwatched"):
        cause = alarm_cause(dep, env, now)
        if cause:
            return _analysis_failed(dep, env, now, after_commit, cause, {"alarm": cause})
        verdict = analyse(dep, env, now, watching=True)
        ended = _judged(dep, env, now, after_commit, verdict)
        if ended is not None:
            return ended
        end = (dep.hold_started_at or dep.state_entered_at or now) + timedelta(seconds=watch)
        if now < end:
            return _next_run(dep, now, end)
    dep.wake_at = now
    set_state(dep, S.SCALING_DOWN, now=now, message=f"Watch window passed; scaling {dep.from_colour} down",
              fields=("wake_at", "failed_runs"))
    return True


def _scaling_down(dep: Deployment, env, now, after_commit) -> bool:
    weights = cloudops.read_weights(env)
    if weights.get(dep.from_colour, 0) != 0:
        return _fail(dep, env, now, f"{dep.from_colour} still has {weights[dep.from_colour]} % of the traffic; not scaling it down", after_commit)
    action = scale_apply(env=env, colour=dep.from_colour, desired=0, actor=SYSTEM, automatic=True, now=now,
                         reason=f"deployment {dep.release.version} complete: old colour {dep.from_colour} scaled down")
    dep.finished_at = now
    dep.weights = weights
    set_state(dep, S.COMPLETED, now=now, fields=("finished_at", "weights"),
              message=f"Completed: {dep.to_colour} serves {dep.release.version}; {dep.from_colour} scaled to "
                      f"{action.read_back.get('desired', 0)} (read back)", data={"read_back": action.read_back})
    return False


HANDLERS: dict[str, Callable[..., bool]] = {
    S.PENDING: _pending, S.PREPARING: _preparing, S.SMOKE: _smoke, S.SHIFTING: _shifting,
    S.HOLDING: _holding, S.WATCHING: _watching, S.SCALING_DOWN: _scaling_down,
}


def _fail(dep: Deployment, env, now, reason: str, after_commit) -> bool:
    dep.failure_reason = reason[:500]
    dep.finished_at = now
    set_state(dep, S.FAILED, now=now, message=f"Failed: {reason}", fields=("failure_reason", "finished_at"))
    after_commit.append(lambda: raise_alert(
        environment=env, key=f"failed:{dep.public_id}", name="DeploymentFailed", severity="warning",
        summary=f"Deployment {dep.release.version} on {env.name} failed: {reason}", deployment=dep))
    return False


def _analysis_failed(dep: Deployment, env, now, after_commit, reason: str, numbers: dict) -> bool:
    """Roll back automatically and open an incident; with automation paused, page a person instead."""
    summary = f"Deployment {dep.release.version} on {env.name} failed its analysis at {dep.current_weight} %: {reason}"
    if env.automation_paused or env.dry_run:
        mode = "automation paused" if env.automation_paused else "dry-run mode"
        dep.paused_from = dep.state
        dep.pause_reason = f"analysis failed ({mode}: not rolled back automatically): {reason}"[:300]
        set_state(dep, S.PAUSED, now=now, message=f"Paused: {dep.pause_reason}; a person must roll back",
                  fields=("paused_from", "pause_reason"), data=numbers)
        after_commit.append(lambda: _link_incident(dep.pk, raise_alert(
            environment=env, key=f"analysis:{dep.public_id}", name="RolloutNeedsRollback", severity="critical",
            summary=summary + f" ({mode}: roll back by hand)", deployment=dep)))
        return False
    try:
        rollback_start(environment=env, actor=SYSTEM, reason=f"analysis failed: {reason}", deployment=dep, automatic=True)
    except AlreadyInProgress:
        pass  # a person clicked rollback first: one rollback is enough
    after_commit.append(lambda: _link_incident(dep.pk, raise_alert(
        environment=env, key=f"analysis:{dep.public_id}", name="RolloutAnalysisFailed", severity="critical",
        summary=summary + " (rolled back automatically)", deployment=dep)))
    dep.refresh_from_db()
    return False


def _link_incident(deployment_id: int, alert) -> None:
    incident = getattr(alert, "incident", None)
    if incident is None:
        return
    Deployment.objects.filter(pk=deployment_id, incident__isnull=True).update(incident=incident)
    dep = Deployment.objects.select_related("release", "environment").get(pk=deployment_id)
    event_add(environment=dep.environment, deployment=dep, kind="note",
              message=f"Incident opened: {incident.title}", data={"incident": str(incident.public_id)})
    try:
        incident_timeline_add(incident=incident, kind="deployment", actor=SYSTEM,
                              text=f"Deployment {dep.release.version} ({dep.get_state_display().lower()})",
                              data={"deployment": str(dep.public_id), "url": dep.get_absolute_url()})
    except Exception:  # noqa: BLE001
        log.exception("could not add the deployment to incident %s", incident.pk)


# --- analysis ------------------------------------------------------------------------------------


def _metrics(env):
    return cloudops.metrics(env)


def alarm_cause(dep: Deployment, env, now) -> str:
    """Why the rollout must roll back now regardless of its analysis (CodeDeploy's stop-on-alarm), or "".

    A critical incident opened during the rollout whose alerts name the new colour; a CloudWatch alarm
    of the template's list in ALARM; a failing smoke check (when smoke URLs are configured)."""
    since = dep.started_at or dep.created_at
    incident = open_critical_naming_colour(environment=env, colour=dep.to_colour, since=since, exclude_alert_names=OWN_ALERTS)
    if incident is not None:
        return f"critical incident on {dep.to_colour}: {incident.title}"
    patterns = list(dep.strategy.template.rollback_alarms or [])
    if patterns:
        try:
            alarms = cloudops.alarms_in_alarm(env)
        except Exception as exc:  # noqa: BLE001 - an unreadable alarm list is noted, not a rollback
            log.warning("could not read the alarms of %s: %s", env.name, exc)
            alarms = []
        for name, reason in alarms:
            if any(fnmatch.fnmatchcase(name, p) for p in patterns):
                return f"CloudWatch alarm {name} is in ALARM" + (f": {reason}" if reason else "")
    if cloudops.smoke_urls(env):
        ok, note, _ = cloudops.smoke_check(env, dep.to_colour)
        if not ok:
            return f"smoke check failed on {dep.to_colour}: {note}"
    return ""


def _rules(template: AnalysisTemplate, span_seconds: float) -> Rules:
    # The critical rows of portal.health.thresholds (None when a lead disabled one: no absolute limit then).
    with thresholds_read_once():  # both rows from one read of the table, not one read each
        crit_err_t = threshold("error_rate", "critical")
        crit_p95_t = threshold("p95_response_time", "critical")
    return Rules(alpha=template.alpha / looks(span_seconds, template.interval_seconds), pass_confidence=template.pass_confidence, min_requests=template.min_requests,
                 error_margin_pct=template.error_margin_pct, latency_margin_pct=template.latency_margin_pct,
                 critical_error_rate=crit_err_t.value if crit_err_t else None,
                 critical_error_min_requests=(crit_err_t.min_requests or None) if crit_err_t else None,
                 critical_p95=crit_p95_t.value if crit_p95_t else None, pass_error_rate=template.pass_error_rate_pct)


def window_minutes(since, now) -> int:
    """Whole minutes that cover the evidence since `since` (CloudWatch's standard period is a minute)."""
    return max(1, math.ceil((now - since).total_seconds() / 60.0))


def analyse(dep: Deployment, env, now, *, watching: bool = False) -> Verdict:
    """One run: the new colour against the old over the evidence since the hold began, recorded."""
    template: AnalysisTemplate = dep.strategy.template
    since = dep.hold_started_at or dep.state_entered_at or now
    minutes = window_minutes(since, now)
    new, old = dep.to_colour, dep.from_colour
    weight = int(dep.weights.get(new, 0))
    if watching:
        span = dep.strategy.watch_seconds
    else:
        steps = dep.strategy.steps
        span = (steps[dep.step_index][1] if 0 <= dep.step_index < len(steps) else 0) + template.max_extension_seconds
    rules = _rules(template, span)
    ms = _metrics(env)
    n = {
        "new_requests": ms.request_count(new, minutes), "old_requests": ms.request_count(old, minutes),
        "new_error_rate": ms.error_rate(new, minutes), "old_error_rate": ms.error_rate(old, minutes),
        "new_p95": ms.p95_latency(new, minutes), "old_p95": ms.p95_latency(old, minutes),
        "window_minutes": minutes, "since": since.isoformat(),
    }
    n["new_errors"] = _errors(n["new_error_rate"], n["new_requests"])
    n["old_errors"] = _errors(n["old_error_rate"], n["old_requests"])
    # At 100 % the old colour has no traffic of its own: compare with its numbers before the rollout.
    compared_with = "old colour, same window"
    if not n["old_requests"] or n["old_error_rate"] is None:
        b = dep.baseline or {}
        n["old_requests"] = b.get("requests") or 0
        n["old_error_rate"] = b.get("error_rate")
        n["old_errors"] = _errors(b.get("error_rate"), b.get("requests"))
        n["old_p95"] = b.get("p95")
        compared_with = f"old colour before the rollout ({b.get('minutes', BASELINE_MINUTES)} min)"
    n["compared_with"] = compared_with
    ev = Evidence(new_requests=n["new_requests"] or 0, new_errors=n["new_errors"] or 0, old_requests=n["old_requests"] or 0,
                  old_errors=n["old_errors"] or 0, new_p95=n["new_p95"], old_p95=n["old_p95"])
    v = judge(ev, rules, new=new, old=old)
    decision, reasons = v.decision, list(v.reasons)
    extra, extra_reasons = _extra_metrics(template, ms, new, old, minutes)
    if extra_reasons and decision in ("pass", "inconclusive"):
        decision = "fail"
    reasons += extra_reasons
    limits = {"alpha": template.alpha, "alpha_per_run": rules.alpha, "pass_confidence": rules.pass_confidence, "min_requests": rules.min_requests,
              "error_margin_pct": rules.error_margin_pct, "latency_margin_pct": rules.latency_margin_pct,
              "critical_error_rate": rules.critical_error_rate, "critical_error_min_requests": rules.critical_error_min_requests,
              "critical_p95": rules.critical_p95, "pass_bound": rules.pass_bound, "failure_limit": template.failure_limit,
              "interval_seconds": template.interval_seconds}
    n.update({"p_value": v.p_value, "new_error_upper": v.upper, "thresholds": limits, "extra": extra})
    previous = Analysis.objects.filter(deployment=dep, step_index=dep.step_index, watching=watching).order_by("-at", "-id").first()
    Analysis.objects.create(
        deployment=dep, at=now, step_index=dep.step_index, weight=weight, window_minutes=minutes, decision=decision,
        new_error_rate=n["new_error_rate"], old_error_rate=n["old_error_rate"], new_p95=n["new_p95"], old_p95=n["old_p95"],
        new_requests=n["new_requests"], old_requests=n["old_requests"], new_errors=n["new_errors"], old_errors=n["old_errors"],
        p_value=v.p_value, new_error_upper=v.upper, window_started_at=since, watching=watching, template_slug=template.slug,
        thresholds=limits, extra=extra, reasons=reasons)
    if previous is None or previous.decision != decision or decision in ("fail", "critical"):
        text = {"pass": "passes", "fail": "FAILED", "critical": "CRITICAL", "inconclusive": "cannot tell yet"}[decision]
        event_add(environment=env, deployment=dep, kind="analysis", at=now, data=n,
                  message=f"Analysis at {weight} %{' (watch window)' if watching else ''} {text}: "
                          + ("; ".join(reasons) if reasons else _numbers_line(n, new, old)))
    return Verdict(decision, reasons, n)


def _errors(rate, requests) -> float | None:
    if rate is None or not requests:
        return 0.0 if requests == 0 else None
    return round(float(rate) * float(requests) / 100.0, 3)


def _extra_metrics(template: AnalysisTemplate, ms, new: str, old: str, minutes: int) -> tuple[dict, list[str]]:
    """The template's extra metrics read (a portal metric or a PromQL/CloudWatch query), and why they fail the run."""
    values: dict = {}
    for m in template.metrics or []:
        try:
            new_v, old_v = cloudops.template_metric(ms, m, new, old, minutes)
        except Exception as exc:  # noqa: BLE001 - an unreadable extra metric is shown, not a rollback
            values[metric_name(m)] = {"error": str(exc)[:200]}
            continue
        values[metric_name(m)] = {"new": new_v, "old": old_v}
    return values, extra_metric_reasons(template.metrics, values, new=new, old=old)


def _fmt(v, unit: str, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}{unit}"


def _numbers_line(n: dict, new: str, old: str) -> str:
    return (f"{new} {_fmt(n['new_error_rate'], ' %')} errors ({n.get('new_errors') or 0:.0f} of {n['new_requests'] or 0:.0f}), "
            f"P95 {_fmt(n['new_p95'], ' s', 3)}; {old} {_fmt(n['old_error_rate'], ' %')}, P95 {_fmt(n['old_p95'], ' s', 3)} "
            f"({n['compared_with']})")
