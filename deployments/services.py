"""Writes of the deployments app: rollouts, rollback, scale, failover, the automation switch.

Concurrency: the environment row is the aggregate root. Every function that changes listener
weights or capacity first takes `select_for_update` on it, so a rollback click, a second click,
the automatic rollback and a rollout step are serialised; the partial unique constraints on
Deployment and Rollback hold even if a caller forgets the lock. Each change writes its audit row
in the same transaction and enqueues its Celery task after commit.
"""

from __future__ import annotations

import logging
from functools import partial

from django.db import IntegrityError, transaction
from django.utils import timezone

from deployments import cloudops, conf
from deployments.bounds import phase_bounds
from deployments.models import (
    ACTIVE_DEPLOYMENT_STATES,
    ACTIVE_ROLLBACK_STATES,
    Deployment,
    DeploymentEvent,
    DeploymentState,
    Release,
    Rollback,
    RollbackState,
    ScaleAction,
    Strategy,
    other_colour,
)
from portal.audit.services import actor_fields, audit_record, audit_record_later, audits_failures
from portal.cloud.errors import CloudError
from portal.cloud.models import COLOURS, Environment

log = logging.getLogger(__name__)


class DeploymentError(Exception):
    """A refused action: `status` and `code` map onto the API's {"error", "detail"}."""

    status = 400
    code = "bad_request"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class AlreadyInProgress(DeploymentError):
    status = 409
    code = "conflict"

    def __init__(self, detail: str, *, rollback: Rollback | None = None, deployment: Deployment | None = None):
        super().__init__(detail)
        self.rollback = rollback
        self.deployment = deployment


class NothingToRollBack(AlreadyInProgress):
    """Traffic is already where a rollback would send it (e.g. the other click finished first)."""


class InvalidState(DeploymentError):
    status = 409
    code = "conflict"


class CooldownActive(DeploymentError):
    status = 409
    code = "conflict"


class InvalidInput(DeploymentError):
    status = 422
    code = "invalid"


class NeedsApproval(DeploymentError):
    status = 403
    code = "forbidden"


# A cloud action that fails leaves a result="error" audit row written after its transaction rolled
# back; the portal's own refusals (a DeploymentError without a cause) are answered, not audited.
def _audited(verb: str, **kw):
    return audits_failures(verb, expected=(DeploymentError,), **kw)


class ImageNotApproved(DeploymentError):
    """The release would boot an image that is not on the environment's allow-list (deployments.images)."""

    status = 422
    code = "image_not_approved"


def _now():
    return timezone.now()


def _label(actor) -> str:
    return actor_fields(actor)["actor_label"]


def _user(actor):
    return actor if getattr(actor, "is_authenticated", False) and not isinstance(actor, str) else None


def lock_environment(environment: Environment) -> Environment:
    """Lock the aggregate root for the rest of the transaction (a no-op on SQLite, which serialises writers)."""
    return Environment.objects.select_for_update().get(pk=environment.pk)


def _enqueue(task_name: str, *args) -> None:
    """Publish after commit; a broker failure is logged (the beat driver picks the work up again)."""

    def send():
        from deployments import tasks

        try:
            getattr(tasks, task_name).delay(*args)
        except Exception:  # noqa: BLE001
            log.warning("could not enqueue %s%r; the driver will pick it up", task_name, args, exc_info=True)

    transaction.on_commit(send)


def event_add(*, environment, kind: str, message: str, deployment=None, rollback=None, data: dict | None = None,
              actor=None, at=None) -> DeploymentEvent:
    return DeploymentEvent.objects.create(
        environment=environment, deployment=deployment, rollback=rollback, at=at or _now(), kind=kind,
        message=message[:500], data=data or {}, actor_label=_label(actor) if actor is not None else "",
    )


def fmt_weights(weights: dict | None) -> str:
    return " / ".join(f"{c} {w} %" for c, w in (weights or {}).items()) or "–"


def live_colour(weights: dict[str, int]) -> str:
    return "blue" if int(weights.get("blue", 0)) >= int(weights.get("green", 0)) else "green"


# ----------------------------------------------------------------------------------------------
# Deployments


