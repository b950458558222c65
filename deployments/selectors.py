"""Reads of the deployments app. `active_deployment` and `recent_deployments` are contracts."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from deployments.models import (
    ACTIVE_DEPLOYMENT_STATES,
    ACTIVE_ROLLBACK_STATES,
    AutoscaleDecision,
    Deployment,
    Rollback,
    ScaleAction,
)
from portal.incidents.models import Incident


def active_deployment(environment) -> Deployment | None:
    return (Deployment.objects.select_related("release", "strategy", "environment")
            .filter(environment=environment, state__in=ACTIVE_DEPLOYMENT_STATES).first())


def latest_deployment(environment) -> Deployment | None:
    return (Deployment.objects.select_related("release", "strategy", "environment")
            .filter(environment=environment).order_by("-created_at", "-id").first())


def recent_deployments(environment, within_minutes: int = 60, at=None) -> list[Deployment]:
    """Deployments running at `at` (default now) or finished within `within_minutes` before it."""
    at = at or timezone.now()
    since = at - timedelta(minutes=within_minutes)
    qs = Deployment.objects.select_related("release", "strategy").filter(created_at__lte=at).filter(
        Q(finished_at__isnull=True, state__in=ACTIVE_DEPLOYMENT_STATES) | Q(finished_at__gte=since))
    if environment is not None:
        qs = qs.filter(environment=environment)
    return list(qs.order_by("-created_at")[:20])


def active_rollback(environment) -> Rollback | None:
    return Rollback.objects.filter(environment=environment, state__in=ACTIVE_ROLLBACK_STATES).first()


def latest_rollback(environment) -> Rollback | None:
    return Rollback.objects.select_related("deployment__release").filter(environment=environment).first()


def history(environment, limit: int = 20) -> list[Deployment]:
    return list(Deployment.objects.select_related("release", "strategy").filter(environment=environment)[:limit])


def incidents_for(deployment: Deployment) -> list:
    """Incidents of the environment opened while it ran or within an hour after it finished."""
    start = deployment.started_at or deployment.created_at
    end = (deployment.finished_at or timezone.now()) + timedelta(hours=1)
    qs = Incident.objects.filter(opened_at__gte=start, opened_at__lte=end).filter(
        Q(environment=deployment.environment) | Q(environment__isnull=True))
    if deployment.incident_id:
        qs = qs | Incident.objects.filter(pk=deployment.incident_id)
    return list(qs.distinct().order_by("opened_at")[:50])


def pending_scale_approvals(environment) -> list[ScaleAction]:
    return list(ScaleAction.objects.filter(environment=environment, state=ScaleAction.State.AWAITING_APPROVAL))


def recent_scale_actions(environment, limit: int = 10) -> list[ScaleAction]:
    return list(ScaleAction.objects.select_related("approved_by").filter(environment=environment)[:limit])


def recent_autoscale_decisions(environment, limit: int = 10) -> list[AutoscaleDecision]:
    return list(AutoscaleDecision.objects.filter(environment=environment)[:limit])
