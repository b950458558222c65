"""Celery tasks of the heartbeats app: thin callers of its services, safe to run twice."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from portal.heartbeats import services
from portal.heartbeats.models import PORTAL_BEAT_SLUG, Heartbeat


@shared_task(bind=True, queue="default", acks_late=True, soft_time_limit=50, time_limit=60)
def check_heartbeats(self, now: str | None = None) -> list[str]:
    """Beat, every minute: flip overdue heartbeats down and open their incidents. `now` (ISO 8601)
    lets a test or an operator drive a missed ping without waiting for it."""
    return services.heartbeats_check(now=datetime.fromisoformat(now) if now else None)


@shared_task(bind=True, queue="default", acks_late=True, soft_time_limit=20, time_limit=30)
def ping_portal_beat(self, now: str | None = None) -> bool:
    """Beat, every minute: the portal's own beat pings its heartbeat (through the service, no HTTP)."""
    heartbeat = Heartbeat.objects.filter(slug=PORTAL_BEAT_SLUG).first()
    if heartbeat is None:
        return False
    services.heartbeat_ping(heartbeat=heartbeat, now=datetime.fromisoformat(now) if now else None)
    return True
