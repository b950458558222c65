"""Periodic tasks of the health app (beat rows registered by portal/health/seed.py), all on `polling`."""

from __future__ import annotations

import logging

from celery import shared_task

from portal.health.dispatch import poll_once
from portal.health.maintenance import retention_sweep, watchdog_run
from portal.health.slo import slos_evaluate

log = logging.getLogger(__name__)


@shared_task(bind=True, queue="polling", acks_late=True, soft_time_limit=30, time_limit=45, ignore_result=True)
def health_poll(self) -> dict:
    """Claim the due checks and hand them to this worker's check pool; returns at once."""
    return poll_once(wait=False)


@shared_task(bind=True, queue="polling", acks_late=True, soft_time_limit=300, time_limit=360)
def health_rollup_and_retention(self) -> dict:
    return retention_sweep()


@shared_task(bind=True, queue="polling", acks_late=False, max_retries=0, soft_time_limit=30, time_limit=45)
def health_watchdog(self) -> dict:
    """Never retried: a retry storm would hide the very stall it reports. The next beat runs it again."""
    return watchdog_run()


@shared_task(bind=True, queue="polling", acks_late=True, soft_time_limit=60, time_limit=90)
def health_slo_evaluate(self) -> dict:
    return slos_evaluate()
