"""Celery tasks of the outgoing webhooks: thin callers of portal.webhooks.services, safe to redeliver."""

from __future__ import annotations

from celery import shared_task
from django.utils.dateparse import parse_datetime

from portal.webhooks import services

# Results are not stored: each delivery row is its own record (errors are still stored).
OPTS = {"acks_late": True, "queue": "default", "soft_time_limit": 60, "time_limit": 90, "ignore_result": True}


@shared_task(name="portal.webhooks.tasks.fanout", **OPTS)
def fanout(event: dict) -> int:
    """Every endpoint that wants the event gets one delivery (portal.events names this task)."""
    return len(services.event_fanout(event=event))


@shared_task(name="portal.webhooks.tasks.deliver", **OPTS)
def deliver(delivery_id: int) -> str:
    return services.delivery_attempt(delivery_id=delivery_id)


@shared_task(name="portal.webhooks.tasks.sweep", acks_late=True, queue="default", soft_time_limit=240, time_limit=300)
def sweep(now: str | None = None) -> int:
    """Retries that are due (beat, every 15 s): each attempt is claimed, so overlapping sweeps send once."""
    at = parse_datetime(now) if now else None
    ids = services.deliveries_due(now=at)
    for pk in ids:
        services.delivery_attempt(delivery_id=pk, now=at)
    return len(ids)
