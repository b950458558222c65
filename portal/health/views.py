"""Health pages: the grid of checks, a check's history, threshold rules, SLOs and dashboard panels."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.accounts.permissions import perm_required
from portal.accounts.reauth import any_production, step_up
from portal.accounts.roles import APPROVE, RESPOND, VIEW
from portal.health import selectors, services
from portal.health import thresholds as threshold_reads
from portal.health.models import Check, Severity, ThresholdRule

GRID_PAGE_SIZE = 100
PANEL_SERVICES = 10  # the dashboard panel lists this many external services, failing first


def _grid_context(request) -> dict:
    # Failing checks come first, so the first page is the one on-call needs; a page stays small
    # whatever the number of checks.
    page = Paginator(selectors.grid_checks(), GRID_PAGE_SIZE).get_page(request.GET.get("page"))
    rows = selectors.grid_rows(checks=list(page.object_list))
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(row["check"].get_group_display(), []).append(row)
    return {
        "groups": groups,
        "page": page,
        "counts": selectors.status_counts(),
        "heartbeats": selectors.heartbeats(),
        "can_respond": request.user.has_perm(RESPOND),
    }


@require_GET
@perm_required(VIEW)
def index(request):
    ctx = _grid_context(request)
    ctx["slos"] = selectors.slos()
    return render(request, "health/index.html", ctx)


@require_GET
@perm_required(VIEW)
def grid(request):
    return render(request, "health/_grid.html", _grid_context(request))


@require_GET
@perm_required(VIEW)
def check_detail(request, slug: str):
    check = get_object_or_404(Check.objects.select_related("environment", "rule"), slug=slug)
    results = list(selectors.check_history(check, limit=200))
    spark_rows = [{"ok": r.ok, "latency_ms": r.latency_ms, "created_at": r.created_at} for r in reversed(results[:60])]
    uptime_24h, uptime_30d = selectors.uptime_24h_30d([check.pk]).get(check.pk, (None, None))
    ctx = {
        "check": check,
        "results": results,
        "rollups": list(selectors.check_rollups(check, days=30)[:24 * 30]),
        "uptime_24h": uptime_24h,
        "uptime_30d": uptime_30d,
        "spark": selectors.sparkline_svg_points(spark_rows, width=600, height=60),
        "can_respond": request.user.has_perm(RESPOND),
    }
    if request.htmx:
        return render(request, "health/_check_body.html", ctx)
    return render(request, "health/check.html", ctx)


@require_POST
@perm_required(RESPOND)
def check_run_now(request, slug: str):
    check = get_object_or_404(Check, slug=slug)
    services.check_run_now(check=check, actor=request.user)
    messages.success(request, f"{check.name} will run on the next poll (within a few seconds).")
    return redirect(check.get_absolute_url())


def _check_environment(request, slug: str):
    """A check of an environment changes that one; a check of none (status pages) watches them all."""
    check = Check.objects.select_related("environment").filter(slug=slug).first()
    if check is None:
        return None
    return check.environment or any_production()


@require_POST
@perm_required(RESPOND)
@step_up(what=lambda request, env, slug: f"enable or disable the check {slug}", environment=_check_environment)
def check_set_enabled(request, slug: str):
    check = get_object_or_404(Check, slug=slug)
    wanted = request.POST.get("enabled")
    if wanted not in ("true", "false"):
        messages.error(request, "Say whether to enable or disable the check.")
        return redirect(check.get_absolute_url())
    services.check_set_enabled(check=check, enabled=wanted == "true", actor=request.user)
    messages.success(request, f"{check.name} {'enabled' if wanted == 'true' else 'disabled'}.")
    return redirect(check.get_absolute_url())


@require_GET
@perm_required(VIEW)
def thresholds(request):
    rules = list(ThresholdRule.objects.order_by("severity", "metric"))
    for rule in rules:
        rule.readers = threshold_reads.readers_of(rule.metric)
    return render(request, "health/thresholds.html", {
        "rules": rules,
        "readers": threshold_reads.READERS,
        "can_edit": request.user.has_perm(APPROVE),
        "severities": Severity.choices,
    })


@require_POST
@perm_required(APPROVE)
@step_up(what=lambda request, env, slug: f"change the threshold rule {slug}",
         environment=lambda request, slug: any_production(), back=lambda request, env, slug: "/health/thresholds/")
def threshold_update(request, slug: str):
    rule = get_object_or_404(ThresholdRule, slug=slug)
    try:
        value = float(request.POST.get("value", ""))
        window = int(request.POST.get("window_minutes", ""))
        raw_min = request.POST.get("min_requests", "").strip()
        min_requests = int(raw_min) if raw_min else None
    except ValueError:
        messages.error(request, f"{rule.slug}: the value must be a number and the window a whole number of minutes.")
        return redirect("health:thresholds")
    try:
        services.threshold_rule_update(
            rule=rule, actor=request.user, value=value, window_minutes=window,
            severity=request.POST.get("severity", rule.severity),
            enabled=request.POST.get("enabled") == "on", min_requests=min_requests,
        )
    except services.RuleInvalid as exc:
        messages.error(request, f"{rule.slug}: {exc}")
        return redirect("health:thresholds")
    messages.success(request, f"Rule {rule.slug} saved.")
    return redirect("health:thresholds")


@require_GET
@perm_required(VIEW)
def panel(request):
    services = selectors.service_statuses(limit=PANEL_SERVICES)
    return render(request, "health/panel.html", {
        "counts": selectors.status_counts(),
        "failing": selectors.failing_checks(limit=8),
        "services": services,
        "services_more": Check.objects.filter(group=Check.Group.EXTERNAL).count() - len(services),
        "watchdog": selectors.heartbeats().get("watchdog"),
    })


@require_GET
@perm_required(VIEW)
def slo_panel(request):
    return render(request, "health/slo_panel.html", {"slos": selectors.slos(), "table": request.GET.get("table") == "1"})

