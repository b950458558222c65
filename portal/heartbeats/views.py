"""/heartbeats/: every heartbeat with its last ping and status; pause and resume (responders), a new
ping token (leads, shown once)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.accounts.permissions import perm_required
from portal.accounts.roles import RESPOND, SIGN_OFF, VIEW
from portal.errors import PortalError, page_error
from portal.heartbeats import selectors, services

BACK = "heartbeats:list"


@require_GET
@perm_required(VIEW)
def heartbeat_list(request):
    return render(request, "heartbeats/list.html", {
        "rows": selectors.heartbeats_for_page(), "can_respond": request.user.has_perm(RESPOND),
        "can_lead": request.user.has_perm(SIGN_OFF),
    })


@require_POST
@perm_required(RESPOND)
def pause(request, slug: str):
    try:
        heartbeat = services.heartbeat_pause(heartbeat=selectors.find_heartbeat(slug),
                                             reason=request.POST.get("reason", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back=BACK)
    messages.success(request, f"{heartbeat.name} is paused: a missed ping opens nothing until it is resumed.")
    return redirect(BACK)


@require_POST
@perm_required(RESPOND)
def resume(request, slug: str):
    try:
        heartbeat = services.heartbeat_resume(heartbeat=selectors.find_heartbeat(slug), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back=BACK)
    messages.success(request, f"{heartbeat.name} is watched again.")
    return redirect(BACK)


@require_POST
@perm_required(SIGN_OFF)
def token_reset(request, slug: str):
    try:
        heartbeat = selectors.find_heartbeat(slug)
        token = services.heartbeat_token_reset(heartbeat=heartbeat, actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back=BACK)
    messages.success(request, f"New ping URL for {heartbeat.name} (shown once; the old token no longer works): "
                              f"{heartbeat.ping_url(token)}")
    return redirect(BACK)
