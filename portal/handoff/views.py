"""The handoff partial on /oncall/ (the latest handoff note per schedule) and the outgoing person's note form."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.accounts.permissions import perm_required
from portal.accounts.roles import RESPOND, VIEW
from portal.errors import PortalError, page_error
from portal.handoff import selectors, services
from portal.oncall.models import Schedule

BACK = "oncall:index"


@require_GET
@perm_required(VIEW)
def panel(request):
    return render(request, "handoff/_panel.html", {"rows": selectors.handoffs_for_page(),
                                                   "can_write": request.user.has_perm(RESPOND)})


@require_POST
@perm_required(RESPOND)
def note_write(request):
    schedule = get_object_or_404(Schedule, slug=request.POST.get("schedule", ""))
    try:
        services.outgoing_note_write(schedule=schedule, text=request.POST.get("text", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back=BACK)
    messages.success(request, f"Your note goes to the next person on call for {schedule.name}.")
    return redirect(BACK)