@_audited("deployment.create")
def deployment_create(
    *, environment: Environment, version: str, strategy: Strategy | str, actor, launch_template_version: str = "",
    image_id: str = "", notes: str = "",
) -> Deployment:
    """Start a rollout of `version` to the idle colour. One at a time per environment."""
    version = (version or "").strip()
    launch_template_version = (launch_template_version or "").strip()
    image_id = (image_id or "").strip()
    if not version:
        raise InvalidInput("version is required")
    if len(version) > 100:
        raise InvalidInput("version is at most 100 characters")
    if not launch_template_version and not image_id:
        raise InvalidInput("name what to launch: a launch template version or an image id")
    if launch_template_version and not (launch_template_version.isdigit() or launch_template_version in ("$Latest", "$Default")):
        raise InvalidInput("launch_template_version is a number, $Latest or $Default")
    if image_id and not (image_id.startswith("ami-") and 8 <= len(image_id) <= 40):
        raise InvalidInput("image_id looks like ami-0123456789abcdef0")
    if isinstance(strategy, str):
        strategy_obj = Strategy.objects.filter(slug=strategy).first()
        if strategy_obj is None:
            raise InvalidInput(f"no strategy {strategy!r}; choose one of {sorted(Strategy.objects.values_list('slug', flat=True))}")
        strategy = strategy_obj
    problems = strategy.validate_steps()
    if problems:
        raise InvalidInput(f"strategy {strategy.slug} is not usable: " + "; ".join(problems))
    # Read before the lock (two reads of AWS); the rollout checks again right before it launches.
    require_approved_image(environment=environment, image_id=image_id, launch_template_version=launch_template_version)

    try:
        with transaction.atomic():
            env = lock_environment(environment)
            active = Deployment.objects.filter(environment=env, state__in=ACTIVE_DEPLOYMENT_STATES).first()
            if active is not None:
                raise AlreadyInProgress(f"a deployment ({active.release.version}, {active.get_state_display().lower()}) is already running on {env.name}", deployment=active)
            running = Rollback.objects.filter(environment=env, state__in=ACTIVE_ROLLBACK_STATES).first()
            if running is not None:
                raise AlreadyInProgress(f"a rollback to {running.to_colour} is running on {env.name}", rollback=running)
            weights = cloudops.read_weights(env)
            if sorted(weights.values()) != [0, 100]:
                raise InvalidState(f"traffic is split ({fmt_weights(weights)}); roll back or finish the split before a new deployment")
            source = live_colour(weights)
            release = Release.objects.filter(environment=env, version=version).first()
            if release is None:
                release = Release.objects.create(
                    environment=env, version=version, launch_template_version=launch_template_version,
                    image_id=image_id, notes=notes[:500], created_by_label=_label(actor))
            elif (release.launch_template_version, release.image_id) != (launch_template_version, image_id):
                raise InvalidInput(f"release {version} already exists with another launch spec "
                                   f"(launch template version {release.launch_template_version or '-'}, image {release.image_id or '-'})")
            now = _now()
            dep = Deployment.objects.create(
                environment=env, release=release, strategy=strategy, from_colour=source, to_colour=other_colour(source),
                state=DeploymentState.PENDING, weights=weights, created_by=_user(actor), created_by_label=_label(actor),
                wake_at=now, state_entered_at=now, progressed_at=now,
            )
            event_add(environment=env, deployment=dep, kind="state", actor=actor,
                      message=f"Deployment of {version} to {dep.to_colour} with {strategy.name} requested",
                      data={"weights": weights, "strategy": strategy.slug})
            audit_record(actor=actor, verb="deployment.create", target=dep, after={
                "version": version, "strategy": strategy.slug, "from": dep.from_colour, "to": dep.to_colour,
                "launch_template_version": launch_template_version, "image_id": image_id}, extra={"environment": env.name})
            _enqueue("deployment_step", dep.pk)
            return dep
    except IntegrityError as exc:
        if "deployment_one_active_per_env" in str(exc):
            raise AlreadyInProgress(f"a deployment is already running on {environment.name}") from exc
        raise


def require_approved_image(*, environment: Environment, image_id: str = "", launch_template_version: str = ""):
    """The image the release would boot, approved; ImageNotApproved otherwise. Only reads AWS."""
    from deployments import images

    try:
        verdict = images.verdict(environment, image_id=image_id, launch_template_version=launch_template_version)
    except CloudError as exc:
        if exc.is_not_found or exc.code.startswith(("InvalidLaunchTemplate", "InvalidAMIID")):
            raise ImageNotApproved(f"the image cannot be checked: {exc.words}") from exc
        raise
    if not verdict.approved:
        raise ImageNotApproved(f"refused before anything was changed: {verdict.reason}")
    return verdict


def environment_images_set(*, environment: Environment, owners, image_ids, actor, reason: str = "") -> Environment:
    """Replace the environment's allow-list of image owners and ids (an environment edit: leads and admins)."""
    from deployments import images

    if not can_approve(actor):
        raise NeedsApproval("only a lead or an admin can change which images may be deployed")
    try:
        owners = images.clean_owners(owners)
        image_ids = images.clean_image_ids(image_ids)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc
    with transaction.atomic():
        env = lock_environment(environment)
        before = {"approved_image_owners": env.approved_image_owners, "approved_image_ids": env.approved_image_ids}
        after = {"approved_image_owners": owners, "approved_image_ids": image_ids}
        if before == after:
            return env
        env.approved_image_owners = owners
        env.approved_image_ids = image_ids
        env.save(update_fields=["approved_image_owners", "approved_image_ids", "updated_at"])
        audit_record(actor=actor, verb="environment.images", target=env, before=before, after=after,
                     extra={"reason": (reason or "").strip()[:300], "environment": env.name})
        return env


