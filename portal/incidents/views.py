"""Incident pages: list with filters and live refresh, detail with actions, rejected deliveries, dashboard panel."""

from __future__ import annotations

import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Q
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from deployments.models import Rollback
from portal.accounts.permissions import perm_required
from portal.accounts.roles import APPROVE, RESPOND, VIEW, VIEW_AUDIT
from portal.cloud import aws
from portal.errors import PortalError, page_error
from portal.health import thresholds
from portal.incidents import bulk, cause, changes, grouping, selectors, services, signal, silences
from portal.incidents.markdown import render_markdown
from portal.incidents.models import (
    GroupingRule,
    Incident,
    MaintenanceWindow,
    RejectedDelivery,
    Silence,
    TimelineEntry,
)
from portal.oncall import selectors as oncall_selectors

FILTERS = ("status", "severity", "environment", "service")


def _filters(request) -> dict:
    values = {k: request.GET.get(k, "").strip()[:100] for k in FILTERS}
    if values["status"] not in ("", "open", "triggered", "acknowledged", "resolved"):
        values["status"] = ""
    if values["severity"] not in ("", "critical", "warning"):
        values["severity"] = ""
    return values


@perm_required(VIEW)
def incident_list(request):
    filters = _filters(request)
    page = Paginator(selectors.incident_list(**filters), 50).get_page(request.GET.get("page"))
    context = {"page": page, "filters": filters, "now": timezone.now(), "query": request.GET.urlencode(),
               "can_respond": request.user.has_perm(RESPOND)}
    if request.htmx and request.GET.get("partial") == "rows":
        return render(request, "incidents/_rows.html", context)
    context["choices"] = selectors.filter_choices()
    context["figures"], context["figures_at"] = selectors.response_figures_recent()
    return render(request, "incidents/list.html", context)


log = logging.getLogger(__name__)
PANEL_FRESH = 10  # seconds: the dashboard polls every 10 s
# A row older than PANEL_FRESH is still served (and worked out again off the request); one older than
# this is worked out on the request, as a missing one is.
PANEL_STALE_MAX = 120
# One thread a web process works stale rows out again: a row reads AWS and the metrics (causes, the
# chart, the weights), and ten of them on a request held the dashboard for seconds at ten times the data.
_refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="panel-refresh")


def _panel_row(incident: Incident, weights_by_env: dict) -> dict:
    """One dashboard row: the sparkline of what fired, the top cause, the live colour's weights and error rate."""
    key = f"incidents:panel_row:{incident.pk}:{incident.status}"
    found = cache.get(key)
    if found is not None:
        row, at = found
        if time.time() - at > PANEL_FRESH and cache.add(f"{key}:refreshing", 1, PANEL_FRESH):
            _refresher.submit(_panel_row_refresh, incident.pk, key)
        return row
    row = _panel_row_compute(incident, weights_by_env)
    cache.set(key, (row, time.time()), PANEL_STALE_MAX)
    return row


def _panel_row_refresh(incident_id: int, key: str) -> None:
    try:
        incident = Incident.objects.select_related("environment").filter(pk=incident_id).first()
        if incident is not None and key.endswith(f":{incident.status}"):
            cache.set(key, (_panel_row_compute(incident, {}), time.time()), PANEL_STALE_MAX)
    except Exception:  # noqa: BLE001 - the stale row stays; the next poll tries again
        log.warning("dashboard row of incident %s could not be worked out again", incident_id, exc_info=True)
    finally:
        connection.close()  # this thread's own connection: no request closes it


def _panel_row_compute(incident: Incident, weights_by_env: dict) -> dict:
    row = {"spark": "", "top": None, "weights": {}, "live": "", "error_rate": None, "fired": signal.what_fired(incident)}
    if incident.environment_id:
        causes = _causes(incident)
        row["top"] = causes[0] if causes else None
        env = incident.environment
        if env.pk not in weights_by_env:
            try:
                weights_by_env[env.pk] = aws.get_listener_weights(env)
            except Exception:  # noqa: BLE001 - the row says the weights are unknown
                weights_by_env[env.pk] = {}
        row["weights"] = weights_by_env[env.pk]
        row["live"] = max(row["weights"], key=lambda c: row["weights"][c]) if row["weights"] else ""
        chart = signal.signal_chart(incident)
        series = chart["series"].get(row["fired"].colour or row["live"] or "all") or next(iter(chart["series"].values()), [])
        row["spark"] = signal.sparkline(series)
        try:
            if row["live"]:
                row["error_rate"] = signal.current_value(signal.source_for(incident, row["fired"]), "error_rate", row["live"])
        except Exception:  # noqa: BLE001 - unknown is shown as such
            row["error_rate"] = None
    return row


