"""The deployments app's commands (what views, the API, runbooks and tasks call): rollouts, rollback,
scale, failover, the automation switch.

Concurrency: the environment row is the aggregate root. Every command that changes listener
weights or capacity first takes `select_for_update` on it (deployments.mechanics.lock_environment), so
a rollback click, a second click, the automatic rollback and a rollout step are serialised; the
partial unique constraints on Deployment and Rollback hold even if a caller forgets the lock. Each
change writes its audit row in the same transaction and enqueues its task by name after commit.
The engines are deployments.rollout and deployments.rollback.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from deployments import cloudops, conf, freezes, images
from deployments.bounds import phase_bounds
from deployments.errors import (
    AlreadyInProgress,
    CooldownActive,
    DeploymentError,
    InvalidInput,
    InvalidState,
    NeedsApproval,
)
from deployments.mechanics import (
    audit_bounds,
    audited,
    can_approve,
    cooldown_left,
    event_add,
    fmt_weights,
    live_colour,
    lock_environment,
    open_incidents_note,
    scale_apply,
    scale_words,
    set_state,
)
from deployments.models import (
    ACTIVE_DEPLOYMENT_STATES,
    ACTIVE_ROLLBACK_STATES,
    Deployment,
    DeploymentState,
    Release,
    Rollback,
    ScaleAction,
    Strategy,
    other_colour,
)
from deployments.rollback import rollback_start
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud.models import COLOURS, Environment
from portal.incidents import silences
from portal.tasking import enqueue

# ----------------------------------------------------------------------------------------------
# Deployments


@audited("deployment.create")
def deployment_create(
    *, environment: Environment, version: str, strategy: Strategy | str, actor, launch_template_version: str = "",
    image_id: str = "", notes: str = "", override_freeze_reason: str = "",
) -> Deployment:
    """Start a rollout of `version` to the idle colour. One at a time per environment; none in a freeze
    (deployments.freezes) unless a lead overrides it with a reason."""
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
    images.require_approved_image(environment=environment, image_id=image_id, launch_template_version=launch_template_version)

    try:
        with transaction.atomic():
            env = lock_environment(environment)
            active = Deployment.objects.filter(environment=env, state__in=ACTIVE_DEPLOYMENT_STATES).first()
            if active is not None:
                raise AlreadyInProgress(f"a deployment ({active.release.version}, {active.get_state_display().lower()}) is already running on {env.name}", deployment=active)
            running = Rollback.objects.filter(environment=env, state__in=ACTIVE_ROLLBACK_STATES).first()
            if running is not None:
                raise AlreadyInProgress(f"a rollback to {running.to_colour} is running on {env.name}", rollback=running)
            override = freezes.freeze_gate(environment=env, actor=actor, override_reason=override_freeze_reason, version=version)
            weights = cloudops.read_weights(env)
            if sorted(weights.values()) != [0, 100]:
                raise InvalidState(f"traffic is split ({fmt_weights(weights)}); roll back or finish the split before a new deployment")
            source = live_colour(weights)
            release = Release.objects.filter(environment=env, version=version).first()
            if release is None:
                release = Release.objects.create(
                    environment=env, version=version, launch_template_version=launch_template_version,
                    image_id=image_id, notes=notes[:500], created_by_label=Actor.of(actor).label)
            elif (release.launch_template_version, release.image_id) != (launch_template_version, image_id):
                raise InvalidInput(f"release {version} already exists with another launch spec "
                                   f"(launch template version {release.launch_template_version or '-'}, image {release.image_id or '-'})")
            now = timezone.now()
            dep = Deployment.objects.create(
                environment=env, release=release, strategy=strategy, from_colour=source, to_colour=other_colour(source),
                state=DeploymentState.PENDING, weights=weights, created_by=Actor.of(actor).user, created_by_label=Actor.of(actor).label,
                wake_at=now, state_entered_at=now, progressed_at=now, freeze_override_reason=override,
            )
            event_add(environment=env, deployment=dep, kind="state", actor=actor,
                      message=f"Deployment of {version} to {dep.to_colour} with {strategy.name} requested",
                      data={"weights": weights, "strategy": strategy.slug})
            audit_record(actor=actor, verb="deployment.create", target=dep, after={
                "version": version, "strategy": strategy.slug, "from": dep.from_colour, "to": dep.to_colour,
                "launch_template_version": launch_template_version, "image_id": image_id}, extra={"environment": env.name})
            enqueue("deployments.tasks.deployment_step", dep.pk)
            return dep
    except IntegrityError as exc:
        if "deployment_one_active_per_env" in str(exc):
            raise AlreadyInProgress(f"a deployment is already running on {environment.name}") from exc
        raise


def environment_images_set(*, environment: Environment, owners, image_ids, actor, reason: str = "") -> Environment:
    """Replace the environment's allow-list of image owners and ids (an environment edit: leads and admins)."""
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
        dep.pause_reason = (reason or f"paused by {Actor.of(actor).label}")[:300]
        set_state(dep, DeploymentState.PAUSED, actor=actor, message=f"Paused by {Actor.of(actor).label}" + (f": {reason}" if reason else ""),
                  fields=("paused_from", "pause_reason"))
        audit_record(actor=actor, verb="deployment.pause", target=dep, before={"state": before}, after={"state": dep.state},
                     extra={"reason": reason, "environment": env.name})
        # A planned hold: the stall watchdog's alert for this rollout is expected, not news.
        silences.silence_expected(environment=env, metrics=[], what="deployment hold", actor=actor,
                                  ends_at=timezone.now() + HOLD_SILENCE, ref=f"deployment-hold:{dep.public_id}",
                                  extra=[{"alertname": "RolloutStalled", "deployment": str(dep.public_id)}])
        return dep


