"""The sandbox's pages: drills (start one, stop one or all; routes in the cloud namespace) and the messages
the stand-ins received (/sandbox/messages/)."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.accounts.permissions import perm_required
from portal.accounts.roles import ADMINISTER, RESPOND, VIEW
from portal.cloud.models import Drill
from portal.cloud.selectors import active_drills, recent_drills
from portal.sandbox import phone
from portal.sandbox.forms import DrillForm
from portal.sandbox.models import SandboxMessage
from portal.sandbox.services import DrillError, drill_start, drill_stop


@require_GET
@perm_required(ADMINISTER)
def drills(request):
    form = DrillForm(initial={"environment": "sandbox", "minutes": 10})
    return render(request, "cloud/drills.html", {"form": form, "active": list(active_drills()),
                                                 "recent": list(recent_drills())})


@require_POST
@perm_required(ADMINISTER)
def drill_start_view(request):
    form = DrillForm(request.POST)
    if not form.is_valid():
        return render(request, "cloud/drills.html", {"form": form, "active": list(active_drills()),
                                                     "recent": list(recent_drills())}, status=400)
    data = form.cleaned_data
    try:
        drill = drill_start(environment=data["environment"], kind=data["kind"], colour=data["colour"] or None,
                            level=data["level"], minutes=data["minutes"], seed=data["seed"], target=data["service"],
                            actor=request.user)
    except DrillError as exc:
        form.add_error(None, str(exc))
        return render(request, "cloud/drills.html", {"form": form, "active": list(active_drills()),
                                                     "recent": list(recent_drills())}, status=400)
    messages.success(request, f"Drill {drill.get_kind_display().lower()} running until {drill.ends_at:%H:%M:%S} UTC.")
    return redirect("cloud:drills")


@require_POST
@perm_required(ADMINISTER)
def drill_stop_view(request, public_id):
    drill = get_object_or_404(Drill, public_id=public_id)
    stopped = drill_stop(drill=drill, actor=request.user)
    messages.success(request, "Drill stopped." if stopped else "That drill had already ended.")
    return redirect("cloud:drills")


@require_POST
@perm_required(ADMINISTER)
def drills_stop_all(request):
    stopped = drill_stop(all=True, actor=request.user)
    messages.success(request, f"Stopped {len(stopped)} drill{'s' if len(stopped) != 1 else ''}.")
    return redirect("cloud:drills")


@require_GET
@perm_required(VIEW)
def messages_page(request):
    """Every email, SMS, call and Slack message the portal sent to the stand-ins. The sandbox holds no real
    people's messages, so anyone signed in may read them (the app is never installed in production)."""
    kind = request.GET.get("kind", "")
    rows = SandboxMessage.objects.all()
    if kind in SandboxMessage.Kind.values:
        rows = rows.filter(kind=kind)
    return render(request, "sandbox/messages.html", {"rows": rows[:200], "kind": kind, "kinds": SandboxMessage.Kind.choices})


@require_POST
@perm_required(RESPOND)
def message_answer(request, pk: int):
    """Reply to an SMS or press a key on a call as if from the phone it went to (portal.sandbox.phone)."""
    message = get_object_or_404(SandboxMessage, pk=pk)
    try:
        if message.kind == SandboxMessage.Kind.CALL:
            said = phone.key_press(message, request.POST.get("digit", ""))
        else:
            said = phone.sms_reply(message, request.POST.get("body", "").strip() or "4")
    except phone.PhoneError as exc:
        messages.error(request, f"Not sent: {exc}.")
    else:
        messages.success(request, f"The portal answered {message.to}: {said}")
    return redirect("sandbox:messages")
