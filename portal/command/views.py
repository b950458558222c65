"""Incident command pages: declare, the command page of an incident, roles, updates, reviews, action
items and the status pages. Thin callers of portal.command.services and selectors."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from portal.accounts.permissions import perm_required
from portal.accounts.roles import RESPOND, VIEW
from portal.cloud.models import Environment
from portal.command import selectors, services
from portal.command.models import ActionItem, Journey, Review, Sev, Subscriber, UpdateStatus
from portal.errors import PortalError, page_error
from portal.incidents.models import Incident


def _incident(public_id) -> Incident:
    return get_object_or_404(Incident.objects.select_related("environment"), public_id=public_id)


def declare_context() -> dict:
    return {"sev_choices": Sev.choices, "journey_choices": Journey.choices,
            "environments": list(Environment.objects.order_by("name").values_list("name", flat=True))}


@perm_required(RESPOND)
@require_POST
def declare(request):
    try:
        inc = services.incident_declare(
            title=request.POST.get("title", ""), sev=request.POST.get("sev", ""),
            environment=request.POST.get("environment") or None, journeys=request.POST.getlist("journeys"),
            description=request.POST.get("description", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="dashboard")
    messages.success(request, f"Declared INC-{inc.pk}: {inc.title}")
    return redirect("command:incident", public_id=inc.public_id)


@perm_required(VIEW)
@require_GET
def panel(request):
    rows = [{"command": c, "incident": c.incident, "roles": selectors.roles_of(c.incident, c.incident.command_roles.all())}
            for c in selectors.open_declared()]
    return render(request, "command/panel.html", {"rows": rows})


def incident_context(incident: Incident, user) -> dict:
    cmd = selectors.command_for(incident)
    suggested, why = selectors.sev_suggest(environment=incident.environment, journeys=cmd.journeys if cmd else (),
                                           alert_severity=incident.severity)
    return {
        "incident": incident, "command": cmd, "roles": selectors.roles_of(incident),
        "can_respond": user.has_perm(RESPOND), "suggested_sev": suggested, "suggested_why": why,
        "sev_choices": Sev.choices, "journey_choices": Journey.choices,
    }


@perm_required(VIEW)
@require_GET
def incident(request, public_id):
    inc = _incident(public_id)
    cmd = selectors.command_for(inc)
    ctx = incident_context(inc, request.user)
    ctx.update({
        "updates": list(inc.status_updates.all()), "subscribers": list(inc.subscribers.all()),
        "draft": selectors.update_draft(inc), "update_statuses": UpdateStatus.choices,
        "update_due_at": selectors.update_due_at(cmd) if cmd else None,
        "subscriber_kinds": Subscriber.Kind.choices, "merged_from": list(Incident.objects.filter(command__merged_into=inc)),
        "merge_candidates": list(Incident.objects.filter(status__in=("triggered", "acknowledged")).exclude(pk=inc.pk)[:50]),
        "review": Review.objects.filter(incident=inc).first(), "action_items": list(inc.action_items.select_related("owner")),
        "timeline": list(inc.timeline.all()),
    })
    return render(request, "command/incident.html", ctx)


@perm_required(RESPOND)
@require_POST
def role_take(request, public_id, role):
    inc = _incident(public_id)
    try:
        services.role_take(incident=inc, role=role, actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="command:incident", public_id=inc.public_id)
    if getattr(request, "htmx", False):
        return render(request, "command/_roles.html", incident_context(inc, request.user))
    return redirect(request.POST.get("next") or selectors.command_url(inc))


@perm_required(RESPOND)
@require_POST
def sev_change(request, public_id):
    inc = _incident(public_id)
    try:
        services.sev_change(incident=inc, sev=request.POST.get("sev", ""), reason=request.POST.get("reason", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="command:incident", public_id=inc.public_id)
    return redirect("command:incident", public_id=inc.public_id)


@perm_required(RESPOND)
@require_POST
def promote(request, public_id):
    inc = _incident(public_id)
    try:
        services.incident_promote(incident=inc, sev=request.POST.get("sev", ""), journeys=request.POST.getlist("journeys"),
                                  description=request.POST.get("description", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="command:incident", public_id=inc.public_id)
    return redirect("command:incident", public_id=inc.public_id)


@perm_required(RESPOND)
@require_POST
def merge(request, public_id):
    inc = _incident(public_id)
    others = list(Incident.objects.filter(public_id__in=[v for v in request.POST.getlist("others") if v]))
    try:
        services.incidents_merge(target=inc, others=others, actor=request.user)
    except (PortalError, ValueError) as exc:
        if isinstance(exc, ValueError):
            messages.error(request, "not an incident id")
            return redirect("command:incident", public_id=inc.public_id)
        return page_error(request, exc, back="command:incident", public_id=inc.public_id)
    return redirect("command:incident", public_id=inc.public_id)


@perm_required(RESPOND)
@require_POST
def update_post(request, public_id):
    inc = _incident(public_id)
    try:
        services.update_post(incident=inc, status=request.POST.get("status", ""), message=request.POST.get("message", ""),
                             public=request.POST.get("public") == "on", actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="command:incident", public_id=inc.public_id)
    messages.success(request, "Update posted")
    return redirect("command:incident", public_id=inc.public_id)


@perm_required(RESPOND)
@require_POST
def subscriber_add(request, public_id):
    inc = _incident(public_id)
    try:
        services.subscriber_add(incident=inc, kind=request.POST.get("kind", ""), target=request.POST.get("target", ""),
                                actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="command:incident", public_id=inc.public_id)
    return redirect("command:incident", public_id=inc.public_id)


# ------------------------------------------------------------------------------------------------ reviews


@perm_required(VIEW)
def review(request, public_id):
    """GET shows the review (a responder starts it on first view after resolve); POST saves the narrative."""
    if request.method == "POST" and not request.user.has_perm(RESPOND):
        return render(request, "403.html", {"message": "Your role does not allow this."}, status=403)
    inc = _incident(public_id)
    rev = Review.objects.filter(incident=inc).first()
    if request.method == "POST":
        try:
            rev = rev or services.review_start(incident=inc, actor=request.user)
            services.review_update(review=rev, narrative=request.POST.get("narrative", ""), actor=request.user,
                                   refresh_facts=request.POST.get("refresh") == "on")
        except PortalError as exc:
            return page_error(request, exc, back="command:incident", public_id=inc.public_id)
        messages.success(request, "Review saved")
        return redirect("command:review", public_id=inc.public_id)
    facts = rev.facts if rev else (selectors.measured_facts(inc) if not inc.is_open else None)
    people = get_user_model().objects.filter(is_active=True).order_by("username")
    return render(request, "command/review.html", {
        "incident": inc, "review": rev, "facts": facts, "can_respond": request.user.has_perm(RESPOND),
        "action_items": list(inc.action_items.select_related("owner")), "people": people,
        "link_kinds": ActionItem.LinkKind.choices, "item_states": ActionItem.State.choices,
        "fmt": selectors.fmt_seconds,
    })


def _review_or_facts(inc: Incident):
    rev = Review.objects.filter(incident=inc).first()
    if rev is None:
        if inc.is_open:
            raise Http404("no review before the incident is resolved")
        rev = Review(incident=inc, facts=selectors.measured_facts(inc), narrative="")
    return rev


@perm_required(VIEW)
@require_GET
def review_markdown(request, public_id):
    inc = _incident(public_id)
    response = HttpResponse(selectors.markdown_review(inc, _review_or_facts(inc)), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="review-INC-{inc.pk}.md"'
    return response


@perm_required(VIEW)
@require_GET
def review_print(request, public_id):
    inc = _incident(public_id)
    rev = _review_or_facts(inc)
    return render(request, "command/review_print.html", {"incident": inc, "review": rev, "facts": rev.facts,
                                                          "action_items": list(inc.action_items.select_related("owner"))})


@perm_required(RESPOND)
@require_POST
def action_add(request, public_id):
    inc = _incident(public_id)
    due = request.POST.get("due_date") or ""
    try:
        services.action_item_add(incident=inc, title=request.POST.get("title", ""), owner=request.POST.get("owner") or None,
                                 due_date=date.fromisoformat(due) if due else None, link_kind=request.POST.get("link_kind", ""),
                                 link_target=request.POST.get("link_target", ""), actor=request.user)
    except ValueError:
        messages.error(request, "the due date is not a date")
    except PortalError as exc:
        return page_error(request, exc, back="command:review", public_id=inc.public_id)
    return redirect("command:review", public_id=inc.public_id)


@perm_required(RESPOND)
@require_POST
def action_state(request, item_id):
    item = get_object_or_404(ActionItem.objects.select_related("incident"), public_id=item_id)
    try:
        services.action_item_set_state(item=item, state=request.POST.get("state", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="command:action_items")
    return redirect(request.POST.get("next") or "command:action_items")


@perm_required(VIEW)
@require_GET
def action_items(request):
    today = timezone.now().date()
    return render(request, "command/action_items.html", {"items": list(selectors.open_action_items()), "today": today})


# ------------------------------------------------------------------------------------------------ status pages


@perm_required(VIEW)
@require_GET
def status_staff(request):
    return render(request, "command/status.html", {
        "journeys": selectors.journey_states(), "vendors": selectors.vendor_states(),
        "incidents": selectors.current_incidents(public=False), "public": False,
        "public_enabled": settings.STATUS_PAGE_PUBLIC,
    })


@require_GET
def status_public(request):
    """No login and no internal detail: journeys and vendors by state, public updates by title."""
    if not settings.STATUS_PAGE_PUBLIC:
        raise Http404("the public status page is off")
    vendors = [{"name": v["name"], "status": v["status"]} for v in selectors.vendor_states()]
    journeys = [{"label": j["label"], "state": j["state"]} for j in selectors.journey_states()]
    return render(request, "command/status_public.html", {
        "journeys": journeys, "vendors": vendors, "incidents": selectors.current_incidents(public=True),
    })
