"""Writes for runbook runs: start, record a step outcome, take a step's action, escalate, abandon.

Each writes its audit row in the same transaction and, when the run belongs to an incident, a
`runbook_step` entry on the incident's timeline.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import errors
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud.models import Environment
from portal.events import emit
from portal.incidents import escalation
from portal.incidents import services as incident_services
from portal.incidents.models import Incident
from runbooks.actions import ACTIONS, ActionFailed, run_action
from runbooks.checks import run_check
from runbooks.models import OutcomeStatus, Runbook, RunbookRun, RunStatus, StepOutcome
from runbooks.paths import run_path

log = logging.getLogger(__name__)


class RunbookError(errors.PortalError):
    """A refused request; `status` and `code` are the API's error body, `detail` the page's message."""

    status, code = 400, "bad_request"


class NotFound(RunbookError, errors.NotFound):
    status, code = 404, "not_found"


class Conflict(RunbookError, errors.Conflict):
    status, code = 409, "conflict"


class Invalid(RunbookError, errors.Invalid):
    status, code = 422, "invalid"


# --- helpers ----------------------------------------------------------------------------------


def _timeline(run: RunbookRun, *, actor: Any, text: str, data: dict) -> None:
    if run.incident is None:
        return
    incident_services.incident_timeline_add(incident=run.incident, kind="runbook_step", actor=actor, text=text, data=data)


def _default_environment():
    return Environment.objects.filter(name=settings.DEFAULT_ENVIRONMENT).first()


# --- services ---------------------------------------------------------------------------------


def run_start(*, runbook: Runbook, actor: Any, incident=None, environment=None) -> RunbookRun:
    """Start a run on the runbook's current version. From an incident, an open run of the same
    runbook is returned instead of a second one (safe to click twice; another responder resumes it)."""
    version = runbook.current_version
    if version is None:
        raise Conflict(f"runbook {runbook.slug} has no loaded version: {runbook.last_load_error or 'run sync_runbooks'}")
    if environment is None and incident is not None:
        environment = getattr(incident, "environment", None)
    if environment is None:
        environment = _default_environment()
    with transaction.atomic():
        if incident is not None:
            # Lock the incident row so two responders clicking "start" at once get one run.
            type(incident).objects.select_for_update().filter(pk=incident.pk).first()
            existing = (
                RunbookRun.objects.filter(incident=incident, version__runbook=runbook, status=RunStatus.RUNNING)
                .select_related("version__runbook")
                .first()
            )
            if existing is not None:
                return existing
        run = RunbookRun.objects.create(
            version=version,
            incident=incident,
            environment=environment,
            started_by=Actor.of(actor).user,
            started_by_label=Actor.of(actor).label,
        )
        audit_record(
            actor=actor,
            verb="runbook.run_start",
            target=run,
            after={"runbook": runbook.slug, "version": version.number, "environment": getattr(environment, "name", None)},
            extra={"incident": str(incident.public_id) if incident is not None else None},
        )
        _timeline(
            run,
            actor=actor,
            text=f"Runbook started: {runbook.title} (v{version.number})",
            data={"run": str(run.public_id), "runbook": runbook.slug, "version": version.number, "event": "start"},
        )
    return run


def _lock_run(run: RunbookRun) -> RunbookRun:
    return RunbookRun.objects.select_for_update(of=("self",)).select_related("version__runbook", "incident", "environment").get(pk=run.pk)


def step_record(
    *,
    run: RunbookRun,
    step_id: str,
    status: str,
    actor: Any,
    note: str = "",
    answer: str = "",
    evidence: dict | None = None,
) -> StepOutcome:
    """Record done / skipped (reason required) / failed for the run's current step.

    Recording the same outcome twice returns the first; a different outcome for a step already
    recorded, or for a step that is not the current one, is a Conflict.
    """
    note = (note or "").strip()
    answer = (answer or "").strip()
    if status not in OutcomeStatus.values:
        raise Invalid(f"status must be one of {', '.join(OutcomeStatus.values)}")
    if len(note) > 4000:
        raise Invalid("the note is longer than 4000 characters")
    with transaction.atomic():
        run = _lock_run(run)
        step = run.version.step(step_id)
        if step is None:
            raise NotFound(f"step {step_id!r} is not in {run.version}")
        existing = run.outcomes.filter(step_id=step_id).first()
        if existing is not None:
            if existing.status == status and existing.answer == answer:
                return existing
            raise Conflict(f"step {step_id!r} was already marked {existing.status} by {existing.actor_label}")
        if run.status != RunStatus.RUNNING:
            raise Conflict(f"this run is {run.status}")
        outcomes = {o.step_id: o for o in run.outcomes.all()}
        visited, current = run_path(run.version, outcomes)
        if step_id != current:
            raise Conflict(f"step {step_id!r} is not the current step (current: {current or 'none, the run is at its end'})")
        if status == OutcomeStatus.SKIPPED and not note:
            raise Invalid("a skipped step needs a reason")
        if step["kind"] == "decision" and status == OutcomeStatus.DONE:
            ids = [a["id"] for a in step["answers"]]
            if answer not in ids:
                raise Invalid(f"answer must be one of {', '.join(ids)}")
        elif answer and step["kind"] != "decision":
            raise Invalid("only decision steps take an answer")
        if step["kind"] == "action" and status == OutcomeStatus.DONE and evidence is None:
            raise Invalid("an action step is done by taking its action (or mark it skipped or failed with a note)")
        if evidence is None and step["kind"] == "check":
            # What the responder saw when the step opened; read it now if the page never showed it.
            evidence = (run.readings or {}).get(step_id) or run_check(
                step["source"], environment=run.environment, incident=run.incident, params=step.get("params")
            )
        try:
            with transaction.atomic():
                outcome = StepOutcome.objects.create(
                    run=run,
                    step_id=step_id,
                    position=len(visited) + 1,
                    status=status,
                    note=note,
                    answer=answer,
                    evidence=evidence or {},
                    actor=Actor.of(actor).user,
                    actor_label=Actor.of(actor).label,
                )
        except IntegrityError as exc:
            raise Conflict(f"step {step_id!r} was recorded by someone else at the same moment") from exc
        outcomes[step_id] = outcome
        _, next_step = run_path(run.version, outcomes)
        answer_label = ""
        if answer:
            answer_label = next((a["label"] for a in step["answers"] if a["id"] == answer), answer)
        audit_record(
            actor=actor,
            verb="runbook.step_record",
            target=run,
            after={"step": step_id, "status": status, "answer": answer or None, "next": next_step},
            extra={"runbook": run.version.runbook.slug, "version": run.version.number, "note": note, "evidence": evidence or {}},
        )
        text = f"{run.version.runbook.title} · {step['title']}: {status}"
        if answer_label:
            text += f" → {answer_label}"
        words = (evidence or {}).get("words")
        if words:
            text += f" — {words}"
        if note:
            text += f" (note: {note})"
        _timeline(
            run,
            actor=actor,
            text=text[:2000],
            data={
                "run": str(run.public_id),
                "runbook": run.version.runbook.slug,
                "step": step_id,
                "status": status,
                "answer": answer or None,
                "evidence": evidence or {},
            },
        )
        if next_step is None:
            run.status = RunStatus.COMPLETED
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "finished_at", "updated_at"])
            audit_record(actor=actor, verb="runbook.run_complete", target=run, after={"status": run.status})
            # Listeners learn of it after commit (the checklist keeps a restore run as DR evidence).
            emit("runbook.run_completed", {"run": str(run.public_id), "runbook": run.version.runbook.slug,
                                           "version": run.version.number, "environment": getattr(run.environment, "name", None),
                                           "incident": str(run.incident.public_id) if run.incident is not None else None})
            _timeline(
                run,
                actor=actor,
                text=f"Runbook finished: {run.version.runbook.title}",
                data={"run": str(run.public_id), "runbook": run.version.runbook.slug, "event": "complete"},
            )
        else:
            run.save(update_fields=["updated_at"])
    return outcome


def step_reading_save(*, run: RunbookRun, step_id: str, reading: dict) -> None:
    """Keep what a check step showed, so the outcome saves the value the responder looked at."""
    with transaction.atomic():
        locked = RunbookRun.objects.select_for_update().get(pk=run.pk)
        readings = dict(locked.readings or {})
        readings[step_id] = reading
        locked.readings = readings
        locked.save(update_fields=["readings"])


def _check_current(run: RunbookRun, step_id: str) -> dict:
    step = run.version.step(step_id)
    if step is None:
        raise NotFound(f"step {step_id!r} is not in {run.version}")
    if run.status != RunStatus.RUNNING:
        raise Conflict(f"this run is {run.status}")
    outcomes = {o.step_id: o for o in run.outcomes.all()}
    _, current = run_path(run.version, outcomes)
    if step_id != current:
        raise Conflict(f"step {step_id!r} is not the current step (current: {current or 'none'})")
    return step


def _claim(run: RunbookRun, step_id: str) -> bool:
    return RunbookRun.objects.filter(pk=run.pk, claimed_step="").update(claimed_step=step_id) == 1


def _release(run: RunbookRun) -> None:
    RunbookRun.objects.filter(pk=run.pk).update(claimed_step="")


def step_action_take(*, run: RunbookRun, step_id: str, actor: Any, note: str = "") -> StepOutcome:
    """Carry out an action step's action and record the result (done, or failed with the reason).

    Permission is the caller's job (the same permission/scope the deployments pages and API need:
    see runbooks.actions.ACTIONS). A second click while the first runs is refused; after it ran,
    the recorded outcome is returned.
    """
    existing = run.outcomes.filter(step_id=step_id).first()
    if existing is not None:
        return existing
    step = _check_current(run, step_id)
    if step["kind"] != "action":
        raise Invalid(f"step {step_id!r} is a {step['kind']} step, not an action")
    if not _claim(run, step_id):
        raise Conflict("an action of this run is already being carried out; wait for its result")
    try:
        existing = run.outcomes.filter(step_id=step_id).first()
        if existing is not None:
            return existing
        try:
            result = run_action(step["action"], run=run, step=step, actor=actor)
            status = OutcomeStatus.DONE
        except ActionFailed as exc:
            result = {"words": str(exc), "error": True}
            status = OutcomeStatus.FAILED
        result = {"action": step["action"], **result}
        return step_record(run=run, step_id=step_id, status=status, actor=actor, note=note or ("" if status == "done" else result["words"]), evidence=result)
    finally:
        _release(run)


def step_escalate(*, run: RunbookRun, step_id: str, actor: Any, note: str = "") -> StepOutcome:
    """Notify the next level of the incident's escalation policy, through the incidents app when it offers it."""
    existing = run.outcomes.filter(step_id=step_id).first()
    if existing is not None:
        return existing
    step = _check_current(run, step_id)
    if step["kind"] != "escalate":
        raise Invalid(f"step {step_id!r} is a {step['kind']} step, not an escalation")
    if not _claim(run, step_id):
        raise Conflict("this step is already being carried out")
    try:
        evidence = _escalate(run, step, actor, note)
        status = OutcomeStatus.FAILED if evidence.get("error") else OutcomeStatus.DONE
        return step_record(run=run, step_id=step_id, status=status, actor=actor, note=note or ("" if status == "done" else evidence["words"]), evidence=evidence)
    finally:
        _release(run)