def _locked_deployment(deployment: Deployment) -> tuple[Environment, Deployment]:
    env = lock_environment(deployment.environment)
    dep = Deployment.objects.select_for_update(of=("self",)).select_related("strategy", "release").get(pk=deployment.pk)
    return env, dep


def set_state(dep: Deployment, state: str, *, now=None, message: str = "", actor=None, data: dict | None = None,
              fields: tuple[str, ...] = ()) -> None:
    now = now or _now()
    old = dep.state
    dep.state = state
    dep.state_entered_at = now
    dep.progressed_at = now
    dep.stall_alerted_at = None
    dep.save(update_fields=["state", "state_entered_at", "progressed_at", "stall_alerted_at", *fields])
    event_add(environment=dep.environment, deployment=dep, kind="state", actor=actor, at=now,
              message=message or f"{DeploymentState(old).label} → {DeploymentState(state).label}",
              data={"from": old, "to": state, **(data or {})})


PAUSABLE = (DeploymentState.PENDING, DeploymentState.PREPARING, DeploymentState.SMOKE, DeploymentState.SHIFTING,
            DeploymentState.HOLDING, DeploymentState.WATCHING)


def deployment_pause(*, deployment: Deployment, actor, reason: str = "") -> Deployment:
    with transaction.atomic():
        env, dep = _locked_deployment(deployment)
        if dep.state == DeploymentState.PAUSED:
            return dep  # a second click: already paused
        if dep.state not in PAUSABLE:
            raise InvalidState(f"a deployment that is {dep.get_state_display().lower()} cannot be paused")
        before = dep.state
        dep.paused_from = dep.state
        dep.pause_reason = (reason or f"paused by {_label(actor)}")[:300]
        set_state(dep, DeploymentState.PAUSED, actor=actor, message=f"Paused by {_label(actor)}" + (f": {reason}" if reason else ""),
                  fields=("paused_from", "pause_reason"))
        audit_record(actor=actor, verb="deployment.pause", target=dep, before={"state": before}, after={"state": dep.state},
                     extra={"reason": reason, "environment": env.name})
        return dep


def deployment_resume(*, deployment: Deployment, actor, reason: str = "") -> Deployment:
    with transaction.atomic():
        env, dep = _locked_deployment(deployment)
        if dep.state != DeploymentState.PAUSED:
            if dep.state in PAUSABLE:
                return dep  # a second click: already running
            raise InvalidState(f"a deployment that is {dep.get_state_display().lower()} cannot be resumed")
        now = _now()
        target = dep.paused_from or DeploymentState.HOLDING
        dep.wake_at = now
        if target == DeploymentState.HOLDING and dep.step_index >= 0:
            # Hold the step again: an inconclusive analysis needs a fresh window of traffic.
            dep.wake_at = now + timezone.timedelta(seconds=dep.strategy.steps[dep.step_index][1])
        dep.paused_from = ""
        dep.pause_reason = ""
        set_state(dep, target, now=now, actor=actor, message=f"Resumed by {_label(actor)}" + (f": {reason}" if reason else ""),
                  fields=("wake_at", "paused_from", "pause_reason"))
        audit_record(actor=actor, verb="deployment.resume", target=dep, before={"state": "paused"}, after={"state": dep.state},
                     extra={"reason": reason, "environment": env.name})
        _enqueue("deployment_step", dep.pk)
        return dep


def deployment_promote(*, deployment: Deployment, actor, reason: str = "") -> Deployment:
    """Skip the remaining holds: straight to 100 % on the new colour (the watch window still applies)."""
    with transaction.atomic():
        env, dep = _locked_deployment(deployment)
        if dep.state not in (DeploymentState.SHIFTING, DeploymentState.HOLDING, DeploymentState.PAUSED):
            raise InvalidState(f"only a deployment that is shifting, holding or paused can be promoted; this one is {dep.get_state_display().lower()}")
        if dep.paused_from and dep.paused_from not in (DeploymentState.SHIFTING, DeploymentState.HOLDING):
            raise InvalidState("this deployment was paused before its traffic steps; resume it first")
        before = {"state": dep.state, "step_index": dep.step_index}
        now = _now()
        dep.step_index = max(dep.step_index, len(dep.strategy.weights) - 2)
        dep.wake_at = now
        dep.paused_from = ""
        dep.pause_reason = ""
        dep.baseline = {**(dep.baseline or {}), "promoted": True}
        set_state(dep, DeploymentState.SHIFTING, now=now, actor=actor,
                  message=f"Promoted by {_label(actor)}: remaining holds skipped" + (f" ({reason})" if reason else ""),
                  fields=("step_index", "wake_at", "paused_from", "pause_reason", "baseline"))
        audit_record(actor=actor, verb="deployment.promote", target=dep, before=before, after={"state": dep.state},
                     extra={"reason": reason, "environment": env.name})
        _enqueue("deployment_step", dep.pk)
        return dep


