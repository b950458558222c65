"""Pages: /deployments/ (current rollout, rollback, history, forms), a deployment's page, the dashboard panel.

Every change is a POST to a view that checks the permission itself and calls a service; the forms
confirm first (data-confirm) and the live regions poll with htmx.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from django.contrib import messages
from django.core.cache import cache
from django.db.models import Q
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from deployments import cloudops, errors, selectors, services, strategies
from deployments.bounds import phase_bounds
from deployments.models import Deployment, ScaleAction, Strategy
from portal.accounts.permissions import forbidden, perm_required
from portal.accounts.reauth import step_up
from portal.accounts.roles import APPROVE, RESPOND, VIEW
from portal.cloud.clients import page_reads
from portal.cloud.errors import CloudError
from portal.cloud.models import COLOURS, Environment


def _environment(request, environments: list[Environment] | None = None) -> Environment | None:
    """The environment the request names, else the default one, else the first; 404 for an unknown name.

    `environments`: every environment, when the caller has already loaded them (they are a handful)."""
    if environments is None:
        environments = list(Environment.objects.all())
    name = request.GET.get("environment") or request.POST.get("environment") or ""
    by_name = {e.name: e for e in environments}
    if name:
        if name not in by_name:
            raise Http404("no such environment")
        return by_name[name]
    return by_name.get(_default_name()) or (environments[0] if environments else None)


def _default_name() -> str:
    from django.conf import settings

    return settings.DEFAULT_ENVIRONMENT


def _back(env: Environment | None, anchor: str = ""):
    url = "/deployments/"
    if env is not None and env.name != _default_name():
        url += f"?environment={env.name}"
    return redirect(url + anchor)


CLOUD_STATE_FRESH = 2.0  # seconds: the live region polls every 2 s while something runs
CLOUD_STATE_KEEP = 60  # seconds an older reading may be shown while one request reads AWS again
CLOUD_STATE_LOCK = 10  # seconds: longer than a page read can take (one attempt, short timeouts)


def _cloud_state_key(env: Environment) -> str:
    return f"deployments:cloud_state:{env.pk}"


def _cloud_state(env: Environment) -> dict:
    """Groups and weights for the page, read from AWS at most once per CLOUD_STATE_FRESH per cache.

    Many viewers share one reading: when it is older than CLOUD_STATE_FRESH, the first request to
    notice takes a lock and reads AWS again while the others show the previous reading (with its
    age) instead of all reading at once. Only a page with no reading at all waits for AWS. An AWS
    failure is shown in words, never a 500."""
    key = _cloud_state_key(env)
    now = time.time()
    cached = cache.get(key)
    if cached is not None:
        cached["age"] = max(0.0, now - cached.get("read_at", 0.0))
        if cached["age"] < CLOUD_STATE_FRESH or not cache.add(f"{key}:lock", 1, CLOUD_STATE_LOCK):
            return cached
    try:
        out = _read_cloud_state(env)
        out["read_at"] = time.time()
        cache.set(key, out, CLOUD_STATE_KEEP)
    finally:
        if cached is not None:
            cache.delete(f"{key}:lock")
    out["age"] = 0.0
    return out


def _read_cloud_state(env: Environment) -> dict:
    out: dict = {"error": ""}
    try:
        with page_reads():
            out["weights"] = cloudops.read_weights(env)
            groups = cloudops.groups(env)
            out["groups"] = [
                {"colour": c, "desired": groups[c].desired, "in_service": groups[c].in_service,
                 "healthy": cloudops.healthy_count(env, c), "weight": out["weights"].get(c, 0)}
                for c in COLOURS if c in groups
            ]
    except CloudError as exc:
        out["error"] = exc.words
    except Exception as exc:  # noqa: BLE001 - a page must render even when AWS is unreachable
        out["error"] = f"AWS could not be read: {exc}"
    return out


def _live_context(request, env: Environment, history: list[Deployment] | None = None) -> dict:
    """`history`: the environment's newest deployments when the caller has them (the first is the latest)."""
    dep = selectors.active_deployment(env)
    if dep is not None or history is None:
        latest = dep or selectors.latest_deployment(env)
    else:
        latest = history[0] if history else None
    rollback = selectors.latest_rollback(env)
    cloud = _cloud_state(env)
    return {
        "env": env, "deployment": dep, "latest": latest, "rollback": rollback,
        "rollback_active": rollback is not None and rollback.is_active,
        "rollback_recent": rollback is not None and rollback.finished_at is not None
        and rollback.finished_at > timezone.now() - timedelta(minutes=10),
        "cloud": cloud, "can_respond": request.user.has_perm(RESPOND), "can_approve": request.user.has_perm(APPROVE),
        "events": list(dep.events.order_by("-at", "-id")[:6]) if dep else [],
        "poll": "every 2s" if (dep is not None or (rollback is not None and rollback.is_active)) else "every 10s",
    }


