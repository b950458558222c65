"""Celery tasks of the deployments app (queue `actions`): thin callers of the rollout and rollback engines and the autoscaler.

Every task takes ids, reloads and locks its rows and checks the state first, so a redelivered or
duplicated task is harmless. The beat driver (`deployments_drive`) restarts whatever a dead worker
left behind; the watchdog is never retried and raises an alert when a rollout stalls.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from deployments import conf
from deployments.autoscale import evaluate_all
from deployments.mechanics import raise_alert
from deployments.models import (
    ACTIVE_ROLLBACK_STATES,
    DRIVEN_STATES,
    AnalysisTemplate,
    Deployment,
    Rollback,
    RollbackState,
)
from deployments.rollback import rollback_advance
from deployments.rollout import deployment_advance
from deployments.strategies import template_false_alarms as simulate_template

log = logging.getLogger(__name__)


@shared_task(bind=True, queue="actions", acks_late=True, soft_time_limit=110, time_limit=130)
def deployment_step(self, deployment_id: int) -> str:
    return deployment_advance(deployment_id=deployment_id)


@shared_task(bind=True, queue="actions", acks_late=True, soft_time_limit=110, time_limit=130)
def rollback_run(self, rollback_id: int) -> str:
    """Carry a rollback through; poll in-process (fast when the old colour is warm), then hand over."""
    deadline = time.monotonic() + float(conf.get("ROLLBACK_TASK_BUDGET_SECONDS"))
    state = rollback_advance(rollback_id=rollback_id)
    while state in ACTIVE_ROLLBACK_STATES and time.monotonic() < deadline:
        time.sleep(float(conf.get("ROLLBACK_POLL_SECONDS")))
        state = rollback_advance(rollback_id=rollback_id)
    if state in ACTIVE_ROLLBACK_STATES and not self.request.is_eager:
        rollback_run.apply_async((rollback_id,), countdown=float(conf.get("ROLLBACK_POLL_SECONDS")))
    return state


@shared_task(bind=True, queue="actions", acks_late=True, soft_time_limit=50, time_limit=60)
def deployments_drive(self) -> dict:
    """Beat, every few seconds: kick rollouts whose wait is over and rollbacks nobody is polling."""
    now = timezone.now()
    kicked = {"deployments": 0, "rollbacks": 0}
    for dep_id in Deployment.objects.filter(state__in=DRIVEN_STATES, wake_at__lte=now).values_list("pk", flat=True):
        deployment_step.delay(dep_id)
        kicked["deployments"] += 1
    stale = now - timedelta(seconds=float(conf.get("ROLLBACK_POLL_SECONDS")) * 4 + 5)
    for rb in Rollback.objects.filter(state__in=ACTIVE_ROLLBACK_STATES):
        if rb.polled_at is None and rb.requested_at > stale:
            continue  # just requested: its own task is on the way
        if rb.polled_at is None or rb.polled_at < stale:
            rollback_run.delay(rb.pk)
            kicked["rollbacks"] += 1
    return kicked


@shared_task(bind=True, queue="actions", acks_late=False, max_retries=0, soft_time_limit=50, time_limit=60)
def deployments_watchdog(self) -> int:
    """Never retried: a rollout or rollback that stopped moving raises an alert (once per stall)."""
    now = timezone.now()
    stall = timedelta(seconds=float(conf.get("STALL_SECONDS")))
    alerted = 0
    for dep in Deployment.objects.select_related("environment", "release").filter(
            state__in=DRIVEN_STATES, wake_at__lt=now - stall, stall_alerted_at__isnull=True):
        raise_alert(environment=dep.environment, key=f"stalled:{dep.public_id}", name="RolloutStalled", severity="warning",
                    summary=f"Deployment {dep.release.version} on {dep.environment.name} has been {dep.get_state_display().lower()} "
                            f"with nothing happening since {dep.wake_at:%H:%M:%S} UTC (is a worker running the actions queue?)",
                    deployment=dep)
        Deployment.objects.filter(pk=dep.pk).update(stall_alerted_at=now)
        alerted += 1
    for rb in Rollback.objects.select_related("environment").filter(state__in=ACTIVE_ROLLBACK_STATES,
                                                                     requested_at__lt=now - stall):
        raise_alert(environment=rb.environment, key=f"rollback-stalled:{rb.public_id}", name="RollbackStalled", severity="critical",
                    summary=f"Rollback to {rb.to_colour} on {rb.environment.name} is still {RollbackState(rb.state).label.lower()} "
                            f"after {(now - rb.requested_at).total_seconds():.0f} s")
        alerted += 1
    return alerted


@shared_task(bind=True, queue="actions", acks_late=True, soft_time_limit=100, time_limit=120)
def autoscale_evaluate(self) -> list[str]:
    """Beat: the automatic scaler, one decision per environment and live colour."""
    return [d.decision for d in evaluate_all()]


@shared_task(bind=True, queue="default", acks_late=True, soft_time_limit=110, time_limit=130)
def template_false_alarms(self, template_id: int) -> float | None:
    """After a template is saved: simulate clean steps under it and store its false-alarm rate."""
    t = AnalysisTemplate.objects.filter(pk=template_id).first()
    return simulate_template(t).false_alarm_rate if t else None


@shared_task(bind=True, queue="actions", acks_late=True, soft_time_limit=50, time_limit=60)
def deployments_on_event(self, event: dict) -> int:
    """An incident opened: the rollout on its environment looks at its alarms now, not at its next run."""
    if event.get("kind") != "incident.opened" or (event.get("data") or {}).get("severity") != "critical":
        return 0
    name = (event.get("data") or {}).get("environment")
    if not name:
        return 0
    kicked = 0
    now = timezone.now()
    for dep_id in Deployment.objects.filter(environment__name=name, state__in=DRIVEN_STATES).values_list("pk", flat=True):
        Deployment.objects.filter(pk=dep_id).update(wake_at=now)
        deployment_step.delay(dep_id)
        kicked += 1
    return kicked