@_audited("deployment.abort", target="deployment")
def deployment_abort(*, deployment: Deployment, actor, reason: str = "") -> Deployment:
    """Stop the rollout. Before any traffic moved it just ends; afterwards it rolls back."""
    reason = (reason or "").strip()
    with transaction.atomic():
        env, dep = _locked_deployment(deployment)
        if dep.state in (DeploymentState.ROLLING_BACK, DeploymentState.ABORTED):
            return dep  # a second click
        if not dep.is_active:
            raise InvalidState(f"a deployment that is {dep.get_state_display().lower()} cannot be aborted; use rollback")
        moved = dep.step_index >= 0 or cloudops.read_weights(env).get(dep.to_colour, 0) > 0
        if not moved:
            now = _now()
            before_desired = (dep.baseline or {}).get("to_desired_before")
            if before_desired is not None and cloudops.groups(env)[dep.to_colour].desired != before_desired:
                _scale_apply(env=env, colour=dep.to_colour, desired=int(before_desired), actor=actor, automatic=False,
                             reason=f"deployment {dep.release.version} aborted: idle {dep.to_colour} back to {before_desired}", now=now)
            dep.finished_at = now
            dep.failure_reason = f"aborted by {_label(actor)}" + (f": {reason}" if reason else "")
            set_state(dep, DeploymentState.ABORTED, now=now, actor=actor, message=dep.failure_reason,
                      fields=("finished_at", "failure_reason"))
            audit_record(actor=actor, verb="deployment.abort", target=dep, after={"state": dep.state},
                         extra={"reason": reason, "environment": env.name, "traffic_moved": False})
            return dep
        audit_record(actor=actor, verb="deployment.abort", target=dep, after={"state": "rolling_back"},
                     extra={"reason": reason, "environment": env.name, "traffic_moved": True})
        environment_rollback(environment=env, actor=actor, reason=f"abort: {reason}" if reason else "abort", deployment=dep)
        dep.refresh_from_db()
        return dep


# ----------------------------------------------------------------------------------------------
# Rollback


def _rollback_target(env: Environment, deployment: Deployment | None, weights: dict) -> tuple[Deployment | None, str]:
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


@_audited("environment.rollback")
def environment_rollback(*, environment: Environment, actor, reason: str = "", deployment: Deployment | None = None,
                         automatic: bool = False) -> Rollback:
    """One click: traffic back to the previous colour, once its capacity is healthy. Raises AlreadyInProgress."""
    reason = (reason or "").strip()[:500]
    try:
        with transaction.atomic():
            env = lock_environment(environment)
            running = Rollback.objects.filter(environment=env, state__in=ACTIVE_ROLLBACK_STATES).first()
            if running is not None:
                raise AlreadyInProgress(
                    f"already rolling back to {running.to_colour} on {env.name} (requested by {running.requested_by_label} "
                    f"at {running.requested_at:%H:%M:%S})", rollback=running)
            weights = cloudops.read_weights(env)
            if deployment is not None:
                deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
            dep, target = _rollback_target(env, deployment, weights)
            now = _now()
            rb = Rollback.objects.create(
                environment=env, deployment=dep, from_colour=other_colour(target), to_colour=target, automatic=automatic,
                reason=reason, requested_by=_user(actor), requested_by_label=_label(actor), requested_at=now,
                weights_before=weights,
            )
            if dep is not None and dep.state != DeploymentState.ROLLING_BACK:
                dep.paused_from = dep.state if dep.is_active else ""
                set_state(dep, DeploymentState.ROLLING_BACK, now=now, actor=actor, fields=("paused_from",),
                          message=f"{'Automatic rollback' if automatic else 'Rollback requested by ' + _label(actor)}"
                                  + (f": {reason}" if reason else ""), data={"rollback": str(rb.public_id)})
            event_add(environment=env, deployment=dep, rollback=rb, kind="rollback", actor=actor, at=now,
                      message=f"Rollback to {target} requested" + (f": {reason}" if reason else ""),
                      data={"weights_before": weights, "automatic": automatic})
            audit_record(actor=actor, verb="environment.rollback", target=env, before={"weights": weights},
                         after={"to_colour": target}, extra={
                             "rollback": str(rb.public_id), "deployment": str(dep.public_id) if dep else None,
                             "reason": reason, "automatic": automatic})
            _enqueue("rollback_run", rb.pk)
            return rb
    except IntegrityError as exc:
        if "rollback_one_active_per_env" in str(exc):
            raise AlreadyInProgress(f"already rolling back on {environment.name}") from exc
        raise


