"""The leads' page of outgoing webhooks: register, pause, delete, and the delivery log."""

from __future__ import annotations

from django.contrib import messages
from django.db.models import Prefetch
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from portal.accounts.permissions import perm_required
from portal.accounts.roles import APPROVE
from portal.errors import PortalError, page_error
from portal.events import KINDS
from portal.webhooks import services
from portal.webhooks.models import Attempt, Delivery, Endpoint


@perm_required(APPROVE)
def webhook_list(request):
    deliveries = (Delivery.objects.select_related("endpoint")
                  .prefetch_related(Prefetch("attempt_log", queryset=Attempt.objects.order_by("number")))[:50])
    return render(request, "webhooks/index.html", {"endpoints": Endpoint.objects.all(), "deliveries": deliveries, "kinds": KINDS})


@require_POST
@perm_required(APPROVE)
def webhook_create(request):
    try:
        endpoint, secret = services.endpoint_create(name=request.POST.get("name", ""), url=request.POST.get("url", ""),
                                                    kinds=request.POST.getlist("kinds"), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="webhooks:list")
    messages.success(request, f"Registered {endpoint.name}. Its signing secret (shown once): {secret}")
    return redirect("webhooks:list")


@require_POST
@perm_required(APPROVE)
def webhook_enable(request, public_id):
    try:
        endpoint = services.endpoint_get(public_id)
        services.endpoint_set_enabled(endpoint=endpoint, enabled=request.POST.get("enabled") == "1", actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="webhooks:list")
    return redirect("webhooks:list")


@require_POST
@perm_required(APPROVE)
def webhook_delete(request, public_id):
    try:
        services.endpoint_delete(endpoint=services.endpoint_get(public_id), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="webhooks:list")
    messages.success(request, "Endpoint deleted.")
    return redirect("webhooks:list")