@perm_required(VIEW)
@require_GET
def index(request):
    # The environments are a handful: one query for the selector and the one shown.
    environments = list(Environment.objects.all())
    env = _environment(request, environments)
    if env is None:
        return render(request, "deployments/index.html", {"env": None})
    history = selectors.history(env)
    ctx = _live_context(request, env, history)
    bounds = phase_bounds()
    ctx.update({
        "environments": environments,
        "history": history,
        "strategies": Strategy.objects.all(),
        "bounds": bounds,
        "approvals": selectors.pending_scale_approvals(env),
        "scale_actions": selectors.recent_scale_actions(env),
        "decisions": selectors.recent_autoscale_decisions(env),
        "colours": COLOURS,
    })
    return render(request, "deployments/index.html", ctx)


@perm_required(VIEW)
@require_GET
def live(request):
    """The live region of /deployments/ (htmx, every 2 s while something runs)."""
    env = _environment(request)
    if env is None:
        raise Http404("no environment")
    return render(request, "deployments/_live.html", _live_context(request, env))


@perm_required(VIEW)
@require_GET
def banner(request):
    """The automation banner every page loads (base.html): shown while any environment is paused or in dry run."""
    envs = list(Environment.objects.filter(Q(automation_paused=True) | Q(dry_run=True)))
    return render(request, "deployments/_banner.html", {
        "paused": [e for e in envs if e.automation_paused], "dry_run": [e for e in envs if e.dry_run]})


@perm_required(VIEW)
@require_GET
def panel(request):
    env = _environment(request)
    if env is None:
        return render(request, "deployments/_panel.html", {"env": None})
    return render(request, "deployments/_panel.html", _live_context(request, env))


def _get_deployment(public_id) -> Deployment:
    try:
        key = uuid.UUID(str(public_id))
    except ValueError as exc:
        raise Http404 from exc
    dep = Deployment.objects.select_related("environment", "release", "strategy", "incident").filter(public_id=key).first()
    if dep is None:
        raise Http404("no such deployment")
    return dep


@perm_required(VIEW)
@require_GET
def detail(request, public_id):
    dep = _get_deployment(public_id)
    from portal.audit.models import AuditEvent

    audit = AuditEvent.objects.filter(
        Q(target_type="deployments.deployment", target_id=str(dep.public_id)) | Q(extra__deployment=str(dep.public_id))
    ).order_by("created_at")[:100]
    analyses = list(dep.analyses.all())
    ctx = {
        "deployment": dep, "env": dep.environment, "events": list(dep.events.order_by("at", "id")),
        "analyses": analyses, "rollbacks": list(dep.rollbacks.all()),
        "waiting": strategies.waiting_text(dep, analyses[-1] if analyses else None, timezone.now()),
        "method": strategies.method_text(dep.strategy.template), "template": dep.strategy.template,
        "incidents": selectors.incidents_for(dep), "audit": list(audit),
        "can_respond": request.user.has_perm(RESPOND),
        "poll": dep.is_active or any(r.is_active for r in dep.rollbacks.all()),
    }
    if request.htmx and request.GET.get("part") == "timeline":
        return render(request, "deployments/_timeline.html", ctx)
    return render(request, "deployments/detail.html", ctx)


