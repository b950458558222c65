"""Pages: /deployments/freezes/ (an environment's freezes: list, create, lift) and the DORA partial of /deployments/.

Each change is a POST to a view that checks the permission itself and calls deployments.freezes.
"""

from __future__ import annotations

from datetime import UTC

from django.conf import settings
from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_POST

from deployments import dora, freezes
from deployments.models import FreezeWindow
from portal.accounts.permissions import perm_required
from portal.accounts.reauth import step_up
from portal.accounts.roles import APPROVE, RESPOND, VIEW
from portal.cloud.models import Environment
from portal.errors import PortalError, page_error


def _environment(request, environments: list[Environment] | None = None) -> Environment | None:
    """The environment the request names, else the default one, else the first; 404 for an unknown name."""
    if environments is None:
        environments = list(Environment.objects.all())
    name = request.GET.get("environment") or request.POST.get("environment") or ""
    by_name = {e.name: e for e in environments}
    if name:
        if name not in by_name:
            raise Http404("no such environment")
        return by_name[name]
    return by_name.get(settings.DEFAULT_ENVIRONMENT) or (environments[0] if environments else None)


def _page(env: Environment | None) -> str:
    return "/deployments/freezes/" + (f"?environment={env.name}" if env is not None else "")


def _when(value: str):
    """A datetime-local field (read as UTC) or an ISO time with its zone; None when empty or unreadable."""
    parsed = parse_datetime((value or "").strip())
    if parsed is not None and timezone.is_naive(parsed):
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


@perm_required(VIEW)
@require_GET
def index(request):
    environments = list(Environment.objects.all())
    env = _environment(request, environments)
    ctx = {"env": env, "environments": environments, "can_respond": request.user.has_perm(RESPOND),
           "can_approve": request.user.has_perm(APPROVE)}
    if env is not None:
        ctx.update({"active": freezes.active_freezes(env), "windows": freezes.windows_for(env),
                    "now": timezone.now()})
    return render(request, "deployments/freezes.html", ctx)


@perm_required(RESPOND)
@require_POST
def create(request):
    env = _environment(request)
    if env is None:
        raise Http404("no environment")
    starts_at, ends_at = _when(request.POST.get("starts_at", "")), _when(request.POST.get("ends_at", ""))
    if starts_at is None or ends_at is None:
        messages.error(request, "Give the freeze's start and end as a date and time (UTC).")
        return redirect(_page(env))
    try:
        freezes.freeze_create(environment=env, starts_at=starts_at, ends_at=ends_at, reason=request.POST.get("reason", ""),
                              rrule=request.POST.get("rrule", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back=_page(env))
    messages.success(request, f"Deployments on {env.name} are frozen from {starts_at:%a %d %b %H:%M} UTC; rollbacks still run.")
    return redirect(_page(env))


def _window_env(request, public_id):
    w = FreezeWindow.objects.select_related("environment").filter(public_id=public_id).first()
    return w.environment if w is not None else None


@perm_required(APPROVE)
@require_POST
@step_up(what="lift a deployment freeze on {env}", environment=_window_env,
         back=lambda request, env, public_id: _page(env))
def lift(request, public_id):
    w = FreezeWindow.objects.select_related("environment").filter(public_id=public_id).first()
    if w is None:
        raise Http404("no such freeze window")
    try:
        freezes.freeze_lift(window=w, actor=request.user, reason=request.POST.get("reason", ""))
    except PortalError as exc:
        return page_error(request, exc, back=_page(w.environment))
    messages.success(request, f"Freeze lifted on {w.environment.name}: {w.reason}.")
    return redirect(_page(w.environment))


@perm_required(VIEW)
@require_GET
def dora_partial(request):
    """The DORA figures of /deployments/ (loaded by htmx)."""
    env = _environment(request)
    if env is None:
        raise Http404("no environment")
    try:
        weeks = int(request.GET.get("weeks", "8"))
    except ValueError:
        weeks = 8
    rows = dora.dora_weeks(env, weeks=weeks)
    top = max([w.deployments for w in rows] + [1])
    return render(request, "deployments/_dora.html", {"env": env, "weeks": rows, "top": top})
