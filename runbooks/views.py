"""Runbook pages: the library, a runbook's steps, and the run page (one step in focus, live for two responders)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.accounts import roles
from portal.accounts.permissions import forbidden, perm_required
from portal.accounts.reauth import step_up
from portal.cloud.models import Environment
from portal.incidents.models import Incident
from runbooks import selectors, services
from runbooks.actions import ACTIONS
from runbooks.checks import run_check
from runbooks.models import RunStatus


def _incident(public_id: str | None):
    if not public_id:
        return None
    try:
        return Incident.objects.select_related("environment").filter(public_id=public_id).first()
    except Exception:  # noqa: BLE001 - a malformed UUID finds nothing
        return None


def _run_or_404(public_id):
    run = selectors.run_get(public_id)
    if run is None:
        raise Http404("no such run")
    return run


@require_GET
@perm_required(roles.VIEW)
def library(request):
    return render(request, "runbooks/library.html", {"runbooks": selectors.library()})


@require_GET
@perm_required(roles.VIEW)
def detail(request, slug: str):
    runbook = selectors.runbook_get(slug)
    if runbook is None:
        raise Http404("no such runbook")
    version = runbook.current_version
    wanted = request.GET.get("version")
    if wanted and wanted.isdigit():
        version = runbook.versions.filter(number=int(wanted)).first() or version
    steps = []
    if version is not None:
        for number, step in enumerate(version.steps, start=1):
            extra = {}
            if step["kind"] == "action":
                spec = ACTIONS[step["action"]]
                extra = {"action_label": spec.label, "action_perm": spec.perm}
            steps.append({"number": number, "step": step, **extra})
    return render(
        request,
        "runbooks/detail.html",
        {
            "runbook": runbook,
            "version": version,
            "steps": steps,
            "versions": selectors.runbook_versions(runbook),
            "runs": selectors.runs_of(runbook),
        },
    )


@perm_required(roles.VIEW)
def start(request, slug: str):
    """GET: what will start (the incidents page links here); POST: start it (responders)."""
    runbook = selectors.runbook_get(slug)
    if runbook is None:
        raise Http404("no such runbook")
    incident_id = request.GET.get("incident") or request.POST.get("incident")
    incident = _incident(incident_id)
    if incident_id and incident is None:
        raise Http404("no such incident")
    if request.method == "POST":
        if not request.user.has_perm(roles.RESPOND):
            return forbidden(request, "Starting a runbook run needs the responder role.")
        environment = None
        env_name = request.POST.get("environment")
        if env_name:
            environment = Environment.objects.filter(name=env_name).first()
            if environment is None:
                messages.error(request, f"No environment named {env_name!r}.")
                return redirect(request.get_full_path())
        try:
            run = services.run_start(runbook=runbook, incident=incident, environment=environment, actor=request.user)
        except services.RunbookError as exc:
            messages.error(request, exc.detail)
            return redirect(runbook.get_absolute_url())
        return redirect(run.get_absolute_url())
    if request.method != "GET":
        return HttpResponse(status=405)
    open_run = None
    if incident is not None:
        open_run = (
            selectors.RunbookRun.objects.filter(incident=incident, version__runbook=runbook, status=RunStatus.RUNNING).first()
        )
    return render(
        request,
        "runbooks/start.html",
        {
            "runbook": runbook,
            "incident": incident,
            "open_run": open_run,
            "environments": Environment.objects.all(),
            "default_environment": getattr(incident, "environment", None),
        },
    )


def _run_context(request, run, error: str = ""):
    state = selectors.run_state(run)
    user = request.user
    return {
        "run": run,
        "state": state,
        "can_respond": user.has_perm(roles.RESPOND) and run.status == RunStatus.RUNNING,
        "can_approve": user.has_perm(roles.APPROVE),
        "error": error,
        # How often the run page asks whether another responder recorded a step.
        "poll_seconds": getattr(settings, "RUNBOOK_POLL_SECONDS", 3),
    }


@require_GET
@perm_required(roles.VIEW)
def run_page(request, public_id):
    run = _run_or_404(public_id)
    return render(request, "runbooks/run.html", _run_context(request, run))


@require_GET
@perm_required(roles.VIEW)
def run_body(request, public_id):
    """The live part of the run page; polled every few seconds, 204 while nothing changed."""
    run = _run_or_404(public_id)
    ctx = _run_context(request, run)
    if request.GET.get("stamp") == ctx["state"].stamp:
        return HttpResponse(status=204)
    return render(request, "runbooks/_run_body.html", ctx)


@require_GET
@perm_required(roles.VIEW)
def step_check(request, public_id, step_id: str):
    """Live data for a check step: read now, kept as the value the responder saw."""
    run = _run_or_404(public_id)
    step = run.version.step(step_id)
    if step is None or step["kind"] != "check":
        raise Http404("no such check step")
    outcome = run.outcomes.filter(step_id=step_id).first()
    if outcome is not None:
        reading, saved = outcome.evidence, True
    else:
        reading = run_check(step["source"], environment=run.environment, incident=run.incident, params=step.get("params"))
        saved = False
        if run.status == RunStatus.RUNNING and request.user.has_perm(roles.RESPOND):
            services.step_reading_save(run=run, step_id=step_id, reading=reading)
    return render(request, "runbooks/_check.html", {"reading": reading, "step": step, "run": run, "saved": saved})


def _after_write(request, run, error: str = ""):
    if error:
        messages.error(request, error)
    return redirect(f"{run.get_absolute_url()}#step-current")


@require_POST
@perm_required(roles.RESPOND)
def step_record(request, public_id, step_id: str):
    run = _run_or_404(public_id)
    status = request.POST.get("status", "")
    try:
        services.step_record(
            run=run,
            step_id=step_id,
            status=status,
            note=request.POST.get("note", ""),
            answer=request.POST.get("answer", ""),
            actor=request.user,
        )
    except services.RunbookError as exc:
        return _after_write(request, run, exc.detail)
    return _after_write(request, run)


@require_POST
@perm_required(roles.RESPOND)
@step_up(what=lambda request, env, public_id, step_id: f"take the runbook action {step_id} on {env.name}",
         environment=lambda request, public_id, step_id: _run_or_404(public_id).environment,
         back=lambda request, env, public_id, step_id: f"/runbooks/runs/{public_id}/")
def step_action(request, public_id, step_id: str):
    run = _run_or_404(public_id)
    step = run.version.step(step_id)
    if step is None or step["kind"] != "action":
        raise Http404("no such action step")
    spec = ACTIONS[step["action"]]
    if not request.user.has_perm(spec.perm):
        return forbidden(request, f"{spec.label} needs the lead role.")
    try:
        outcome = services.step_action_take(run=run, step_id=step_id, note=request.POST.get("note", ""), actor=request.user)
    except services.RunbookError as exc:
        return _after_write(request, run, exc.detail)
    words = (outcome.evidence or {}).get("words", "")
    if outcome.status == "failed":
        messages.error(request, words or "The action failed.")
    elif words:
        messages.success(request, words)
    return _after_write(request, run)


@require_POST
@perm_required(roles.RESPOND)
def step_escalate(request, public_id, step_id: str):
    run = _run_or_404(public_id)
    try:
        outcome = services.step_escalate(run=run, step_id=step_id, note=request.POST.get("note", ""), actor=request.user)
    except services.RunbookError as exc:
        return _after_write(request, run, exc.detail)
    messages.info(request, (outcome.evidence or {}).get("words", "Escalated."))
    return _after_write(request, run)


@require_POST
@perm_required(roles.RESPOND)
def run_abandon(request, public_id):
    run = _run_or_404(public_id)
    try:
        services.run_abandon(run=run, reason=request.POST.get("reason", ""), actor=request.user)
    except services.RunbookError as exc:
        return _after_write(request, run, exc.detail)
    return redirect(run.get_absolute_url())


@require_GET
@perm_required(roles.VIEW)
def run_export(request, public_id):
    run = _run_or_404(public_id)
    body = selectors.run_export_markdown(run)
    response = HttpResponse(body, content_type="text/markdown; charset=utf-8")
    if request.GET.get("download"):
        response["Content-Disposition"] = f'attachment; filename="runbook-{run.version.runbook.slug}-{run.public_id}.md"'
    return response


@require_GET
@perm_required(roles.VIEW)
def incident_runs(request, incident_id):
    """Fragment for the incident page: the runbook runs of this incident, with progress and links."""
    incident = _incident(str(incident_id))
    if incident is None:
        raise Http404("no such incident")
    runs = [selectors.run_state(r) for r in selectors.runs_for_incident(incident)]
    return render(request, "runbooks/_incident_runs.html", {"incident": incident, "states": runs})
