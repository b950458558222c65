"""The actions an `action` step can take: thin calls to the deployments service functions.

The deployments services check nothing about HTTP and write their own audit rows; the runbook
views and API check the same permission (and token scope) the deployments pages and API do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deployments import bounds
from deployments import errors as deployment_errors
from deployments import services as deployment_services
from portal.accounts import roles
from portal.cloud import aws


class ActionFailed(Exception):
    """The action did not happen; the message says why and is shown in the step."""


@dataclass(frozen=True)
class ActionSpec:
    label: str
    perm: str  # what a person needs (user.has_perm)
    scope: str  # what an API token needs
    danger: bool
    func: Callable[..., dict]
    describe: Callable[[Any, dict], str]


def _env(run):
    if run.environment is None:
        raise ActionFailed("This run has no environment, so there is nothing to act on.")
    return run.environment


def _live_colour(env) -> str:
    weights = aws.get_listener_weights(env)
    return max(weights, key=lambda c: weights[c]) if weights else "blue"


def _reason(run, step) -> str:
    where = f" for incident {run.incident.public_id}" if run.incident_id else ""
    return f"runbook {run.version.runbook.slug} v{run.version.number}, step {step['id']}{where}"


def _scale_out(*, run, step, actor) -> dict:
    env = _env(run)
    params = step.get("params") or {}
    colour = params.get("colour") or _live_colour(env)
    groups = aws.describe_groups(env)
    current = groups[colour].desired
    by = int(params.get("by", 2))
    desired = current + by
    cap = bounds.phase_bounds().instances_max
    if desired > cap and current < cap:
        desired = cap  # stay within the phase; beyond it a lead approves on the deployments page
    result = deployment_services.environment_scale(environment=env, colour=colour, desired=desired, actor=actor, reason=_reason(run, step))
    state = getattr(result, "state", "")
    if state == "failed":
        raise ActionFailed(f"Scale out failed: {getattr(result, 'error', '') or 'AWS did not take the new capacity'}")
    return {
        "words": f"Scaled {colour} from {current} to {desired} instances.",
        "colour": colour,
        "from": current,
        "to": desired,
        "result": _summary(result),
    }


def _rollback(*, run, step, actor) -> dict:
    env = _env(run)
    try:
        result = deployment_services.environment_rollback(environment=env, actor=actor, reason=_reason(run, step))
    except deployment_errors.AlreadyInProgress as exc:
        # A second click, or someone else was quicker: nothing new started, and that is fine.
        rb = getattr(exc, "rollback", None)
        return {"words": f"Nothing new started: {exc.detail}.", "already_in_progress": True, "result": _summary(rb)}
    words = f"Rollback to {result.to_colour} requested"
    if result.from_colour:
        words += f" (away from {result.from_colour})"
    words += f"; state {result.get_state_display().lower()}: the old colour is brought to healthy capacity, then gets all the traffic."
    return {"words": words, "result": _summary(result)}


def _rds_failover(*, run, step, actor) -> dict:
    env = _env(run)
    result = deployment_services.rds_failover(environment=env, actor=actor, reason=_reason(run, step))
    return {"words": f"Failover of {env.rds_instance_id or 'the database'} to its standby requested.", "result": _summary(result)}


def _pause_automation(*, run, step, actor) -> dict:
    env = _env(run)
    result = deployment_services.automation_set(environment=env, paused=True, actor=actor, reason=_reason(run, step))
    return {"words": f"Automation paused on {env.name}: no automatic rollouts, rollbacks or scale-downs until resumed.", "result": _summary(result)}


def _summary(result: Any) -> Any:
    if result is None or isinstance(result, (str, int, float, bool, dict, list)):
        return result
    out = {"type": type(result).__name__}
    for attr in ("public_id", "state", "status", "from_colour", "to_colour", "from_desired", "to_desired", "colour", "error"):
        value = getattr(result, attr, None)
        if value is not None and value != "":
            out[attr] = str(value)
    return out


def _colour_text(run, step) -> str:
    colour = (step.get("params") or {}).get("colour")
    return f"the {colour} group" if colour else "the live colour's group"


ACTIONS: dict[str, ActionSpec] = {
    "scale_out": ActionSpec(
        "Scale out", roles.RESPOND, "actions", False, _scale_out,
        lambda run, step: f"Add {(step.get('params') or {}).get('by', 2)} instances to {_colour_text(run, step)} in {run.environment or 'no environment'}.",
    ),
    "rollback": ActionSpec(
        "Roll back", roles.RESPOND, "actions", True, _rollback,
        lambda run, step: f"Move all traffic in {run.environment or 'no environment'} back to the previous colour (scaling it up first if needed).",
    ),
    "rds_failover": ActionSpec(
        "Fail over RDS", roles.APPROVE, "lead", True, _rds_failover,
        lambda run, step: f"Fail the database of {run.environment or 'no environment'} over to its standby (a minute or two of errors while it switches). Leads only.",
    ),
    "pause_automation": ActionSpec(
        "Pause automation", roles.RESPOND, "actions", False, _pause_automation,
        lambda run, step: f"Pause automatic rollouts, rollbacks and scale-downs in {run.environment or 'no environment'}.",
    ),
}


def run_action(name: str, *, run, step, actor) -> dict:
    """Carry out the action; returns a result dict with `words`, or raises ActionFailed."""
    spec = ACTIONS[name]
    try:
        return spec.func(run=run, step=step, actor=actor)
    except ActionFailed:
        raise
    except Exception as exc:  # noqa: BLE001 - the refusal or cloud error is shown in the step, never a 500
        detail = getattr(exc, "detail", None) or getattr(exc, "message", None) or str(exc) or type(exc).__name__
        if isinstance(detail, (list, tuple)):
            detail = "; ".join(str(d) for d in detail)
        raise ActionFailed(f"{spec.label} failed: {detail}") from exc