@perm_required(VIEW)
def panel(request):
    incidents = selectors.open_incidents(10)
    weights_by_env: dict = {}
    rows = [{"incident": inc, **_panel_row(inc, weights_by_env)} for inc in incidents]
    oncall = []
    try:
        oncall = [{"schedule": s.schedule.name, "user": s.now.user.get_username() if s.now else ""}
                  for s in oncall_selectors.oncall_summaries()]
    except Exception:  # noqa: BLE001 - the panel shows incidents even when a schedule cannot be computed
        oncall = []
    return render(request, "incidents/panel.html", {"incidents": incidents, "rows": rows, "now": timezone.now(), "oncall": oncall,
                                                     "open_count": Incident.objects.exclude(status=Incident.Status.RESOLVED).count()})


def _incident(public_id) -> Incident:
    return get_object_or_404(Incident.objects.select_related("environment", "assignee"), public_id=public_id)


def _timeline_rows(incident: Incident) -> list[dict]:
    rows = []
    for entry in incident.timeline.all():
        rows.append({"entry": entry, "html": render_markdown(entry.text) if entry.kind == TimelineEntry.Kind.NOTE else ""})
    return rows


CAUSES_FRESH = 5  # seconds: the live regions poll; AWS and the metrics are read at most this often per incident


def _causes(incident: Incident) -> list:
    key = f"incidents:causes:{incident.pk}:{incident.status}"
    found = cache.get(key)
    if found is None:
        found = cause.likely_causes(incident)
        cache.set(key, found, CAUSES_FRESH)
    return found


def _live_context(request, incident: Incident) -> dict:
    """The live region: status, who acknowledged, the top cause's action and what it did (weights read back)."""
    causes = _causes(incident)
    top = causes[0] if causes else None
    rollback = None
    if incident.environment_id:
        rollback = Rollback.objects.filter(environment_id=incident.environment_id).order_by("-requested_at", "-id").first()
    now = timezone.now()
    rollback_active = rollback is not None and rollback.is_active
    action = top.action if top else None
    runs_url = f"/runbooks/incidents/{incident.public_id}/runs/"
    return {
        "incident": incident, "causes": causes, "top": top, "action": action, "now": now,
        "can_respond": request.user.has_perm(RESPOND), "env": incident.environment,
        "latest": (action or {}).get("deployment"), "rollback": rollback, "rollback_active": rollback_active,
        "rollback_recent": rollback is not None and rollback.finished_at is not None
        and rollback.finished_at > now - timedelta(minutes=10),
        "poll": "every 2s" if rollback_active else "every 5s", "runs_url": runs_url,
        "fired": signal.what_fired(incident),
    }


@perm_required(VIEW)
def incident_detail(request, public_id):
    incident = _incident(public_id)
    responders = get_user_model().objects.filter(
        Q(groups__permissions__codename="respond") | Q(is_superuser=True), is_active=True
    ).distinct().order_by("username")
    context = _live_context(request, incident)
    context.update({
        "alerts": incident.alerts.select_related("environment").all(),
        "timeline": _timeline_rows(incident),
        "deployments": selectors.recent_deployments_for(incident),
        "changes": changes.change_feed(incident.environment),
        "responders": responders,
        "notifications": incident.notifications.select_related("channel").order_by("-created_at")[:20],
        "thresholds": [t for t in (thresholds.threshold(context["fired"].metric, s) for s in ("critical", "warning")) if t],
    })
    return render(request, "incidents/detail.html", context)


@perm_required(VIEW)
@require_GET
def incident_live(request, public_id):
    """The status and action region of the incident page (htmx, every 5 s; 2 s while a rollback runs)."""
    incident = _incident(public_id)
    template = "incidents/_status.html" if request.GET.get("part") == "status" else "incidents/_action.html"
    return render(request, template, _live_context(request, incident))


@perm_required(VIEW)
@require_GET
def incident_causes(request, public_id):
    incident = _incident(public_id)
    return render(request, "incidents/_causes.html", {"incident": incident, "causes": _causes(incident)})


@perm_required(VIEW)
@require_GET
def incident_changes(request, public_id):
    incident = _incident(public_id)
    return render(request, "incidents/_changes.html", {
        "incident": incident, "changes": changes.change_feed(incident.environment),
        "deployments": selectors.recent_deployments_for(incident)})


@perm_required(VIEW)
@require_GET
def incident_signal(request, public_id):
    """The chart's JSON: the metric that fired per colour over the hour, thresholds, opening, marks."""
    incident = _incident(public_id)
    return JsonResponse(signal.signal_chart(incident))


@perm_required(VIEW)
def incident_timeline(request, public_id):
    incident = _incident(public_id)
    return render(request, "incidents/_timeline.html", {"incident": incident, "timeline": _timeline_rows(incident)})


