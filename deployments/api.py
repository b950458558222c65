"""JSON API (mounted at /api/v1/): deployments, their controls, rollback and scale per environment."""

from __future__ import annotations

import uuid
from datetime import datetime

from ninja import Router, Schema, Status

from deployments import selectors, services
from deployments.models import Deployment, Rollback, ScaleAction
from portal.api_auth import ScopedTokenAuth, require_environment_grant, require_scope
from portal.cloud.models import Environment
from portal.errors import NotFound

router = Router()


class DeploymentIn(Schema):
    environment: str = ""
    version: str
    strategy: str = "canary"
    launch_template_version: str = ""
    image_id: str = ""
    notes: str = ""
    override_freeze_reason: str = ""


class ReasonIn(Schema):
    reason: str = ""


class ScaleIn(Schema):
    colour: str
    desired: int
    reason: str


class DeploymentOut(Schema):
    id: uuid.UUID
    environment: str
    version: str
    strategy: str
    from_colour: str
    to_colour: str
    state: str
    step: int
    steps: int
    weights: dict
    progress: int
    pause_reason: str
    failure_reason: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str


class RollbackOut(Schema):
    id: uuid.UUID
    environment: str
    deployment: uuid.UUID | None
    from_colour: str
    to_colour: str
    state: str
    automatic: bool
    scaled_up: bool
    needed_capacity: int
    requested_by: str
    requested_at: datetime
    capacity_ready_at: datetime | None
    switched_at: datetime | None
    confirmed_at: datetime | None
    weights_before: dict
    weights_after: dict
    error: str


class ScaleOut(Schema):
    id: uuid.UUID
    environment: str
    colour: str
    from_desired: int
    to_desired: int
    state: str
    reason: str
    requested_by: str
    approved_by: str
    read_back: dict
    error: str


def deployment_out(d: Deployment) -> dict:
    return {
        "id": d.public_id, "environment": d.environment.name, "version": d.release.version, "strategy": d.strategy.slug,
        "from_colour": d.from_colour, "to_colour": d.to_colour, "state": d.state, "step": d.step_index + 1,
        "steps": d.total_steps, "weights": d.weights, "progress": d.progress_percent, "pause_reason": d.pause_reason,
        "failure_reason": d.failure_reason, "created_by": d.created_by_label, "created_at": d.created_at,
        "started_at": d.started_at, "finished_at": d.finished_at, "url": d.get_absolute_url(),
    }


def rollback_out(r: Rollback) -> dict:
    return {
        "id": r.public_id, "environment": r.environment.name, "deployment": r.deployment.public_id if r.deployment_id else None,
        "from_colour": r.from_colour, "to_colour": r.to_colour, "state": r.state, "automatic": r.automatic,
        "scaled_up": r.scaled_up, "needed_capacity": r.needed_capacity, "requested_by": r.requested_by_label,
        "requested_at": r.requested_at, "capacity_ready_at": r.capacity_ready_at, "switched_at": r.switched_at,
        "confirmed_at": r.confirmed_at, "weights_before": r.weights_before, "weights_after": r.weights_after, "error": r.error,
    }


def scale_out(a: ScaleAction) -> dict:
    return {
        "id": a.public_id, "environment": a.environment.name, "colour": a.colour, "from_desired": a.from_desired,
        "to_desired": a.to_desired, "state": a.state, "reason": a.reason, "requested_by": a.requested_by_label,
        "approved_by": a.approved_by_label, "read_back": a.read_back, "error": a.error,
    }


def _env(name: str) -> Environment:
    if not name:
        try:
            return Environment.objects.get_default()
        except Environment.DoesNotExist as exc:
            raise NotFound("no default environment; pass environment") from exc
    env = Environment.objects.filter(name=name).first()
    if env is None:
        raise NotFound(f"no environment named {name!r}")
    return env


def _deployment(deployment_id: str) -> Deployment:
    try:
        key = uuid.UUID(str(deployment_id))
    except ValueError as exc:
        raise NotFound("no such deployment") from exc
    d = Deployment.objects.select_related("environment", "release", "strategy").filter(public_id=key).first()
    if d is None:
        raise NotFound("no such deployment")
    return d


