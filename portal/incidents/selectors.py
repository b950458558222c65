"""Reads for the incident pages, the API and the dashboard figures."""

from __future__ import annotations

import math
from datetime import timedelta

from django.core.cache import cache
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from deployments.models import Deployment, DeploymentState  # models only: deployments imports this module
from portal.cloud.models import Environment
from portal.incidents.models import Alert, Incident, Severity


def incident_list(*, status: str = "", severity: str = "", environment: str = "", service: str = "") -> QuerySet[Incident]:
    """Open incidents first (triggered, then acknowledged), newest first within each."""
    qs = Incident.objects.select_related("environment", "assignee")
    if status == "open":
        qs = qs.exclude(status=Incident.Status.RESOLVED)
    elif status:
        qs = qs.filter(status=status)
    if severity:
        qs = qs.filter(severity=severity)
    if environment:
        qs = qs.filter(environment__name=environment)
    if service:
        qs = qs.filter(service=service)
    order = Case(
        When(status=Incident.Status.TRIGGERED, then=Value(0)),
        When(status=Incident.Status.ACKNOWLEDGED, then=Value(1)),
        default=Value(2), output_field=IntegerField(),
    )
    return qs.annotate(_open_order=order).order_by("_open_order", "-opened_at")


def open_incidents(limit: int = 10) -> list[Incident]:
    return list(incident_list(status="open")[:limit])


def filter_choices() -> dict:
    services = Incident.objects.exclude(service="").values_list("service", flat=True).distinct().order_by("service")[:100]
    return {
        "statuses": Incident.Status.choices,
        "severities": [("critical", "Critical"), ("warning", "Warning")],
        "environments": list(Environment.objects.values_list("name", flat=True)),
        "services": list(services),
    }


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    index = max(0, math.ceil(0.9 * len(ordered)) - 1)
    return ordered[index]


def response_figures(*, weeks: int = 8, now=None) -> list[dict]:
    """Mean and p90 minutes to acknowledge and to resolve, per ISO week and severity, newest week first."""
    now = now or timezone.now()
    since = now - timedelta(weeks=weeks)
    rows = Incident.objects.filter(opened_at__gte=since).values_list("opened_at", "severity", "acknowledged_at", "resolved_at")
    buckets: dict[tuple[str, str], dict[str, list[float]]] = {}
    for opened, severity, acked, resolved in rows:
        year, week, _ = opened.isocalendar()
        b = buckets.setdefault((f"{year}-W{week:02d}", severity), {"ack": [], "resolve": [], "count": []})
        b["count"].append(1)
        if acked:
            b["ack"].append((acked - opened).total_seconds() / 60)
        if resolved:
            b["resolve"].append((resolved - opened).total_seconds() / 60)
    out = []
    for (week, severity), b in sorted(buckets.items(), key=lambda kv: (kv[0][0], kv[0][1]), reverse=True):
        out.append({
            "week": week, "severity": severity, "incidents": len(b["count"]),
            "ack_mean": sum(b["ack"]) / len(b["ack"]) if b["ack"] else None,
            "ack_p90": _p90(b["ack"]) if b["ack"] else None,
            "resolve_mean": sum(b["resolve"]) / len(b["resolve"]) if b["resolve"] else None,
            "resolve_p90": _p90(b["resolve"]) if b["resolve"] else None,
        })
    return out


FIGURES_FRESH_SECONDS = 60


def response_figures_recent(*, weeks: int = 8) -> tuple[list[dict], object]:
    """response_figures as computed at most a minute ago, and when: the incident list is opened on
    every refresh by everyone on call, and eight weeks of incidents are read once a minute, not on
    each request (a process's cache, or the shared one where CACHES names one)."""
    key = f"incidents:response-figures:{weeks}"
    hit = cache.get(key)
    if hit is None:
        hit = (response_figures(weeks=weeks), timezone.now())
        cache.set(key, hit, FIGURES_FRESH_SECONDS)
    return hit


def last_opened_at(incident: Incident):
    """When the incident opened, or last reopened."""
    if incident.reopened_count:
        return incident.timeline.filter(kind="reopened").order_by("-at").values_list("at", flat=True).first() or incident.opened_at
    return incident.opened_at


def recent_deployments_for(incident: Incident) -> list:
    """The deployments that matter to the incident: the one live on the affected colour (the newest
    deployment to the colour its alerts name, else the environment's newest) and the one before it
    (what was live before), each marked with `incident_role`."""
    if incident.environment_id is None:
        return []
    colour = next((str(a.labels.get("colour")) for a in incident.alerts.all() if (a.labels or {}).get("colour")), "")
    qs = Deployment.objects.select_related("release", "strategy").filter(environment_id=incident.environment_id)
    scoped = (qs.filter(to_colour=colour) if colour else qs).order_by("-created_at", "-id")
    # Live when the incident (last) opened: still running then, or completed (serving its colour). A rollout
    # that was rolled back or aborted before that left its colour without traffic.
    opened = last_opened_at(incident)
    live = scoped.filter(created_at__lte=opened + timedelta(minutes=2)).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gte=opened) | Q(state=DeploymentState.COMPLETED)).first() \
        or scoped.first()
    if live is None:
        return []
    live.incident_role = f"live on {live.to_colour}"
    before = qs.filter(created_at__lt=live.created_at).exclude(pk=live.pk).order_by("-created_at", "-id").first()
    if before is None:
        return [live]
    before.incident_role = "the one before it"
    return [live, before]


def open_critical_naming_colour(*, environment, colour: str, since, exclude_alert_names=()) -> Incident | None:
    """The first open critical incident of the environment since `since` whose firing alerts name the
    colour (the `colour` label, which ingest also sets from a CloudWatch alarm's target group)."""
    alerts = Alert.objects.filter(incident__environment=environment, incident__severity=Severity.CRITICAL,
                                  incident__opened_at__gte=since, labels__colour=colour, status=Alert.Status.FIRING) \
        .exclude(incident__status=Incident.Status.RESOLVED).exclude(name__in=list(exclude_alert_names))
    alert = alerts.select_related("incident").order_by("incident__opened_at").first()
    return alert.incident if alert else None