@_audited("environment.rollback_advance", actor="system:rollback", target=lambda kw: ("deployments.rollback", kw.get("rollback_id")))
def rollback_advance(*, rollback_id: int, now=None) -> str:
    """One pass of a rollback: capacity first, then weights with read-back. Returns the state after the pass."""
    now = now or _now()
    with transaction.atomic():
        rb = Rollback.objects.select_related("environment").get(pk=rollback_id)
        env = lock_environment(rb.environment)
        rb = Rollback.objects.select_for_update(of=("self",)).select_related("deployment").get(pk=rollback_id)
        if not rb.is_active:
            return rb.state
        Rollback.objects.filter(pk=rb.pk).update(polled_at=now)
        if rb.state == RollbackState.REQUESTED:
            _rollback_check_capacity(env, rb, now)
        if rb.state == RollbackState.SCALING_UP:
            _rollback_wait_capacity(env, rb, now)
        if rb.state == RollbackState.SWITCHING:
            _rollback_switch(env, rb, now)
        return rb.state


def _needed_capacity(env: Environment, rb: Rollback) -> tuple[int, dict]:
    bounds = phase_bounds()
    groups = cloudops.groups(env)
    live = groups[rb.from_colour]
    needed = max(bounds.instances_min, int(live.in_service))
    return needed, {"live_in_service": int(live.in_service), "phase_min": bounds.instances_min,
                    "target_desired": int(groups[rb.to_colour].desired)}


def _rollback_check_capacity(env: Environment, rb: Rollback, now) -> None:
    needed, numbers = _needed_capacity(env, rb)
    healthy = cloudops.healthy_count(env, rb.to_colour)
    rb.needed_capacity = needed
    if healthy >= needed:
        rb.capacity_ready_at = now
        rb.state = RollbackState.SWITCHING
        rb.save(update_fields=["needed_capacity", "capacity_ready_at", "state"])
        event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="rollback", at=now,
                  message=f"{rb.to_colour} can carry the traffic: {healthy} healthy (needs {needed})",
                  data={"healthy": healthy, "needed": needed, **numbers})
        return
    if numbers["target_desired"] < needed:
        _scale_apply(env=env, colour=rb.to_colour, desired=needed, actor=f"system:rollback:{rb.public_id}",
                     reason=f"rollback: {rb.to_colour} needs {needed} healthy instances before it takes traffic",
                     automatic=True, requested_by_label=rb.requested_by_label, now=now)
    rb.scaled_up = True
    rb.state = RollbackState.SCALING_UP
    rb.save(update_fields=["needed_capacity", "scaled_up", "state"])
    event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="scale", at=now,
              message=f"Scaling {rb.to_colour} up to {needed} and waiting for healthy targets before moving traffic "
                      f"({healthy} healthy now)", data={"healthy": healthy, "needed": needed, **numbers})


def _rollback_wait_capacity(env: Environment, rb: Rollback, now) -> None:
    healthy = cloudops.healthy_count(env, rb.to_colour)
    if healthy >= rb.needed_capacity:
        rb.capacity_ready_at = now
        rb.state = RollbackState.SWITCHING
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
        rb.state = RollbackState.SWITCHING
        rb.save(update_fields=["capacity_ready_at", "state"])
        event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="error", at=now,
                  message=f"Only {healthy} of {rb.needed_capacity} {rb.to_colour} targets healthy after {waited:.0f} s; "
                          f"switching anyway at the phase minimum ({bounds.instances_min})",
                  data={"healthy": healthy, "needed": rb.needed_capacity, "phase_min": bounds.instances_min})
        return
    _rollback_fail(env, rb, now, f"{rb.to_colour} has {healthy} healthy targets after {waited:.0f} s "
                                 f"(needs {rb.needed_capacity}, phase minimum {bounds.instances_min}); traffic was not moved")


