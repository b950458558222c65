"""The rollback engine: open a rollback under the environment lock, then carry it through in short
passes (`rollback_advance`): the old colour's capacity first, then the weights with one read-back.

Each step reads AWS first and only then takes the environment's row lock, re-checks the rollback's
state and makes its change; a step whose rollback moved on while it read does nothing. The weight
change is read back once (the wrapper's own read after ModifyListener) and that read is the record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction

from deployments import cloudops, conf
from deployments.bounds import phase_bounds
from deployments.errors import AlreadyInProgress, NothingToRollBack
from deployments.mechanics import (
    audited,
    event_add,
    fmt_weights,
    live_colour,
    lock_environment,
    open_incidents_note,
    raise_alert,
    scale_apply,
    set_state,
)
from deployments.mechanics import now as now_
from deployments.models import (
    ACTIVE_ROLLBACK_STATES,
    Deployment,
    DeploymentEvent,
    DeploymentState,
    Rollback,
    RollbackState,
    other_colour,
)
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud.models import Environment
from portal.events import emit, rollback_payload
from portal.tasking import enqueue

SYSTEM = Actor.system("rollback")
R = RollbackState


def rollback_target(env: Environment, deployment: Deployment | None, weights: dict) -> tuple[Deployment | None, str]:
    """The deployment to undo and the colour traffic goes back to."""
    dep = deployment or Deployment.objects.filter(environment=env).order_by("-created_at", "-id").first()
    if dep is not None:
        undoable = dep.is_active or dep.state == DeploymentState.COMPLETED or weights.get(dep.to_colour, 0) > 0
        if not undoable:
            raise NothingToRollBack(
                f"nothing to roll back on {env.name}: the last deployment ({dep.release.version}) is "
                f"{dep.get_state_display().lower()} and {dep.from_colour} already has {weights.get(dep.from_colour, 0)} % of the traffic")
        if weights.get(dep.from_colour, 0) == 100 and not dep.is_active and dep.state != DeploymentState.COMPLETED:
            raise NothingToRollBack(f"{dep.from_colour} already has all the traffic on {env.name}")
        return dep, dep.from_colour
    if sorted(weights.values()) == [0, 100]:
        raise NothingToRollBack(f"no deployment to roll back on {env.name} and traffic is not split")
    # Traffic split without a deployment record (changed by hand in AWS): back to the colour with more.
    return None, live_colour(weights)


@audited("environment.rollback")
def rollback_start(*, environment: Environment, actor: Any, reason: str = "", deployment: Deployment | None = None,
                   automatic: bool = False) -> Rollback:
    """Open a rollback (one per environment) and enqueue its driver. Raises AlreadyInProgress."""
    reason = (reason or "").strip()[:500]
    # Read before the lock: a rollout pass holding it may take a while, and this read needs no lock.
    # Every weight change writes an event under the lock, so a newer event means the read is stale.
    last_event = DeploymentEvent.objects.filter(environment=environment).order_by("-id").values_list("id", flat=True).first()
    weights = cloudops.read_weights(environment)
    try:
        with transaction.atomic():
            env = lock_environment(environment)
            running = Rollback.objects.filter(environment=env, state__in=ACTIVE_ROLLBACK_STATES).first()
            if running is not None:
                raise AlreadyInProgress(
                    f"already rolling back to {running.to_colour} on {env.name} (requested by {running.requested_by_label} "
                    f"at {running.requested_at:%H:%M:%S})", rollback=running)
            if DeploymentEvent.objects.filter(environment=env, id__gt=last_event or 0).exists():
                weights = cloudops.read_weights(env)  # a step or a rollback finished while this one read: read again
            if deployment is not None:
                deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
            dep, target = rollback_target(env, deployment, weights)
            at = now_()
            rb = Rollback.objects.create(
                environment=env, deployment=dep, from_colour=other_colour(target), to_colour=target, automatic=automatic,
                reason=reason, requested_by=Actor.of(actor).user, requested_by_label=Actor.of(actor).label, requested_at=at,
                weights_before=weights,
            )
            if dep is not None and dep.state != DeploymentState.ROLLING_BACK:
                dep.paused_from = dep.state if dep.is_active else ""
                set_state(dep, DeploymentState.ROLLING_BACK, now=at, actor=actor, fields=("paused_from",),
                          message=f"{'Automatic rollback' if automatic else 'Rollback requested by ' + Actor.of(actor).label}"
                                  + (f": {reason}" if reason else ""), data={"rollback": str(rb.public_id)})
            event_add(environment=env, deployment=dep, rollback=rb, kind="rollback", actor=actor, at=at,
                      message=f"Rollback to {target} requested" + (f": {reason}" if reason else ""),
                      data={"weights_before": weights, "automatic": automatic})
            audit_record(actor=actor, verb="environment.rollback", target=env, before={"weights": weights},
                         after={"to_colour": target}, extra={
                             "rollback": str(rb.public_id), "deployment": str(dep.public_id) if dep else None,
                             "reason": reason, "automatic": automatic})
            if not automatic:  # an automatic one is on the timeline of the incident its rollout opened
                open_incidents_note(environment=env, kind="deployment", actor=actor, data={"rollback": str(rb.public_id)},
                                    text=f"{Actor.of(actor).label} rolled {env.name} back to {target}" + (f" ({reason})" if reason else "")
                                         + f": rollback requested, traffic {fmt_weights(weights)} now")
            enqueue("deployments.tasks.rollback_run", rb.pk)
            emit("rollback.started", rollback_payload(rb))
            return rb
    except IntegrityError as exc:
        if "rollback_one_active_per_env" in str(exc):
            raise AlreadyInProgress(f"already rolling back on {environment.name}") from exc
        raise


@dataclass
class Seen:
    """What a step read from AWS before it took the lock."""

    healthy: int
    needed: int = 0
    numbers: dict | None = None


@audited("environment.rollback_advance", actor=SYSTEM, target=lambda kw: ("deployments.rollback", kw.get("rollback_id")))
def rollback_advance(*, rollback_id: int, now: datetime | None = None) -> str:
    """One pass of a rollback: capacity first, then weights with read-back. Returns the state after the pass."""
    now = now or now_()
    seen: Seen | None = None
    state = ""
    for _ in range(4):  # bounded: each loop is one step (requested, scaling up, switching)
        rb = Rollback.objects.select_related("environment").get(pk=rollback_id)
        state = rb.state
        if not rb.is_active:
            break
        if state != R.SWITCHING or seen is None:
            seen = _observe(rb.environment, rb)
        with transaction.atomic():
            env = lock_environment(rb.environment)
            rb = Rollback.objects.select_for_update(of=("self",)).select_related("deployment").get(pk=rollback_id)
            Rollback.objects.filter(pk=rb.pk).update(polled_at=now)
            if rb.state != state:
                state = rb.state  # another pass moved it while this one read AWS: read again
                continue
            STEPS[state](env, rb, now, seen)
        moved = rb.state != state
        state = rb.state
        if not moved or not rb.is_active:
            break
    return state


def _observe(env: Environment, rb: Rollback) -> Seen:
    healthy = cloudops.healthy_count(env, rb.to_colour)
    if rb.state != R.REQUESTED:
        return Seen(healthy)
    bounds = phase_bounds()
    groups = cloudops.groups(env)
    live = groups[rb.from_colour]
    needed = max(bounds.instances_min, int(live.in_service))
    return Seen(healthy, needed, {"live_in_service": int(live.in_service), "phase_min": bounds.instances_min,
                                  "target_desired": int(groups[rb.to_colour].desired)})


def _check_capacity(env: Environment, rb: Rollback, now: datetime, seen: Seen) -> None:
    healthy, needed, numbers = seen.healthy, seen.needed, seen.numbers or {}
    rb.needed_capacity = needed
    if healthy >= needed:
        rb.capacity_ready_at = now
        rb.state = R.SWITCHING
        rb.save(update_fields=["needed_capacity", "capacity_ready_at", "state"])
        event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="rollback", at=now,
                  message=f"{rb.to_colour} can carry the traffic: {healthy} healthy (needs {needed})",
                  data={"healthy": healthy, "needed": needed, **numbers})
        return
    if numbers["target_desired"] < needed:
        scale_apply(env=env, colour=rb.to_colour, desired=needed, actor=Actor.system(f"rollback:{rb.public_id}"),
                    reason=f"rollback: {rb.to_colour} needs {needed} healthy instances before it takes traffic",
                    automatic=True, requested_by_label=rb.requested_by_label, now=now)
    rb.scaled_up = True
    rb.state = R.SCALING_UP
    rb.save(update_fields=["needed_capacity", "scaled_up", "state"])
    event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="scale", at=now,
              message=f"Scaling {rb.to_colour} up to {needed} and waiting for healthy targets before moving traffic "
                      f"({healthy} healthy now)", data={"healthy": healthy, "needed": needed, **numbers})


def _wait_capacity(env: Environment, rb: Rollback, now: datetime, seen: Seen) -> None:
    healthy = seen.healthy
    if healthy >= rb.needed_capacity:
        rb.capacity_ready_at = now
        rb.state = R.SWITCHING
        rb.save(update_fields=["capacity_ready_at", "state"])
        event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="rollback", at=now,
                  message=f"{rb.to_colour} healthy: {healthy} of {rb.needed_capacity}; moving traffic",
                  data={"healthy": healthy, "needed": rb.needed_capacity})
        return
    waited = (now - rb.requested_at).total_seconds()
    if waited < float(conf.get("ROLLBACK_CAPACITY_TIMEOUT_SECONDS")):
        return
    bounds = phase_bounds()
    if healthy >= max(1, bounds.instances_min):
        rb.capacity_ready_at = now
        rb.state = R.SWITCHING
        rb.save(update_fields=["capacity_ready_at", "state"])
        event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="error", at=now,
                  message=f"Only {healthy} of {rb.needed_capacity} {rb.to_colour} targets healthy after {waited:.0f} s; "
                          f"switching anyway at the phase minimum ({bounds.instances_min})",
                  data={"healthy": healthy, "needed": rb.needed_capacity, "phase_min": bounds.instances_min})
        return
    _fail(env, rb, now, f"{rb.to_colour} has {healthy} healthy targets after {waited:.0f} s "
                        f"(needs {rb.needed_capacity}, phase minimum {bounds.instances_min}); traffic was not moved")


def _switch(env: Environment, rb: Rollback, now: datetime, seen: Seen) -> None:
    asked = {rb.to_colour: 100, rb.from_colour: 0}
    try:
        weights, tries = cloudops.apply_weights(env, asked)
    except cloudops.WeightsNotApplied as exc:
        event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="error", at=now_(),
                  message=f"Listener did not take {fmt_weights(asked)}: it shows {fmt_weights(exc.seen)} after {exc.attempts} tries {exc.error}", data={"asked": asked, "seen": exc.seen})
        audit_record(actor=SYSTEM, verb="environment.weights", target=env, result="error", before={"weights": exc.seen},
                     after={"weights": asked}, extra={"rollback": str(rb.public_id), "attempts": exc.attempts,
                                                      "error": exc.error or str(exc)})
        if (now - rb.requested_at).total_seconds() > float(conf.get("ROLLBACK_CAPACITY_TIMEOUT_SECONDS")):
            _fail(env, rb, now, f"the listener never showed {asked}: {exc}")
        return
    at = now_()
    rb.switched_at = at
    rb.weights_after = weights
    # The read-back after the change is the confirmation; the capacity behind it was read before the lock.
    rb.confirmed_at = now_()
    rb.finished_at = rb.confirmed_at
    rb.state = R.COMPLETED
    rb.save(update_fields=["switched_at", "weights_after", "confirmed_at", "finished_at", "state"])
    event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="weights", at=at,
              message=f"Weights read back {fmt_weights(weights)} after {tries} tr{'y' if tries == 1 else 'ies'}; confirmed with {seen.healthy} healthy {rb.to_colour} targets",
              data={"weights": weights, "tries": tries, "healthy": seen.healthy,
                    "seconds_to_switch": rb.seconds("switched_at")})
    dep = rb.deployment
    if dep is not None:
        dep = Deployment.objects.select_for_update().get(pk=dep.pk)
        dep.weights = weights
        dep.finished_at = dep.finished_at or rb.finished_at
        if dep.state == DeploymentState.ROLLING_BACK or dep.state == DeploymentState.COMPLETED:
            set_state(dep, DeploymentState.ROLLED_BACK, now=rb.finished_at, fields=("weights", "finished_at"),
                      message=f"Rolled back: {rb.to_colour} has 100 % of the traffic ({rb.seconds('switched_at')} s after the request)")
        else:
            dep.save(update_fields=["weights", "finished_at"])
    audit_record(actor=SYSTEM, verb="environment.rollback_completed", target=env, before={"weights": rb.weights_before},
                 after={"weights": weights}, extra={"rollback": str(rb.public_id), "scaled_up": rb.scaled_up,
                                                    "seconds": rb.seconds("confirmed_at")})
    open_incidents_note(environment=env, kind="deployment", actor=SYSTEM, data={"rollback": str(rb.public_id), "weights": weights},
                        text=f"Rollback of {env.name} to {rb.to_colour} (requested by {rb.requested_by_label}) completed: "
                             f"the listener reads back {fmt_weights(weights)}, {rb.seconds('confirmed_at')} s after the request")
    emit("rollback.finished", rollback_payload(rb))


def _fail(env: Environment, rb: Rollback, now: datetime, error: str) -> None:
    rb.state = R.FAILED
    rb.error = error[:500]
    rb.finished_at = now
    rb.save(update_fields=["state", "error", "finished_at"])
    event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="error", at=now, message=f"Rollback failed: {error}")
    audit_record(actor=SYSTEM, verb="environment.rollback_failed", target=env, result="error",
                 extra={"rollback": str(rb.public_id), "error": error})
    open_incidents_note(environment=env, kind="deployment", actor=SYSTEM, data={"rollback": str(rb.public_id)},
                        text=f"Rollback of {env.name} to {rb.to_colour} (requested by {rb.requested_by_label}) failed: {error}")
    emit("rollback.finished", rollback_payload(rb))
    transaction.on_commit(partial(raise_alert, environment=env, key=f"rollback-failed:{rb.public_id}", severity="critical",
                                  name="RollbackFailed", summary=f"Rollback on {env.name} failed: {error}",
                                  labels={"rollback": str(rb.public_id)}))


STEPS: dict[str, Callable[[Environment, Rollback, datetime, Seen], None]] = {R.REQUESTED: _check_capacity, R.SCALING_UP: _wait_capacity, R.SWITCHING: _switch}
