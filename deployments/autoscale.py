"""The automatic scaler: one step at a time, within the phase's range, with cooldowns, recorded.

Hot = CPU above the warning CPU threshold (portal.health.thresholds; the plan seeds 80 %) or requests per instance above the measured capacity;
it must stay hot for AUTOSCALE_HIGH_SECONDS before a scale out, and cold (CPU below
AUTOSCALE_LOW_CPU and little traffic) for AUTOSCALE_LOW_SECONDS before a scale in. Never during
a rollout or rollback; never past the phase maximum (that pages a lead with an approval button).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from deployments import cloudops, conf
from deployments.bounds import phase_bounds
from deployments.errors import DeploymentError
from deployments.mechanics import cooldown_left, live_colour, lock_environment, raise_alert, scale_apply
from deployments.models import (
    ACTIVE_DEPLOYMENT_STATES,
    ACTIVE_ROLLBACK_STATES,
    AutoscaleDecision,
    AutoscaleState,
    Deployment,
    Rollback,
    ScaleAction,
)
from deployments.services import scale_request_approval
from portal.actors import Actor
from portal.audit.services import audits_failures
from portal.cloud.models import Environment
from portal.health.thresholds import threshold

log = logging.getLogger(__name__)
SYSTEM = Actor.system("autoscaler")
D = AutoscaleDecision.Decision


def evaluate_all(now=None) -> list[AutoscaleDecision]:
    out = []
    for env in Environment.objects.exclude(blue_asg="").exclude(listener_arn=""):
        try:
            out.append(evaluate(environment=env, now=now))
        except Exception:  # noqa: BLE001 - one environment's AWS trouble must not stop the others
            log.exception("autoscale evaluation of %s failed", env)
    return out


@audits_failures("autoscale.evaluate", actor=SYSTEM, expected=(DeploymentError,))
def evaluate(*, environment: Environment, now=None) -> AutoscaleDecision:
    now = now or timezone.now()
    with transaction.atomic():
        env = lock_environment(environment)
        weights = cloudops.read_weights(env)
        colour = live_colour(weights)
        cap = cloudops.capacity(env, colour)
        bounds = phase_bounds()
        ms = cloudops.metrics(env)
        cpu = ms.cpu(colour, 1)
        requests = ms.request_count(colour, 1) or 0.0
        rpi = (requests / 60.0) / max(cap.in_service, 1)
        # The warning CPU row of portal.health.thresholds; disabled, CPU alone never makes the colour hot.
        cpu_warning = threshold("cpu", "warning")
        warn_cpu = cpu_warning.value if cpu_warning else None
        capacity_rpi = float(conf.get("AUTOSCALE_REQUESTS_PER_INSTANCE"))
        low_cpu = float(conf.get("AUTOSCALE_LOW_CPU"))
        numbers = {"cpu": cpu, "cpu_warning": warn_cpu, "requests_per_instance": round(rpi, 3),
                   "capacity_per_instance": capacity_rpi, "in_service": cap.in_service, "desired": cap.desired,
                   "phase": bounds.number, "phase_min": bounds.instances_min, "phase_max": bounds.instances_max}

        def record(decision: str, reason: str, new_desired=None, action=None) -> AutoscaleDecision:
            return AutoscaleDecision.objects.create(
                environment=env, colour=colour, at=now, decision=decision, cpu=cpu, requests_per_instance=rpi,
                desired=cap.desired, new_desired=new_desired, reason=reason[:300], numbers=numbers, scale_action=action)

        state, _ = AutoscaleState.objects.select_for_update().get_or_create(environment=env, colour=colour)
        if cpu is None and requests == 0:
            state.high_since = state.low_since = None
            state.save(update_fields=["high_since", "low_since"])
            return record(D.NO_DATA, f"no CPU or request metrics for {colour}")
        cpu_hot = cpu_warning is not None and cpu_warning.breached(cpu)
        hot = cpu_hot or rpi > capacity_rpi
        cold = (cpu is not None and cpu < low_cpu) and rpi < capacity_rpi * 0.5
        state.high_since = (state.high_since or now) if hot else None
        state.low_since = (state.low_since or now) if cold else None
        state.save(update_fields=["high_since", "low_since"])

        if Deployment.objects.filter(environment=env, state__in=ACTIVE_DEPLOYMENT_STATES).exists() or \
                Rollback.objects.filter(environment=env, state__in=ACTIVE_ROLLBACK_STATES).exists():
            return record(D.ROLLOUT, "a rollout or rollback is in progress: no automatic scaling")

        step = int(conf.get("AUTOSCALE_STEP"))
        if hot and (now - state.high_since).total_seconds() >= float(conf.get("AUTOSCALE_HIGH_SECONDS")):
            why = (f"CPU {cpu:.1f} % above {warn_cpu:g} %" if cpu_hot and cpu is not None and warn_cpu is not None
                   else f"{rpi:.1f} requests/s per instance above the capacity of {capacity_rpi:g}")
            why += f" for {(now - state.high_since).total_seconds():.0f} s"
            target = cap.desired + step
            if target > bounds.instances_max:
                return _page_for_approval(env, colour, target, why, bounds, record)
            return _act(env, colour, target, why, state, now, record, D.SCALE_OUT)
        if cold and (now - state.low_since).total_seconds() >= float(conf.get("AUTOSCALE_LOW_SECONDS")):
            target = max(bounds.instances_min, cap.desired - step)
            if target >= cap.desired:
                return record(D.HOLD, f"quiet, but already at the phase minimum ({bounds.instances_min})")
            why = f"CPU {cpu:.1f} % below {low_cpu:g} % for {(now - state.low_since).total_seconds():.0f} s"
            return _act(env, colour, target, why, state, now, record, D.SCALE_IN)
        if hot:
            return record(D.HOLD, f"hot since {state.high_since:%H:%M:%S}; waiting for {conf.get('AUTOSCALE_HIGH_SECONDS')} s")
        return record(D.HOLD, "within range")


def _act(env, colour, target, why, state, now, record, decision) -> AutoscaleDecision:
    if env.automation_paused:
        return record(D.PAUSED, f"would scale {colour} to {target} ({why}); automation is paused", target)
    left = cooldown_left(env, colour, float(conf.get("AUTOSCALE_COOLDOWN_SECONDS")), now)
    if left > 0:
        return record(D.COOLDOWN, f"would scale {colour} to {target} ({why}); cooldown for {left:.0f} s more", target)
    action = scale_apply(env=env, colour=colour, desired=target, actor=SYSTEM, automatic=True, now=now,
                         reason=f"automatic: {why}", dry_run=env.dry_run)
    if env.dry_run:
        return record(D.DRY_RUN, f"dry run: would scale {colour} to {target} ({why})", target, action)
    # Start the clock again: another step needs the condition to hold for the whole time after the cooldown.
    state.high_since = state.low_since = None
    state.save(update_fields=["high_since", "low_since"])
    return record(decision, f"{colour} {action.from_desired} → {target}: {why}", target, action)


def _page_for_approval(env, colour, target, why, bounds, record) -> AutoscaleDecision:
    pending = ScaleAction.objects.filter(environment=env, colour=colour, state=ScaleAction.State.AWAITING_APPROVAL).first()
    action = pending or scale_request_approval(
        environment=env, colour=colour, desired=target, actor=SYSTEM,
        reason=f"automatic: {why}; above phase {bounds.number}'s maximum of {bounds.instances_max}")
    if pending is None:
        transaction.on_commit(lambda: raise_alert(
            environment=env, key=f"scale-approval:{action.public_id}", name="ScaleBeyondPhaseNeedsApproval", severity="critical",
            summary=f"{colour} on {env.name} needs {target} instances ({why}), above phase {bounds.number}'s maximum of "
                    f"{bounds.instances_max}: a lead must approve it on /deployments/",
            labels={"scale_action": str(action.public_id), "approve_url": "/deployments/#approvals"}))
    return record(D.AT_MAX, f"needs {target} > phase maximum {bounds.instances_max}: a lead was paged for approval", target, action)