def _rollback_switch(env: Environment, rb: Rollback, now) -> None:
    asked = {rb.to_colour: 100, rb.from_colour: 0}
    try:
        seen, tries = cloudops.apply_weights(env, asked)
    except cloudops.WeightsNotApplied as exc:
        event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="error", at=_now(),
                  message=f"Listener did not take {fmt_weights(asked)}: it shows {fmt_weights(exc.seen)} after {exc.attempts} tries {exc.error}", data={"asked": asked, "seen": exc.seen})
        audit_record(actor="system:rollback", verb="environment.weights", target=env, result="error", before={"weights": exc.seen},
                     after={"weights": asked}, extra={"rollback": str(rb.public_id), "attempts": exc.attempts,
                                                      "error": exc.error or str(exc)})
        if (now - rb.requested_at).total_seconds() > float(conf.get("ROLLBACK_CAPACITY_TIMEOUT_SECONDS")):
            _rollback_fail(env, rb, now, f"the listener never showed {asked}: {exc}")
        return
    at = _now()
    rb.switched_at = at
    rb.weights_after = seen
    # Confirm through the API once more (another reader, after the change settled) and the capacity behind it.
    confirm = cloudops.read_weights(env)
    healthy = cloudops.healthy_count(env, rb.to_colour)
    if confirm != asked:
        rb.save(update_fields=["switched_at", "weights_after"])
        event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="error", at=at,
                  message=f"Listener read back {fmt_weights(confirm)} right after showing {fmt_weights(seen)}; switching again", data={"asked": asked})
        return
    rb.confirmed_at = _now()
    rb.finished_at = rb.confirmed_at
    rb.state = RollbackState.COMPLETED
    rb.save(update_fields=["switched_at", "weights_after", "confirmed_at", "finished_at", "state"])
    event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="weights", at=at,
              message=f"Weights read back {fmt_weights(seen)} after {tries} tr{'y' if tries == 1 else 'ies'}; confirmed with {healthy} healthy {rb.to_colour} targets",
              data={"weights": seen, "tries": tries, "healthy": healthy,
                    "seconds_to_switch": rb.seconds("switched_at")})
    dep = rb.deployment
    if dep is not None:
        dep = Deployment.objects.select_for_update().get(pk=dep.pk)
        dep.weights = seen
        dep.finished_at = dep.finished_at or rb.finished_at
        if dep.state == DeploymentState.ROLLING_BACK or dep.state == DeploymentState.COMPLETED:
            set_state(dep, DeploymentState.ROLLED_BACK, now=rb.finished_at, fields=("weights", "finished_at"),
                      message=f"Rolled back: {rb.to_colour} has 100 % of the traffic ({rb.seconds('switched_at')} s after the request)")
        else:
            dep.save(update_fields=["weights", "finished_at"])
    audit_record(actor="system:rollback", verb="environment.rollback_completed", target=env, before={"weights": rb.weights_before},
                 after={"weights": seen}, extra={"rollback": str(rb.public_id), "scaled_up": rb.scaled_up,
                                                 "seconds": rb.seconds("confirmed_at")})


def _rollback_fail(env: Environment, rb: Rollback, now, error: str) -> None:
    rb.state = RollbackState.FAILED
    rb.error = error[:500]
    rb.finished_at = now
    rb.save(update_fields=["state", "error", "finished_at"])
    event_add(environment=env, deployment=rb.deployment, rollback=rb, kind="error", at=now, message=f"Rollback failed: {error}")
    audit_record(actor="system:rollback", verb="environment.rollback_failed", target=env, result="error",
                 extra={"rollback": str(rb.public_id), "error": error})
    transaction.on_commit(partial(raise_alert, environment=env, key=f"rollback-failed:{rb.public_id}", severity="critical",
                                  name="RollbackFailed", summary=f"Rollback on {env.name} failed: {error}",
                                  labels={"rollback": str(rb.public_id)}))


def raise_alert(*, environment: Environment, key: str, name: str, severity: str, summary: str, labels: dict | None = None,
                firing: bool = True, deployment: Deployment | None = None):
    """Through the incidents pipeline (dedup, incident, paging). Never raises: the caller's work is done."""
    try:
        from portal.incidents.services import alert_ingest_internal

        labels = dict(labels or {})
        annotations = {}
        if deployment is not None:
            labels["deployment"] = str(deployment.public_id)
            annotations["deployment_url"] = deployment.get_absolute_url()
        return alert_ingest_internal(
            source="deployments", fingerprint=key, name=name, severity=severity, firing=firing, summary=summary,
            labels=labels, annotations=annotations, environment=environment, grouping_key=f"deployments:{environment.name}:{key}")
    except Exception:  # noqa: BLE001
        log.exception("could not raise alert %s on %s", name, environment)
        return None


# ----------------------------------------------------------------------------------------------
# Scale


def _cooldown_left(env: Environment, colour: str, seconds: float, now) -> float:
    last = (ScaleAction.objects.filter(environment=env, colour=colour, state=ScaleAction.State.APPLIED)
            .order_by("-created_at").values_list("created_at", flat=True).first())
    if last is None:
        return 0.0
    return max(0.0, seconds - (now - last).total_seconds())


