"""Phases pages: where the platform stands, the move-phase form, focus items, chart JSON, the dashboard panel."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.accounts.permissions import perm_required
from portal.accounts.reauth import any_production, step_up
from portal.accounts.roles import RESPOND, SIGN_OFF, VIEW
from portal.cloud.models import Environment
from portal.errors import page_error
from portal.phases.contradictions import seed_contradictions
from portal.phases.models import GrowthPhase, PhaseFocusItem, PhaseSettings
from portal.phases.selectors import current_phase, instance_range_scope, per_colour_range
from portal.phases.services import (
    PhaseError,
    focus_item_set,
    instance_range_scope_set,
    phase_move,
    user_count_record,
)
from portal.phases.status import cost_chart, instances_chart, phase_status, users_chart


def _env():
    return Environment.objects.filter(name=settings.DEFAULT_ENVIRONMENT).first()


@require_GET
@perm_required(VIEW)
def page(request):
    st = phase_status(live=True)
    phase = st.phase
    prev = next((p for p in reversed(st.phases) if p.number < phase.number), None)
    return render(request, "phases/page.html", {
        "st": st, "phase": phase, "prev_phase": prev,
        "focus": list(phase.focus_items.select_related("done_by")),
        "can_move": request.user.has_perm(SIGN_OFF), "can_tick": request.user.has_perm(RESPOND),
        "can_enter_users": request.user.has_perm(SIGN_OFF),
        # The seed's contradictions are a lead's to decide on: shown to them, with the setting they choose.
        "contradictions": seed_contradictions() if request.user.has_perm(SIGN_OFF) else [],
        "range_scope": instance_range_scope(), "range_scopes": PhaseSettings.RangeScope.choices,
        "colour_range": per_colour_range(phase),
    })


@require_GET
@perm_required(VIEW)
def panel(request):
    return render(request, "phases/panel.html", {"st": phase_status(live=False)})


@require_POST
@perm_required(SIGN_OFF)
def move(request):
    try:
        to_number = int(request.POST.get("to", ""))
        from_number = int(request.POST.get("from", ""))
    except ValueError:
        messages.error(request, "Choose the phase to move to.")
        return redirect("phases:page")
    to_phase = get_object_or_404(GrowthPhase, number=to_number)
    try:
        _, changed = phase_move(to_phase=to_phase, actor=request.user, reason=request.POST.get("reason", ""), from_number=from_number)
    except PhaseError as exc:
        return page_error(request, exc, back="phases:page")
    if changed:
        messages.success(request, f"The platform is now in phase {to_phase.number} ({to_phase.name}); scale bounds are {to_phase.instances_min}-{to_phase.instances_max} instances per colour.")
    else:
        messages.info(request, f"The platform was already in phase {to_phase.number}.")
    return redirect("phases:page")


@require_POST
@perm_required(SIGN_OFF)
@step_up(what="change how the phases' instance ranges are read (the scale bounds of every environment)",
         environment=lambda request: any_production(), back=lambda request, env: "/phases/")
def range_scope(request):
    try:
        row, changed = instance_range_scope_set(scope=request.POST.get("scope", ""), actor=request.user)
    except PhaseError as exc:
        return page_error(request, exc, back="phases:page")
    if changed:
        lo, hi = per_colour_range(current_phase())
        messages.success(request, f"Instance ranges are now read as {row.get_instance_range_scope_display().lower()}: "
                                  f"each colour scales within {lo}-{hi} in this phase.")
    else:
        messages.info(request, "That is already how the instance ranges are read.")
    return redirect("phases:page")


@require_POST
@perm_required(SIGN_OFF)
def enter_users(request):
    try:
        user_count_record(users=request.POST.get("users", "").replace(",", "").strip(), actor=request.user,
                          note=request.POST.get("note", ""))
    except PhaseError as exc:
        return page_error(request, exc, back="phases:page")
    messages.success(request, "User count recorded.")
    return redirect("phases:page")


@require_POST
@perm_required(RESPOND)
def focus(request, slug, position):
    item = get_object_or_404(PhaseFocusItem, phase__slug=slug, position=position)
    done = request.POST.get("done") == "1"
    _, changed = focus_item_set(item=item, done=done, actor=request.user)
    if changed:
        messages.success(request, f"“{item.text}” {'done' if done else 'reopened'}.")
    return redirect("phases:page")


@require_GET
@perm_required(VIEW)
def chart_users(request):
    return JsonResponse(users_chart())


@require_GET
@perm_required(VIEW)
def chart_instances(request):
    env = _env()
    if env is None:
        return JsonResponse({"error": "no_environment", "detail": "no cloud environment is registered"}, status=404)
    return JsonResponse(instances_chart(env))


@require_GET
@perm_required(VIEW)
def chart_cost(request):
    env = _env()
    if env is None:
        return JsonResponse({"error": "no_environment", "detail": "no cloud environment is registered"}, status=404)
    return JsonResponse(cost_chart(env))
