"""On-call pages: who is on call (/oncall/), one's own contact methods and rules (/oncall/me/), the
dashboard panel, "take the pager", and the calendar feeds (secret token in the URL, no session)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from portal.accounts.permissions import perm_required
from portal.accounts.roles import APPROVE, RESPOND, VIEW
from portal.errors import PortalError, page_error
from portal.oncall import calendar, selectors, services
from portal.oncall.models import (
    ContactKind,
    ContactMethod,
    NotificationRule,
    OncallProfile,
    Override,
    Schedule,
    Severity,
    TestPage,
    hash_secret,
)

TIMELINE_HOURS = 14 * 24


def _bars(summary: selectors.ScheduleSummary) -> list[dict]:
    """SVG rectangles (x and width in hours from now): no inline styles, the CSP forbids them."""
    bars, users = [], {}
    for seg in summary.segments:
        x = (seg.start - summary.start).total_seconds() / 3600
        w = (seg.end - seg.start).total_seconds() / 3600
        colour = users.setdefault(seg.user.pk, len(users) % 6)
        bars.append({"x": round(x, 2), "w": round(w, 2), "user": seg.user.username, "source": seg.source,
                     "start": seg.start, "end": seg.end, "colour": colour, "override": seg.source == "override"})
    for a, b in summary.gaps:
        bars.append({"x": round((a - summary.start).total_seconds() / 3600, 2), "w": round((b - a).total_seconds() / 3600, 2),
                     "user": "", "source": "gap", "start": a, "end": b, "gap": True})
    return bars


def _days(start) -> list[dict]:
    first = start.replace(minute=0, second=0, microsecond=0)
    marks = []
    for day in range(15):
        at = (first + timedelta(days=day)).replace(hour=0)
        x = (at - start).total_seconds() / 3600
        if 0 <= x <= TIMELINE_HOURS:
            marks.append({"x": round(x, 2), "label": at.strftime("%a %d")})
    return marks


def _mine(summaries, user) -> list[dict]:
    return [{"schedule": s.schedule, "until": s.now.end} for s in summaries if s.now and s.now.user.pk == user.pk]


def _context(request) -> dict:
    summaries = selectors.oncall_summaries()
    return {
        "summaries": [{"s": s, "bars": _bars(s)} for s in summaries], "days": _days(summaries[0].start) if summaries else [],
        "mine": _mine(summaries, request.user), "gaps": [s for s in summaries if s.gaps],
        "can_take": request.user.has_perm(RESPOND), "can_lead": request.user.has_perm(APPROVE),
        "take_hours": services.TAKE_HOURS, "timeline_hours": TIMELINE_HOURS,
    }


@require_GET
@perm_required(VIEW)
def index(request):
    ctx = _context(request)
    ctx["overrides"] = (Override.objects.filter(ends_at__gt=timezone.now()).select_related("schedule", "user")
                        .order_by("starts_at")[:50])
    return render(request, "oncall/index.html", ctx)


@require_GET
@perm_required(VIEW)
def panel(request):
    return render(request, "oncall/panel.html", _context(request))


def _back(request, default: str = "oncall:index") -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return default


@require_POST
@perm_required(RESPOND)
def take(request):
    back = _back(request)
    schedule = Schedule.objects.filter(slug=request.POST.get("schedule", "")).first()
    if schedule is None:
        messages.error(request, "Choose the schedule whose pager you take.")
        return redirect(back)
    try:
        hours = int(request.POST.get("hours", "0"))
        override, created = services.pager_take(schedule=schedule, hours=hours, actor=request.user)
    except ValueError:
        messages.error(request, "Choose for how many hours you take the pager.")
        return redirect(back)
    except PortalError as exc:
        return page_error(request, exc, back=back)
    local = timezone.localtime(override.ends_at)
    if created:
        messages.success(request, f"You have the pager for {schedule.name} until {local:%a %d %b %H:%M} {local.tzname()}.")
    else:
        messages.info(request, f"You took the pager for {schedule.name} a moment ago already (until {local:%H:%M} {local.tzname()}).")
    return redirect(back)


@require_POST
@perm_required(RESPOND)
def override_delete(request, public_id):
    override = get_object_or_404(Override.objects.select_related("schedule", "user"), public_id=public_id)
    try:
        services.override_delete(override=override, actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="oncall:index")
    messages.success(request, f"Removed {override.user.username}'s override on {override.schedule.name}.")
    return redirect("oncall:index")


@require_POST
@perm_required(APPROVE)
def schedule_feed_reset(request, slug):
    schedule = get_object_or_404(Schedule, slug=slug)
    raw = services.schedule_feed_token_reset(schedule=schedule, actor=request.user)
    url = request.build_absolute_uri(f"/oncall/{schedule.slug}.ics?token={raw}")
    messages.success(request, f"New calendar link for {schedule.name} (shown once; the old link no longer works): {url}")
    return redirect("oncall:index")


# ------------------------------------------------------------------------------------------------
# /oncall/me/


@require_GET
@perm_required(VIEW)
def me(request):
    user = request.user
    return render(request, "oncall/me.html", {
        "methods": ContactMethod.objects.filter(user=user).order_by("kind", "created_at"),
        "rules": NotificationRule.objects.filter(user=user),
        "tests": TestPage.objects.filter(user=user)[:10],
        "kinds": ContactKind.choices, "severities": Severity.choices,
        "has_feed": OncallProfile.objects.filter(user=user).exclude(ical_token_hash="").exists(),
    })


def _own_method(request, public_id) -> ContactMethod:
    return get_object_or_404(ContactMethod.objects.select_related("user"), public_id=public_id)


@require_POST
@perm_required(VIEW)
def contact_add(request):
    try:
        method = services.contact_method_add(user=request.user, kind=request.POST.get("kind", ""),
                                             value=request.POST.get("value", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="oncall:me")
    messages.success(request, f"Added {method}. We sent a code to it: enter it below to verify.")
    return redirect("oncall:me")


@require_POST
@perm_required(VIEW)
def contact_verify(request, public_id):
    method = _own_method(request, public_id)
    try:
        services.contact_method_verify(method=method, code=request.POST.get("code", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="oncall:me")
    messages.success(request, f"{method} is verified: pages can reach you there.")
    return redirect("oncall:me")


@require_POST
@perm_required(VIEW)
def contact_resend(request, public_id):
    method = _own_method(request, public_id)
    try:
        result = services.contact_method_send_code(method=method, actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="oncall:me")
    if result is not None and not result.ok:
        messages.warning(request, f"A new code was made but could not be sent: {result.detail}.")
    else:
        messages.success(request, f"A new code went to {method}.")
    return redirect("oncall:me")


@require_POST
@perm_required(VIEW)
def contact_delete(request, public_id):
    method = _own_method(request, public_id)
    try:
        services.contact_method_delete(method=method, actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="oncall:me")
    messages.success(request, f"Removed {method}.")
    return redirect("oncall:me")


@require_POST
@perm_required(VIEW)
def test_page(request, public_id):
    method = _own_method(request, public_id)
    try:
        page = services.test_page_send(method=method, actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="oncall:me")
    if page.result == "sent":
        messages.success(request, f"Test page sent to {method}.")
    else:
        messages.error(request, f"The test page to {method} failed: {page.detail}.")
    return redirect("oncall:me")


@require_POST
@perm_required(VIEW)
def rule_add(request):
    try:
        services.notification_rule_add(user=request.user, severity=request.POST.get("severity", ""),
                                       kind=request.POST.get("kind", ""), delay_minutes=request.POST.get("delay_minutes", ""),
                                       actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="oncall:me")
    messages.success(request, "Rule added.")
    return redirect("oncall:me")


@require_POST
@perm_required(VIEW)
def rule_delete(request, public_id):
    rule = get_object_or_404(NotificationRule.objects.select_related("user"), public_id=public_id)
    try:
        services.notification_rule_delete(rule=rule, actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="oncall:me")
    messages.success(request, "Rule removed.")
    return redirect("oncall:me")


@require_POST
@perm_required(VIEW)
def me_feed_reset(request):
    raw = services.personal_feed_token_reset(user=request.user, actor=request.user)
    url = request.build_absolute_uri(f"/oncall/me.ics?token={raw}")
    messages.success(request, f"Your calendar link (shown once; any older link no longer works): {url}")
    return redirect("oncall:me")


# ------------------------------------------------------------------------------------------------
# Calendar feeds: the token is the credential (calendar apps send no session). A wrong token is a 404.


def _ics(body: bytes, name: str) -> HttpResponse:
    response = HttpResponse(body, content_type="text/calendar; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{name}.ics"'
    return response


@require_GET
@never_cache
def schedule_feed(request, slug):
    token = request.GET.get("token", "")
    schedule = Schedule.objects.filter(slug=slug).exclude(ical_token_hash="").first()
    if schedule is None or not token or len(token) > 200 or hash_secret(token) != schedule.ical_token_hash:
        raise Http404("no such feed")
    return _ics(calendar.schedule_calendar(selectors.find_schedule(slug)), schedule.slug)


@require_GET
@never_cache
def personal_feed(request):
    token = request.GET.get("token", "")
    if not token or len(token) > 200:
        raise Http404("no such feed")
    profile = OncallProfile.objects.select_related("user").filter(ical_token_hash=hash_secret(token)).first()
    if profile is None or not profile.user.is_active:
        raise Http404("no such feed")
    return _ics(calendar.personal_calendar(profile.user), f"oncall-{profile.user.username}")