def _scale_apply(*, env: Environment, colour: str, desired: int, actor, reason: str, automatic: bool,
                 approved_by=None, requested_by_label: str = "", now=None, dry_run: bool = False) -> ScaleAction:
    """Record and carry out a capacity change (caller holds the environment lock); the read back is stored."""
    now = now or _now()
    group = cloudops.groups(env)[colour]
    action = ScaleAction.objects.create(
        environment=env, colour=colour, from_desired=int(group.desired), to_desired=int(desired), reason=reason[:500],
        state=ScaleAction.State.DRY_RUN if dry_run else ScaleAction.State.APPLIED, automatic=automatic,
        requested_by=_user(actor), requested_by_label=requested_by_label or _label(actor), approved_by=_user(approved_by),
        approved_by_label=_label(approved_by) if approved_by is not None else "", created_at=now,
    )
    if not dry_run:
        try:
            read_back = cloudops.set_capacity(env, colour, int(desired))
        except Exception as exc:
            action.state = ScaleAction.State.FAILED
            action.error = str(exc)[:500]
            action.save(update_fields=["state", "error"])  # rolled back with the caller's transaction
            audit_record_later(exc, actor=actor, verb="environment.scale", target=env, before={"desired": action.from_desired},
                               after={"desired": desired}, extra={"colour": colour, "reason": reason, "automatic": automatic})
            raise
        action.read_back = read_back
        action.applied_at = _now()
        _audit_bounds(actor, env, colour, read_back, before={"min_size": int(group.min_size), "max_size": int(group.max_size)})
        if read_back.get("desired") != int(desired):
            action.state = ScaleAction.State.FAILED
            action.error = f"asked for {desired}, AWS reports {read_back.get('desired')}"
        action.save(update_fields=["read_back", "applied_at", "state", "error"])
    audit_record(actor=actor, verb="environment.scale", target=env, before={"desired": action.from_desired},
                 after={"desired": int(desired), "read_back": action.read_back}, result="ok" if action.state != "failed" else "error",
                 extra={"colour": colour, "reason": reason, "automatic": automatic, "dry_run": dry_run,
                        "approved_by": _label(approved_by) if approved_by else None, "scale_action": str(action.public_id)})
    return action


def _audit_bounds(actor, env: Environment, colour: str, read_back: dict, before: dict | None = None) -> None:
    """AWS's MinSize/MaxSize widened so that a capacity fits (cloudops.set_capacity): a change of its own."""
    if read_back.get("widened"):
        audit_record(actor=actor, verb="environment.group_bounds", target=env, before=before,
                     after={"min_size": read_back.get("min_size"), "max_size": read_back.get("max_size")},
                     extra={"colour": colour, "widened": read_back["widened"]})


def can_approve(who) -> bool:
    """A lead (a user with the approve permission, or a token of lead scope)."""
    from portal.accounts.roles import APPROVE

    if who is None or isinstance(who, str):
        return False
    if hasattr(who, "grants"):
        return bool(who.grants("lead"))
    return bool(getattr(who, "is_authenticated", False) and who.has_perm(APPROVE))


@_audited("environment.scale")
def environment_scale(*, environment: Environment, colour: str, desired: int, actor, reason: str, approved_by=None) -> ScaleAction:
    """Set a colour's desired capacity within the phase's range; above the maximum a lead approves."""
    reason = (reason or "").strip()
    if colour not in COLOURS:
        raise InvalidInput("colour is blue or green")
    try:
        desired = int(desired)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("desired is a whole number of instances") from exc
    if not reason:
        raise InvalidInput("a reason is required")
    bounds = phase_bounds()
    if desired < 0:
        raise InvalidInput("desired cannot be negative")
    if desired > bounds.instances_max:
        if not can_approve(approved_by):
            raise NeedsApproval(f"{desired} is above phase {bounds.number} ({bounds.name})'s maximum of {bounds.instances_max} "
                                f"instances per colour: a lead must approve it")
    with transaction.atomic():
        env = lock_environment(environment)
        if Deployment.objects.filter(environment=env, state__in=[DeploymentState.PREPARING]).exists():
            raise InvalidState("a deployment is preparing the idle colour; scale after it")
        now = _now()
        left = _cooldown_left(env, colour, float(conf.get("SCALE_COOLDOWN_SECONDS")), now)
        if left > 0:
            raise CooldownActive(f"{colour} was scaled less than {conf.get('SCALE_COOLDOWN_SECONDS')} s ago; try again in {left:.0f} s")
        weights = cloudops.read_weights(env)
        if weights.get(colour, 0) > 0 and desired < bounds.instances_min:
            raise InvalidInput(f"{colour} takes traffic: it keeps at least the phase minimum of {bounds.instances_min} instances")
        return _scale_apply(env=env, colour=colour, desired=desired, actor=actor, reason=reason, automatic=False,
                            approved_by=approved_by, now=now)


