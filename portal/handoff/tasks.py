"""Celery tasks of the handoff app: thin callers of its services, safe to run twice."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from portal.handoff import services


@shared_task(bind=True, queue="default", acks_late=True, soft_time_limit=50, time_limit=60)
def check_shift_changes(self, now: str | None = None) -> int:
    """Beat, every minute: record each schedule's shift change once and send its handoff.
    `now` (ISO 8601) lets a test or an operator drive a shift change without waiting for it."""
    at = datetime.fromisoformat(now) if now else None
    recorded = services.shift_handoffs_record(now=at)
    services.handoffs_pending_resend(now=at)
    return len(recorded)


@shared_task(bind=True, queue="default", acks_late=True, soft_time_limit=60, time_limit=90)
def deliver_handoff(self, handoff_id: int) -> str:
    return services.handoff_deliver(handoff_id=handoff_id)
