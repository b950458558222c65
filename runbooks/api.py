"""Runbooks JSON API, mounted at /api/v1/runbooks: list, start a run, read a run, record a step outcome."""

from __future__ import annotations

import uuid

from django.http import HttpRequest
from ninja import Router, Schema, Status

from portal.api_auth import ScopedTokenAuth, require_scope
from portal.cloud.models import Environment
from portal.errors import Invalid, NotFound
from portal.incidents.models import Incident
from runbooks import selectors, services
from runbooks.actions import ACTIONS
from runbooks.models import OutcomeStatus

router = Router()


class RunIn(Schema):
    incident: uuid.UUID | None = None
    environment: str | None = None


class StepIn(Schema):
    status: str = "done"
    note: str = ""
    answer: str = ""
    evidence: dict | None = None


def _run(run_id: uuid.UUID):
    run = selectors.run_get(run_id)
    if run is None:
        raise NotFound(f"no run {run_id}")
    return run


@router.get("")
def list_runbooks(request: HttpRequest):
    require_scope(request, "read")
    out = []
    for rb in selectors.library():
        v = rb.current_version
        out.append(
            {
                "slug": rb.slug,
                "title": rb.title,
                "summary": rb.summary,
                "version": v.number if v else None,
                "versions": rb.version_count,
                "steps": [{"id": s["id"], "kind": s["kind"], "title": s["title"]} for s in (v.steps if v else [])],
                "alerts": v.definition.get("alerts", []) if v else [],
                "runs": rb.run_count,
                "last_used_at": rb.last_used_at.isoformat() if rb.last_used_at else None,
                "load_error": rb.last_load_error or None,
                "url": rb.get_absolute_url(),
            }
        )
    return out


@router.get("/runs/{run_id}")
def get_run(request: HttpRequest, run_id: uuid.UUID):
    require_scope(request, "read")
    return selectors.run_to_dict(_run(run_id))


@router.post("/runs/{run_id}/steps/{step_id}", auth=ScopedTokenAuth("actions"))
def record_step(request: HttpRequest, run_id: uuid.UUID, step_id: str, payload: StepIn):
    """Record an outcome. For an action step, status "done" takes the action (its scope: `actions`,
    `lead` for RDS failover); for an escalate step, "done" escalates. Returns the run."""
    token = require_scope(request, "actions")
    run = _run(run_id)
    step = run.version.step(step_id)
    if step is None:
        raise NotFound(f"step {step_id!r} is not in {run.version}")
    if payload.status not in OutcomeStatus.values:
        raise Invalid(f"status must be one of {', '.join(OutcomeStatus.values)}")
    if step["kind"] == "action" and payload.status == OutcomeStatus.DONE:
        spec = ACTIONS[step["action"]]
        require_scope(request, spec.scope, environment=run.environment)
        outcome = services.step_action_take(run=run, step_id=step_id, note=payload.note, actor=token)
    elif step["kind"] == "escalate" and payload.status == OutcomeStatus.DONE:
        outcome = services.step_escalate(run=run, step_id=step_id, note=payload.note, actor=token)
    else:
        evidence = payload.evidence
        if evidence is not None and len(str(evidence)) > 20000:
            raise Invalid("evidence is larger than 20000 characters")
        outcome = services.step_record(
            run=run,
            step_id=step_id,
            status=payload.status,
            note=payload.note,
            answer=payload.answer,
            evidence={"source": "api", **evidence} if evidence else None,
            actor=token,
        )
    run.refresh_from_db()
    body = selectors.run_to_dict(run)
    body["recorded"] = {"step": outcome.step_id, "status": outcome.status, "evidence": outcome.evidence}
    return body


@router.post("/{slug}/runs", response={201: dict}, auth=ScopedTokenAuth("actions"))
def start_run(request: HttpRequest, slug: str, payload: RunIn):
    token = require_scope(request, "actions")
    runbook = selectors.runbook_get(slug)
    if runbook is None:
        raise NotFound(f"no runbook {slug!r}")
    incident = environment = None
    if payload.incident:
        incident = Incident.objects.filter(public_id=payload.incident).first()
        if incident is None:
            raise NotFound(f"no incident {payload.incident}")
    if payload.environment:
        environment = Environment.objects.filter(name=payload.environment).first()
        if environment is None:
            raise NotFound(f"no environment {payload.environment!r}")
    run = services.run_start(runbook=runbook, incident=incident, environment=environment, actor=token)
    return Status(201, selectors.run_to_dict(run))


@router.get("/{slug}")
def get_runbook(request: HttpRequest, slug: str):
    require_scope(request, "read")
    rb = selectors.runbook_get(slug)
    if rb is None or rb.current_version is None:
        raise NotFound(f"no runbook {slug!r}")
    return {"slug": rb.slug, "title": rb.title, "version": rb.current_version.number, "definition": rb.current_version.definition}