def scale_request_approval(*, environment: Environment, colour: str, desired: int, reason: str, actor) -> ScaleAction:
    """Record a scale beyond the phase maximum that waits for a lead (the automatic scaler and responders)."""
    with transaction.atomic():
        env = lock_environment(environment)
        pending = ScaleAction.objects.filter(environment=env, colour=colour, state=ScaleAction.State.AWAITING_APPROVAL).first()
        if pending is not None:
            return pending
        group = cloudops.groups(env)[colour]
        action = ScaleAction.objects.create(
            environment=env, colour=colour, from_desired=int(group.desired), to_desired=int(desired), reason=reason[:500],
            state=ScaleAction.State.AWAITING_APPROVAL, automatic=isinstance(actor, str), requested_by=_user(actor),
            requested_by_label=_label(actor), created_at=_now())
        audit_record(actor=actor, verb="environment.scale_requested", target=env, after={"colour": colour, "desired": desired},
                     extra={"reason": reason, "scale_action": str(action.public_id)})
        return action


@_audited("environment.scale", target=lambda kw: kw["action"].environment)
def scale_approve(*, action: ScaleAction, actor) -> ScaleAction:
    """A lead approves a waiting scale beyond the phase maximum: it is carried out now."""
    if not can_approve(actor):
        raise NeedsApproval("only a lead can approve scaling beyond the phase maximum")
    with transaction.atomic():
        env = lock_environment(action.environment)
        action = ScaleAction.objects.select_for_update().get(pk=action.pk)
        if action.state != ScaleAction.State.AWAITING_APPROVAL:
            raise InvalidState(f"this scale request is already {action.get_state_display().lower()}")
        # Four eyes: whoever asked (a person or a token) never approves their own request.
        me = _user(actor)
        if (me is not None and me.pk == action.requested_by_id) or _label(actor) == action.requested_by_label:
            raise NeedsApproval("you asked for this scale yourself: another lead must approve it")
        action.state = ScaleAction.State.APPLIED
        action.approved_by = _user(actor)
        action.approved_by_label = _label(actor)
        action.save(update_fields=["state", "approved_by", "approved_by_label"])
        try:
            read_back = cloudops.set_capacity(env, action.colour, action.to_desired)
        except Exception as exc:
            raise DeploymentError(f"AWS refused the change: {exc}") from exc
        action.read_back = read_back
        action.applied_at = _now()
        _audit_bounds(actor, env, action.colour, read_back)
        if read_back.get("desired") != action.to_desired:
            action.state = ScaleAction.State.FAILED
            action.error = f"asked for {action.to_desired}, AWS reports {read_back.get('desired')}"
        action.save(update_fields=["read_back", "applied_at", "state", "error"])
        audit_record(actor=actor, verb="environment.scale", target=env, before={"desired": action.from_desired},
                     after={"desired": action.to_desired, "read_back": read_back},
                     extra={"colour": action.colour, "reason": action.reason, "approved_by": _label(actor),
                            "requested_by": action.requested_by_label, "scale_action": str(action.public_id)})
        return action


# ----------------------------------------------------------------------------------------------
# RDS failover and the automation switch


@_audited("environment.rds_failover")
def rds_failover(*, environment: Environment, actor, reason: str) -> None:
    """Reboot the Multi-AZ database with failover to its standby. Leads only."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required")
    if not can_approve(actor):
        raise NeedsApproval("only a lead can fail the database over")
    with transaction.atomic():
        env = lock_environment(environment)
        if not env.rds_instance_id:
            raise InvalidInput(f"{env.name} names no RDS instance")
        cloudops.rds_failover(env)
        audit_record(actor=actor, verb="environment.rds_failover", target=env, after={"rds_instance_id": env.rds_instance_id},
                     extra={"reason": reason})


def automation_set(*, environment: Environment, paused: bool, actor, reason: str, dry_run: bool | None = None) -> Environment:
    """Pause all automatic actions (rollouts hold, automatic rollback pages instead) and/or switch dry-run mode."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a reason is required")
    with transaction.atomic():
        env = lock_environment(environment)
        before = {"automation_paused": env.automation_paused, "dry_run": env.dry_run}
        env.automation_paused = bool(paused)
        env.automation_paused_reason = reason[:200] if paused else ""
        if dry_run is not None:
            env.dry_run = bool(dry_run)
        after = {"automation_paused": env.automation_paused, "dry_run": env.dry_run}
        if before == after:
            return env
        env.save(update_fields=["automation_paused", "automation_paused_reason", "dry_run", "updated_at"])
        audit_record(actor=actor, verb="environment.automation", target=env, before=before, after=after, extra={"reason": reason})
        active = Deployment.objects.filter(environment=env, state__in=ACTIVE_DEPLOYMENT_STATES).first()
        if active is not None:
            event_add(environment=env, deployment=active, kind="action", actor=actor,
                      message=("Automation paused: the rollout holds where it is" if paused else "Automation resumed")
                              + f" ({reason})")
            if not paused:
                _enqueue("deployment_step", active.pk)
        return env