def _escalate(run: RunbookRun, step: dict, actor: Any, note: str) -> dict:
    if run.incident_id is None:
        return {
            "escalated": False,
            "words": "This run has no incident, so there is no escalation policy to follow: call the next level yourself.",
        }
    incident = Incident.objects.get(pk=run.incident_id)
    reason = note or f"escalated from runbook {run.version.runbook.slug}, step {step['id']}"
    try:
        result = escalation.incident_escalate_now(incident=incident, actor=actor, reason=reason)
    except Exception as exc:  # noqa: BLE001 - shown in the step and on the timeline
        log.warning("escalation from runbook run %s failed", run.public_id, exc_info=True)
        return {"escalated": False, "error": True, "words": f"Escalation failed: {exc}"}
    level = result.level
    if level:
        return {"escalated": True, "level": level, "words": f"Level {level} of the escalation policy paged."}
    why = {
        "acknowledged": "the incident is acknowledged, so its escalation policy pages no one",
        "resolved": "the incident is resolved",
    }.get(incident.status, "the escalation policy has no further level to page")
    return {
        "escalated": False,
        "words": f"Nobody was paged automatically ({why}): recorded on the incident timeline. Call the next level by hand.",
    }


def run_abandon(*, run: RunbookRun, actor: Any, reason: str) -> RunbookRun:
    reason = (reason or "").strip()
    if not reason:
        raise Invalid("say why the run is abandoned")
    with transaction.atomic():
        run = _lock_run(run)
        if run.status != RunStatus.RUNNING:
            return run
        run.status = RunStatus.ABANDONED
        run.finished_at = timezone.now()
        run.abandon_reason = reason[:500]
        run.save(update_fields=["status", "finished_at", "abandon_reason", "updated_at"])
        audit_record(actor=actor, verb="runbook.run_abandon", target=run, after={"status": run.status}, extra={"reason": reason})
        _timeline(
            run,
            actor=actor,
            text=f"Runbook abandoned: {run.version.runbook.title} ({reason})",
            data={"run": str(run.public_id), "event": "abandon", "reason": reason},
        )
    return run


__all__ = [
    "ACTIONS",
    "Conflict",
    "Invalid",
    "NotFound",
    "RunbookError",
    "run_abandon",
    "run_start",
    "step_action_take",
    "step_escalate",
    "step_reading_save",
    "step_record",
]