def deployment_resume(*, deployment: Deployment, actor, reason: str = "") -> Deployment:
    with transaction.atomic():
        env, dep = _locked_deployment(deployment)
        if dep.state != DeploymentState.PAUSED:
            if dep.state in PAUSABLE:
                return dep  # a second click: already running
            raise InvalidState(f"a deployment that is {dep.get_state_display().lower()} cannot be resumed")
        now = timezone.now()
        target = dep.paused_from or DeploymentState.HOLDING
        dep.wake_at = now
        if target == DeploymentState.HOLDING and dep.step_index >= 0:
            # The same evidence goes on (the hold's start is kept): analyse now, and, if it still cannot
            # tell, for up to another extension before pausing again.
            dep.hold_extended_until = now + timedelta(seconds=dep.strategy.template.max_extension_seconds)
        dep.paused_from = ""
        dep.pause_reason = ""
        set_state(dep, target, now=now, actor=actor, message=f"Resumed by {Actor.of(actor).label}" + (f": {reason}" if reason else ""),
                  fields=("wake_at", "paused_from", "pause_reason", "hold_extended_until"))
        audit_record(actor=actor, verb="deployment.resume", target=dep, before={"state": "paused"}, after={"state": dep.state},
                     extra={"reason": reason, "environment": env.name})
        silences.silences_finish(ref=f"deployment-hold:{dep.public_id}", actor=actor)
        enqueue("deployments.tasks.deployment_step", dep.pk)
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
        now = timezone.now()
        dep.step_index = max(dep.step_index, len(dep.strategy.weights) - 2)
        dep.wake_at = now
        dep.paused_from = ""
        dep.pause_reason = ""
        dep.baseline = {**(dep.baseline or {}), "promoted": True}
        set_state(dep, DeploymentState.SHIFTING, now=now, actor=actor,
                  message=f"Promoted by {Actor.of(actor).label}: remaining holds skipped" + (f" ({reason})" if reason else ""),
                  fields=("step_index", "wake_at", "paused_from", "pause_reason", "baseline"))
        audit_record(actor=actor, verb="deployment.promote", target=dep, before=before, after={"state": dep.state},
                     extra={"reason": reason, "environment": env.name})
        silences.silences_finish(ref=f"deployment-hold:{dep.public_id}", actor=actor)
        enqueue("deployments.tasks.deployment_step", dep.pk)
        return dep


@audited("deployment.abort", target="deployment")
def deployment_abort(*, deployment: Deployment, actor, reason: str = "") -> Deployment:
    """Stop the rollout. Before any traffic moved it just ends; afterwards it rolls back."""
    reason = (reason or "").strip()
    with transaction.atomic():
        env, dep = _locked_deployment(deployment)
        if dep.state in (DeploymentState.ROLLING_BACK, DeploymentState.ABORTED):
            return dep  # a second click
        if not dep.is_active:
            raise InvalidState(f"a deployment that is {dep.get_state_display().lower()} cannot be aborted; use rollback")
        silences.silences_finish(ref=f"deployment-hold:{dep.public_id}", actor=actor)  # a hold ends with the rollout
        moved = dep.step_index >= 0 or cloudops.read_weights(env).get(dep.to_colour, 0) > 0
        if not moved:
            now = timezone.now()
            before_desired = (dep.baseline or {}).get("to_desired_before")
            if before_desired is not None and cloudops.groups(env)[dep.to_colour].desired != before_desired:
                scale_apply(env=env, colour=dep.to_colour, desired=int(before_desired), actor=actor, automatic=False,
                            reason=f"deployment {dep.release.version} aborted: idle {dep.to_colour} back to {before_desired}", now=now)
            dep.finished_at = now
            dep.failure_reason = f"aborted by {Actor.of(actor).label}" + (f": {reason}" if reason else "")
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


