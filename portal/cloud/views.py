"""Environment pages (list, detail with a live region, admin edit)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from portal.accounts.permissions import perm_required
from portal.accounts.reauth import step_up
from portal.accounts.roles import ADMINISTER, VIEW
from portal.cloud.clients import page_reads
from portal.cloud.drift import drift_for_item, drift_summary, environment_drift
from portal.cloud.forms import EnvironmentForm, NewEnvironmentForm
from portal.cloud.models import Environment
from portal.cloud.selectors import active_drills, environment_detail, live_state
from portal.cloud.services import environment_create, environment_update


@require_GET
@perm_required(VIEW)
def environment_list(request):
    envs = list(Environment.objects.all())
    counts = {}
    for d in active_drills():
        counts[d.environment_id] = counts.get(d.environment_id, 0) + 1
    rows = [{"env": e, "drills": counts.get(e.pk, 0)} for e in envs]
    return render(request, "cloud/list.html", {"rows": rows, "can_admin": request.user.has_perm(ADMINISTER)})


@require_GET
@perm_required(VIEW)
def environment_detail_view(request, name: str):
    env = get_object_or_404(Environment, name=name)
    ctx = environment_detail(env)
    ctx.update(env=env, can_admin=request.user.has_perm(ADMINISTER))
    return render(request, "cloud/detail.html", ctx)


@require_GET
@perm_required(VIEW)
def environment_live(request, name: str):
    env = get_object_or_404(Environment, name=name)
    return render(request, "cloud/_live.html", {"env": env, "live": live_state(env)})


@require_GET
@perm_required(VIEW)
def environment_drift_view(request, name: str):
    env = get_object_or_404(Environment, name=name)
    with page_reads():
        lines = environment_drift(env)
    return render(request, "cloud/drift.html", {"env": env, "lines": lines, "summary": drift_summary(lines)})


@require_GET
@perm_required(VIEW)
def checklist_item_drift(request, slug: str):
    """The default environment's drift lines that affect one checklist item (loaded into the item's page)."""
    env = Environment.objects.filter(name=settings.DEFAULT_ENVIRONMENT).first()
    lines = []
    if env is not None:
        with page_reads():
            lines = drift_for_item(environment_drift(env), slug)
    return render(request, "cloud/_item_drift.html", {"env": env, "lines": lines, "slug": slug})


def _edited_environment(request, name: str | None = None):
    """The environment a form changes when it is production, or is being made production."""
    env = Environment.objects.filter(name=name).first() if name else None
    if env is not None and env.is_production:
        return env
    if request.POST.get("is_production"):
        return Environment(name=name or request.POST.get("name", "")[:64], is_production=True)
    return None


@require_http_methods(["GET", "POST"])
@perm_required(ADMINISTER)
@step_up(what="edit the {env} environment", environment=_edited_environment)
def environment_edit(request, name: str):
    env = get_object_or_404(Environment, name=name)
    form = EnvironmentForm(request.POST or None, instance=Environment.objects.get(pk=env.pk))
    if request.method == "POST" and form.is_valid():
        environment_update(environment=env, changes=form.changes(), actor=request.user,
                           secrets=form.secrets(), clear=form.cleared())
        messages.success(request, f"Saved the {env.name} environment.")
        return redirect(env.get_absolute_url())
    return render(request, "cloud/edit.html", {"env": env, "form": form}, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@perm_required(ADMINISTER)
@step_up(what="add the production environment {env}", environment=_edited_environment)
def environment_new(request):
    form = NewEnvironmentForm(request.POST or None, instance=Environment())
    if request.method == "POST" and form.is_valid():
        try:
            env = environment_create(name=form.cleaned_data["name"], changes=form.changes(), actor=request.user,
                                     secrets=form.secrets())
        except ValueError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Added the {env.name} environment.")
            return redirect(env.get_absolute_url())
    return render(request, "cloud/edit.html", {"env": None, "form": form}, status=400 if form.errors else 200)
