"""Celery tasks of the sandbox: thin callers of its modules, safe to redeliver."""

from __future__ import annotations

from celery import shared_task

from portal.sandbox import prometheus
from portal.sandbox.platform import alarms_sync_all

OPTS = {"acks_late": True, "queue": "actions", "soft_time_limit": 60, "time_limit": 90}

ALARMS_SYNC = "portal.sandbox.tasks.alarms_sync"
PROMETHEUS_RULES_SYNC = "portal.sandbox.tasks.prometheus_rules_sync"


@shared_task(name=ALARMS_SYNC, **OPTS)
def alarms_sync(metric: str = "", severity: str = "") -> int:
    """A threshold changed (portal.health.thresholds names this task, registered by the app config):
    the sandbox's CloudWatch alarms are put again at the values stored now, so a repeat does the same."""
    return alarms_sync_all()


@shared_task(name=PROMETHEUS_RULES_SYNC, **OPTS)
def prometheus_rules_sync(metric: str = "", severity: str = "") -> bool:
    """A threshold changed: the sandbox's Prometheus loads the rules exported from the values stored now."""
    return prometheus.rules_sync()