@perm_required(VIEW)
@require_GET
def chart_data(request):
    """Error rate and P95 per colour over the rollout, with the weight changes (uPlot, static/js/deployments.js)."""
    env = _environment(request)
    if env is None:
        raise Http404("no environment")
    dep = None
    if request.GET.get("deployment"):
        dep = _get_deployment(request.GET["deployment"])
    else:
        dep = selectors.active_deployment(env) or selectors.latest_deployment(env)
    now = timezone.now()
    start = (dep.started_at or dep.created_at) if dep else now - timedelta(minutes=30)
    end = (dep.finished_at + timedelta(minutes=5)) if dep and dep.finished_at else now
    start = max(start - timedelta(minutes=2), end - timedelta(hours=3))
    minutes = max(5, int((now - start).total_seconds() // 60) + 1)
    body: dict = {"series": {}, "marks": [], "error": ""}
    try:
        ms = cloudops.metrics(env)
        period = 60 if minutes > 30 else 10
        for colour in COLOURS:
            for metric in ("error_rate", "p95_response_time"):
                points = ms.series(metric, colour, minutes, period)
                body["series"][f"{metric}:{colour}"] = [[int(t.timestamp()), v] for t, v in points
                                                        if start <= t <= end + timedelta(seconds=period)]
    except Exception as exc:  # noqa: BLE001 - the chart says why it is empty
        body["error"] = f"metrics unavailable: {exc}"
    if dep is not None:
        for e in dep.events.filter(kind="weights").order_by("at"):
            body["marks"].append({"t": int(e.at.timestamp()), "label": " / ".join(
                f"{c} {w}" for c, w in (e.data.get("weights") or {}).items())})
        for r in dep.rollbacks.exclude(switched_at=None):
            body["marks"].append({"t": int(r.switched_at.timestamp()), "label": f"rollback: {r.to_colour} 100"})
        # Each analysis run: the two colours' error rates over the evidence it judged, and its verdict.
        body["runs"] = [{"t": int(a.at.timestamp()), "new": a.new_error_rate, "old": a.old_error_rate, "weight": a.weight,
                         "decision": a.decision, "watching": a.watching} for a in dep.analyses.order_by("at", "id")]
        body["new_colour"], body["old_colour"] = dep.to_colour, dep.from_colour
        body["deployment"] = str(dep.public_id)
    return JsonResponse(body)


# ---------------------------------------------------------------------------------------------- actions


def _env_page(request, env, *args, **kwargs) -> str:
    """Where a password confirmation returns to: the environment's deployments page."""
    return f"/deployments/?environment={env.name}"


def _scale_action_env(request, public_id):
    action = ScaleAction.objects.select_related("environment").filter(public_id=public_id).first()
    return action.environment if action is not None else None


def _run(request, env, fn, ok: str, anchor: str = "", **kwargs):
    if env is not None:
        cache.delete(_cloud_state_key(env))  # the page after an action reads AWS afresh
    try:
        result = fn(**kwargs)
    except errors.AlreadyInProgress as exc:
        messages.warning(request, exc.detail)
        return None, _back(env, anchor)
    except errors.DeploymentError as exc:
        messages.error(request, exc.detail)
        return None, _back(env, anchor)
    except CloudError as exc:
        messages.error(request, exc.words)
        return None, _back(env, anchor)
    if ok:
        messages.success(request, ok)
    return result, None


@perm_required(RESPOND)
@require_POST
@step_up(what="roll back {env}", environment=lambda request: _environment(request), back=_env_page)
def rollback(request):
    env = _environment(request)
    if env is None:
        raise Http404("no environment")
    rb, resp = _run(request, env, services.environment_rollback, "", environment=env, actor=request.user,
                    reason=request.POST.get("reason", ""))
    if resp is not None:
        return resp
    messages.success(request, f"Rolling back to {rb.to_colour}: progress below.")
    return _back(env)


@perm_required(RESPOND)
@require_POST
@step_up(what="deploy to {env}", environment=lambda request: _environment(request), back=_env_page)
def create(request):
    env = _environment(request)
    dep, resp = _run(request, env, services.deployment_create, "", environment=env, actor=request.user,
                     version=request.POST.get("version", ""), strategy=request.POST.get("strategy", ""),
                     launch_template_version=request.POST.get("launch_template_version", ""),
                     image_id=request.POST.get("image_id", ""), notes=request.POST.get("notes", ""))
    if resp is not None:
        return resp
    messages.success(request, f"Deployment of {dep.release.version} to {dep.to_colour} started.")
    return _back(env)


CONTROLS = {
    "pause": (services.deployment_pause, "Paused."),
    "resume": (services.deployment_resume, "Resumed."),
    "promote": (services.deployment_promote, "Promoted: remaining holds skipped."),
    "abort": (services.deployment_abort, "Aborted: rolling back where traffic had moved."),
}


@perm_required(RESPOND)
@require_POST
@step_up(what=lambda request, env, public_id, action: f"{action} the deployment to {env.name}",
         environment=lambda request, public_id, action: _get_deployment(public_id).environment)
def control(request, public_id, action):
    if action not in CONTROLS:
        raise Http404
    dep = _get_deployment(public_id)
    fn, ok = CONTROLS[action]
    _, resp = _run(request, dep.environment, fn, ok, deployment=dep, actor=request.user, reason=request.POST.get("reason", ""))
    nxt = request.POST.get("next", "")
    if nxt == "detail":
        return redirect(dep.get_absolute_url())
    return resp or _back(dep.environment)


@perm_required(RESPOND)
@require_POST
@step_up(what="scale {env}", environment=lambda request: _environment(request), back=_env_page)
def scale(request):
    env = _environment(request)
    approver = request.user if request.user.has_perm(APPROVE) else None
    desired = request.POST.get("desired", "")
    if not desired.strip().lstrip("-").isdigit():
        messages.error(request, "Desired capacity is a whole number of instances.")
        return _back(env, "#scale")
    if approver is None and int(desired) > phase_bounds().instances_max and request.POST.get("request_approval"):
        action, resp = _run(request, env, services.scale_request_approval, "A lead was asked to approve this.", "#scale",
                            environment=env, colour=request.POST.get("colour", ""), desired=int(desired),
                            reason=request.POST.get("reason", "") or "requested by a responder", actor=request.user)
        return resp or _back(env, "#approvals")
    action, resp = _run(request, env, services.environment_scale, "", "#scale", environment=env,
                        colour=request.POST.get("colour", ""), desired=int(desired), actor=request.user,
                        reason=request.POST.get("reason", ""), approved_by=approver)
    if resp is not None:
        return resp
    if action.state == ScaleAction.State.FAILED:
        messages.error(request, f"Scale of {action.colour} did not apply: {action.error}")
    else:
        messages.success(request, f"{action.colour} desired {action.from_desired} → {action.to_desired}; AWS reads back "
                                  f"{action.read_back.get('desired')}.")
    return _back(env, "#scale")


@perm_required(APPROVE)
@require_POST
@step_up(what="approve scaling {env} beyond the phase maximum", environment=_scale_action_env, back=_env_page)
def approve_scale(request, public_id):
    action = ScaleAction.objects.select_related("environment").filter(public_id=public_id).first()
    if action is None:
        raise Http404
    _, resp = _run(request, action.environment, services.scale_approve,
                   f"Approved: {action.colour} to {action.to_desired}.", "#approvals", action=action, actor=request.user)
    return resp or _back(action.environment, "#approvals")


@perm_required(RESPOND)
@require_POST
@step_up(what="change automation on {env}", environment=lambda request: _environment(request), back=_env_page)
def automation(request):
    env = _environment(request)
    paused = request.POST.get("paused") == "1"
    dry_run = request.POST.get("dry_run")
    _, resp = _run(request, env, services.automation_set,
                   "Automation paused." if paused else "Automation resumed.", "", environment=env, paused=paused,
                   dry_run=None if dry_run is None else dry_run == "1", actor=request.user, reason=request.POST.get("reason", ""))
    return resp or _back(env)


def _list_field(request, name: str) -> list[str]:
    """One entry per line or comma-separated, as typed in the allow-list form."""
    return [v for v in request.POST.get(name, "").replace(",", "\n").split() if v]


@perm_required(APPROVE)
@require_POST
@step_up(what="change the approved images of {env}", environment=lambda request: _environment(request),
         back=lambda request, env: f"/deployments/?environment={env.name}")
def images(request):
    """Replace the environment's allow-list of image owners and ids (leads and admins; audited)."""
    env = _environment(request)
    if env is None:
        raise Http404("no environment")
    _, resp = _run(request, env, services.environment_images_set, "Approved images saved.", "#images", environment=env,
                   owners=_list_field(request, "owners"), image_ids=_list_field(request, "image_ids"), actor=request.user,
                   reason=request.POST.get("reason", ""))
    return resp or _back(env, "#images")


@perm_required(RESPOND)
@require_POST
@step_up(what="fail the {env} database over", environment=lambda request: _environment(request), back=_env_page)
def rds_failover(request):
    if not request.user.has_perm(APPROVE):
        return forbidden(request, "Only a lead can fail the database over.")
    env = _environment(request)
    _, resp = _run(request, env, services.rds_failover, "Failover to the standby requested.", "", environment=env,
                   actor=request.user, reason=request.POST.get("reason", ""))
    return resp or _back(env)