def _call(fn, **kwargs):
    # Every write names its environment (or a deployment or scale action of one): a production one
    # needs the token's grant.
    target = kwargs.get("environment") or getattr(kwargs.get("deployment") or kwargs.get("action"), "environment", None)
    require_environment_grant(kwargs.get("actor"), target)
    return fn(**kwargs)


@router.get("/deployments", response=list[DeploymentOut], summary="Deployments, newest first")
def list_deployments(request, environment: str = "", limit: int = 20):
    require_scope(request, "read")
    qs = Deployment.objects.select_related("environment", "release", "strategy")
    if environment:
        qs = qs.filter(environment=_env(environment))
    return [deployment_out(d) for d in qs[: max(1, min(limit, 200))]]


@router.post("/deployments", response={201: DeploymentOut}, summary="Start a rollout of a release to the idle colour",
             auth=ScopedTokenAuth("actions"))
def create_deployment(request, payload: DeploymentIn):
    token = require_scope(request, "actions")
    d = _call(services.deployment_create, environment=_env(payload.environment), version=payload.version,
              strategy=payload.strategy, launch_template_version=payload.launch_template_version,
              image_id=payload.image_id, notes=payload.notes, override_freeze_reason=payload.override_freeze_reason, actor=token)
    return Status(201, deployment_out(Deployment.objects.select_related("environment", "release", "strategy").get(pk=d.pk)))


@router.get("/deployments/{deployment_id}", response=DeploymentOut)
def get_deployment(request, deployment_id: str):
    require_scope(request, "read")
    return deployment_out(_deployment(deployment_id))


def _control(request, deployment_id: str, payload: ReasonIn | None, fn):
    token = require_scope(request, "actions")
    d = _call(fn, deployment=_deployment(deployment_id), actor=token, reason=(payload.reason if payload else ""))
    return deployment_out(Deployment.objects.select_related("environment", "release", "strategy").get(pk=d.pk))


@router.post("/deployments/{deployment_id}/pause", response=DeploymentOut, auth=ScopedTokenAuth("actions"))
def pause(request, deployment_id: str, payload: ReasonIn | None = None):
    return _control(request, deployment_id, payload, services.deployment_pause)


@router.post("/deployments/{deployment_id}/resume", response=DeploymentOut, auth=ScopedTokenAuth("actions"))
def resume(request, deployment_id: str, payload: ReasonIn | None = None):
    return _control(request, deployment_id, payload, services.deployment_resume)


@router.post("/deployments/{deployment_id}/promote", response=DeploymentOut, auth=ScopedTokenAuth("actions"))
def promote(request, deployment_id: str, payload: ReasonIn | None = None):
    return _control(request, deployment_id, payload, services.deployment_promote)


@router.post("/deployments/{deployment_id}/abort", response=DeploymentOut, auth=ScopedTokenAuth("actions"))
def abort(request, deployment_id: str, payload: ReasonIn | None = None):
    return _control(request, deployment_id, payload, services.deployment_abort)


@router.post("/environments/{name}/rollback", response={202: RollbackOut},
             summary="One-click rollback (409 when one is already running)", auth=ScopedTokenAuth("actions"))
def rollback(request, name: str, payload: ReasonIn | None = None):
    token = require_scope(request, "actions")
    rb = _call(services.environment_rollback, environment=_env(name), actor=token, reason=payload.reason if payload else "")
    return Status(202, rollback_out(Rollback.objects.select_related("environment", "deployment").get(pk=rb.pk)))


@router.get("/environments/{name}/rollback", response={200: RollbackOut, 404: dict}, summary="The latest rollback")
def rollback_status(request, name: str):
    require_scope(request, "read")
    rb = selectors.latest_rollback(_env(name))
    if rb is None:
        raise NotFound("no rollback yet")
    return Status(200, rollback_out(rb))


@router.post("/environments/{name}/scale", response={200: ScaleOut},
             summary="Set a colour's desired capacity (beyond the phase maximum needs a lead-scope token)",
             auth=ScopedTokenAuth("actions"))
def scale(request, name: str, payload: ScaleIn):
    token = require_scope(request, "actions")
    approver = token if token.grants("lead") else None
    action = _call(services.environment_scale, environment=_env(name), colour=payload.colour, desired=payload.desired,
                   actor=token, reason=payload.reason, approved_by=approver)
    return Status(200, scale_out(action))