def environment_rollback(*, environment: Environment, actor, reason: str = "", deployment: Deployment | None = None,
                         automatic: bool = False) -> Rollback:
    """One click: traffic back to the previous colour, once its capacity is healthy. Raises AlreadyInProgress."""
    return rollback_start(environment=environment, actor=actor, reason=reason, deployment=deployment, automatic=automatic)


# ----------------------------------------------------------------------------------------------
# Scale


# How long the portal's own actions silence what they are expected to cause (plus the silences' margin).
HOLD_SILENCE = timedelta(hours=12)
FAILOVER_SILENCE = timedelta(minutes=10)
SCALE_SILENCE = timedelta(minutes=10)


def _silence_scale(env: Environment, action: ScaleAction, actor) -> None:
    """Instances launching or draining: the colour's group check and CPU are expected to move."""
    if getattr(action, "state", "") != ScaleAction.State.APPLIED:
        return
    silences.silence_expected(environment=env, metrics=["cpu"], what="scale", actor=actor, colour=action.colour,
                              ends_at=timezone.now() + SCALE_SILENCE, ref=f"scale:{action.public_id}",
                              extra=[{"check": f"{env.name}-asg-{action.colour}"}])


@audited("environment.scale")
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
        now = timezone.now()
        left = cooldown_left(env, colour, float(conf.get("SCALE_COOLDOWN_SECONDS")), now)
        if left > 0:
            raise CooldownActive(f"{colour} was scaled less than {conf.get('SCALE_COOLDOWN_SECONDS')} s ago; try again in {left:.0f} s")
        weights = cloudops.read_weights(env)
        if weights.get(colour, 0) > 0 and desired < bounds.instances_min:
            raise InvalidInput(f"{colour} takes traffic: it keeps at least the phase minimum of {bounds.instances_min} instances")
        action = scale_apply(env=env, colour=colour, desired=desired, actor=actor, reason=reason, automatic=False,
                             approved_by=approved_by, now=now)
        _silence_scale(env, action, actor)
        return action


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
            state=ScaleAction.State.AWAITING_APPROVAL, automatic=Actor.of(actor).is_system, requested_by=Actor.of(actor).user,
            requested_by_label=Actor.of(actor).label, created_at=timezone.now())
        audit_record(actor=actor, verb="environment.scale_requested", target=env, after={"colour": colour, "desired": desired},
                     extra={"reason": reason, "scale_action": str(action.public_id)})
        return action


@audited("environment.scale", target=lambda kw: kw["action"].environment)
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
        me = Actor.of(actor).user
        if (me is not None and me.pk == action.requested_by_id) or Actor.of(actor).label == action.requested_by_label:
            raise NeedsApproval("you asked for this scale yourself: another lead must approve it")
        action.state = ScaleAction.State.APPLIED
        action.approved_by = Actor.of(actor).user
        action.approved_by_label = Actor.of(actor).label
        action.save(update_fields=["state", "approved_by", "approved_by_label"])
        try:
            read_back = cloudops.set_capacity(env, action.colour, action.to_desired)
        except Exception as exc:
            raise DeploymentError(f"AWS refused the change: {exc}") from exc
        action.read_back = read_back
        action.applied_at = timezone.now()
        audit_bounds(actor, env, action.colour, read_back)
        if read_back.get("desired") != action.to_desired:
            action.state = ScaleAction.State.FAILED
            action.error = f"asked for {action.to_desired}, AWS reports {read_back.get('desired')}"
        action.save(update_fields=["read_back", "applied_at", "state", "error"])
        _silence_scale(env, action, actor)
        audit_record(actor=actor, verb="environment.scale", target=env, before={"desired": action.from_desired},
                     after={"desired": action.to_desired, "read_back": read_back},
                     extra={"colour": action.colour, "reason": action.reason, "approved_by": Actor.of(actor).label,
                            "requested_by": action.requested_by_label, "scale_action": str(action.public_id)})
        open_incidents_note(environment=env, kind="cloud_action", actor=actor, text=scale_words(action, env),
                            data={"scale_action": str(action.public_id), "colour": action.colour, "state": action.state})
        return action


# ----------------------------------------------------------------------------------------------
# RDS failover and the automation switch


@audited("environment.rds_failover")
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
        open_incidents_note(environment=env, kind="cloud_action", actor=actor, data={"rds_instance_id": env.rds_instance_id},
                            text=f"{Actor.of(actor).label} failed the {env.name} database ({env.rds_instance_id}) over to its "
                                 f"standby ({reason}): reboot with failover requested, AWS accepted it")
        # The failover's blips (connections drop, the database check fails over a minute or two) page nobody.
        silences.silence_expected(environment=env, metrics=["db_connections"], what="rds failover", actor=actor,
                                  ends_at=timezone.now() + FAILOVER_SILENCE, ref=f"rds-failover:{env.name}:{timezone.now():%Y%m%d%H%M%S}",
                                  extra=[{"kind": "rds"}])


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
                enqueue("deployments.tasks.deployment_step", active.pk)
        return env