@perm_required(VIEW)
def incident_export(request, public_id):
    incident = _incident(public_id)
    response = HttpResponse(services.incident_export_markdown(incident), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="incident-{incident.public_id}.md"'
    return response


def _back(incident: Incident):
    return redirect(incident.get_absolute_url())


@require_POST
@perm_required(RESPOND)
def incident_acknowledge(request, public_id):
    incident = _incident(public_id)
    try:
        services.incident_acknowledge(incident=incident, actor=request.user)
        messages.success(request, "Acknowledged: escalation stopped.")
    except services.InvalidTransition as exc:
        messages.error(request, str(exc))
    return _back(incident)


@require_POST
@perm_required(RESPOND)
def incident_resolve(request, public_id):
    incident = _incident(public_id)
    services.incident_resolve(incident=incident, actor=request.user, reason=request.POST.get("reason", "").strip()[:500])
    messages.success(request, "Resolved.")
    return _back(incident)


RESULT_WORDS = {"done": "done", "already": "already", "not_allowed": "not allowed", "not_found": "not found"}


@require_POST
@perm_required(RESPOND)
def incident_bulk(request):
    """Acknowledge or resolve the ticked incidents of the list, each on its own (and audited one by one)."""
    action, ids = request.POST.get("action", ""), request.POST.getlist("ids")
    if not ids:
        messages.error(request, "Tick at least one incident.")
        return redirect("incidents:list")
    try:
        results = bulk.incident_bulk(action=action, ids=ids, actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="incidents:list")
    counts = Counter(r["result"] for r in results)
    verb = "Acknowledged" if action == "acknowledge" else "Resolved"
    words = ", ".join(f"{counts[k]} {RESULT_WORDS[k]}" for k in RESULT_WORDS if counts[k])
    messages.success(request, f"{verb} {counts['done']} of {len(results)} incidents ({words}).")
    return redirect(request.POST.get("next") if url_has_allowed_host_and_scheme(request.POST.get("next"), allowed_hosts={request.get_host()})
                    else "incidents:list")


@require_POST
@perm_required(RESPOND)
def incident_reopen(request, public_id):
    incident = _incident(public_id)
    try:
        services.incident_reopen(incident=incident, actor=request.user, reason=request.POST.get("reason", "").strip()[:500])
        messages.success(request, "Reopened.")
    except services.IncidentConflict as exc:
        messages.error(request, str(exc))
    return _back(incident)


@require_POST
@perm_required(RESPOND)
def incident_assign(request, public_id):
    incident = _incident(public_id)
    username = request.POST.get("assignee", "").strip()
    assignee = None
    if username:
        assignee = get_user_model().objects.filter(username=username, is_active=True).first()
        if assignee is None or not assignee.has_perm(RESPOND):
            messages.error(request, f"{username} is not a responder.")
            return _back(incident)
    services.incident_assign(incident=incident, assignee=assignee, actor=request.user)
    messages.success(request, f"Assigned to {username or 'nobody'}.")
    return _back(incident)


@require_POST
@perm_required(RESPOND)
def incident_note(request, public_id):
    incident = _incident(public_id)
    text = request.POST.get("text", "").strip()
    if not text:
        messages.error(request, "A note needs text.")
    else:
        services.incident_note_add(incident=incident, actor=request.user, text=text)
        messages.success(request, "Note added.")
    return _back(incident)


@require_POST
@perm_required(RESPOND)
def incident_postmortem(request, public_id):
    incident = _incident(public_id)
    services.incident_postmortem_update(
        incident=incident, actor=request.user, summary=request.POST.get("summary", ""), impact=request.POST.get("impact", ""),
        root_cause=request.POST.get("root_cause", ""), actions=request.POST.get("actions", ""),
    )
    messages.success(request, "Postmortem saved.")
    return _back(incident)


@perm_required(VIEW_AUDIT)
def rejected_deliveries(request):
    qs = RejectedDelivery.objects.all()
    source = request.GET.get("source", "").strip()[:20]
    if source:
        qs = qs.filter(source=source)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render(request, "incidents/rejected.html", {"page": page, "source": source})


# ---------------------------------------------------------------------------------------------- silences


def _matchers(text: str) -> dict[str, str]:
    """"environment=production, metric=error_rate" -> {"environment": "production", "metric": "error_rate"}."""
    out = {}
    for part in (text or "").replace("\n", ",").split(","):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        if not eq:
            raise silences.SilenceInvalid(f"{part.strip()!r} is not label=value")
        out[name.strip()] = value.strip()
    return out


def _when(text: str):
    """A datetime-local field, read as UTC; empty is None."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise silences.SilenceInvalid(f"{text!r} is not a date and time") from exc
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def _minutes(text: str, default: int) -> int:
    try:
        return int(text or default)
    except ValueError as exc:
        raise silences.SilenceInvalid("the duration is a whole number of minutes") from exc


@perm_required(VIEW)
def silence_list(request):
    now = timezone.now()
    live = Silence.objects.filter(deleted_at__isnull=True, ends_at__gt=now).order_by("starts_at", "id")
    windows = [(w, silences.occurrence_at(w, now)) for w in MaintenanceWindow.objects.all()]
    return render(request, "incidents/silences.html", {
        "silences": live, "windows": windows, "now": now, "can_respond": request.user.has_perm(RESPOND),
        "would_have_paged": silences.would_have_paged(now)[:50],
        "ended": Silence.objects.filter(Q(deleted_at__isnull=False) | Q(ends_at__lte=now)).order_by("-ends_at")[:20],
    })


@perm_required(RESPOND)
@require_POST
def silence_create(request):
    try:
        starts = _when(request.POST.get("starts_at", ""))
        minutes = _minutes(request.POST.get("minutes", ""), 60)
        silences.silence_create(matchers=_matchers(request.POST.get("matchers", "")), starts_at=starts,
                                ends_at=(starts or timezone.now()) + timedelta(minutes=minutes),
                                reason=request.POST.get("reason", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="incidents:silences")
    messages.success(request, "Silence created.")
    return redirect("incidents:silences")


@perm_required(RESPOND)
@require_POST
def silence_delete(request, public_id):
    silence = get_object_or_404(Silence, public_id=public_id)
    silences.silence_delete(silence=silence, actor=request.user)
    messages.success(request, "Silence ended.")
    return redirect("incidents:silences")


@perm_required(RESPOND)
@require_POST
def maintenance_create(request):
    try:
        starts = _when(request.POST.get("starts_at", ""))
        if starts is None:
            raise silences.SilenceInvalid("a maintenance window needs its first start")
        silences.maintenance_create(name=request.POST.get("name", ""), matchers=_matchers(request.POST.get("matchers", "")),
                                    starts_at=starts, duration_minutes=_minutes(request.POST.get("minutes", ""), 60),
                                    rrule=request.POST.get("rrule", ""), reason=request.POST.get("reason", ""), actor=request.user)
    except PortalError as exc:
        return page_error(request, exc, back="incidents:silences")
    messages.success(request, "Maintenance window planned.")
    return redirect("incidents:silences")


@perm_required(RESPOND)
@require_POST
def maintenance_delete(request, public_id):
    window = get_object_or_404(MaintenanceWindow, public_id=public_id)
    silences.maintenance_delete(window=window, actor=request.user)
    messages.success(request, "Maintenance window removed.")
    return redirect("incidents:silences")


@perm_required(VIEW)
@require_GET
def silence_banner(request):
    """Every page loads it (base.html), like the automation banner: shown while a silence or window holds pages."""
    now = timezone.now()
    active = list(silences.silences_live(now).order_by("ends_at")[:5])
    windows = silences.maintenance_live(now)
    return render(request, "incidents/_silence_banner.html", {"silences": active, "windows": windows,
                                                               "count": silences.silences_live(now).count()})


# ---------------------------------------------------------------------------------------------- grouping rules


def _rule_from_post(request, rule: GroupingRule | None) -> GroupingRule:
    return grouping.grouping_rule_build(
        rule=rule, name=request.POST.get("name", ""), labels=request.POST.get("labels", ""),
        optional_labels=request.POST.get("optional_labels", ""), window_minutes=request.POST.get("window_minutes", "30"),
        priority=request.POST.get("priority", "100"), enabled=request.POST.get("enabled") == "on")


@perm_required(VIEW)
def grouping_rules(request):
    """The rules, each editable by a lead, with a preview over the last seven days before saving."""
    rules = list(GroupingRule.objects.all())
    context = {"rules": rules, "can_edit": request.user.has_perm(APPROVE), "preview": None, "days": grouping.PREVIEW_DAYS}
    if request.method == "POST":
        if not request.user.has_perm(APPROVE):
            return render(request, "403.html", {"message": "only a lead edits grouping rules"}, status=403)
        slug = request.POST.get("slug", "")
        original = next((r for r in rules if r.slug == slug), None) if slug else None
        try:
            edited = _rule_from_post(request, GroupingRule.objects.get(pk=original.pk) if original else None)
            if request.POST.get("action") == "save":
                grouping.grouping_rule_save(rule=edited, actor=request.user)
                messages.success(request, f"Grouping rule {edited.name} saved.")
                return redirect("incidents:grouping")
        except PortalError as exc:
            return page_error(request, exc, back="incidents:grouping")
        others = [r for r in rules if original is None or r.pk != original.pk]
        before = grouping.grouping_preview(rules=rules)
        after = grouping.grouping_preview(rules=[*others, edited])
        context.update(preview=after.sentence(before), edited=edited)
    return render(request, "incidents/grouping.html", context)
