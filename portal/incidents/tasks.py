"""Celery tasks: thin callers of services; each reloads its rows and is safe to run twice."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import requests
from celery import shared_task
from django.db import DatabaseError
from django.utils import timezone

from portal import notify
from portal.incidents import escalation, ingest, paging, rejects
from portal.incidents.models import AlertDelivery

log = logging.getLogger(__name__)
# A pending delivery older than this was lost on its way to a worker (dead broker, crashed worker).
SWEEP_AFTER = timedelta(seconds=30)


# The intake path stores no results: the delivery row is its record (errors are still stored).
@shared_task(bind=True, queue="default", acks_late=True, max_retries=5, soft_time_limit=110, time_limit=130, ignore_result=True)
def process_delivery(self, delivery_id: int) -> str:
    try:
        return ingest.delivery_process(delivery_id=delivery_id)
    except (DatabaseError, requests.RequestException) as exc:
        # Deadlock, a database hiccup or SNS's SubscribeURL not answering: the delivery stays pending; retry, and the sweep is the backstop.
        if self.request.retries >= self.max_retries:
            raise
        raise self.retry(exc=exc, countdown=min(2 ** self.request.retries, 30)) from exc
    except Exception as exc:
        log.exception("delivery %s failed", delivery_id)
        ingest.delivery_mark_failed(delivery_id=delivery_id, error=f"{exc.__class__.__name__}: {exc}")
        raise


@shared_task(bind=True, queue="default", acks_late=True)
def sweep_deliveries(self) -> int:
    """The outbox sweep: re-dispatch deliveries still pending after SWEEP_AFTER."""
    cutoff = timezone.now() - SWEEP_AFTER
    ids = list(
        AlertDelivery.objects.filter(status=AlertDelivery.Status.PENDING, received_at__lt=cutoff)
        .order_by("received_at")
        .values_list("pk", flat=True)[:1000]
    )
    for pk in ids:
        process_delivery.delay(pk)
    return len(ids)


@shared_task(bind=True, queue="default", acks_late=True)
def prune_rejected_deliveries(self) -> int:
    return rejects.rejected_deliveries_prune()


@shared_task(bind=True, queue="default", acks_late=True, ignore_result=True)
def escalate_incident(self, incident_id: int) -> int:
    return escalation.incident_escalate(incident_id=incident_id).level


@shared_task(bind=True, queue="default", acks_late=True)
def check_escalations(self) -> int:
    return len(escalation.escalations_due())


@shared_task(bind=True, queue="default", acks_late=True, max_retries=5, soft_time_limit=60, time_limit=90)
def send_notification(self, notification_id: int) -> str:
    final = self.request.retries >= self.max_retries or self.request.is_eager
    try:
        return escalation.notification_send(notification_id=notification_id, final_attempt=final)
    except notify.NotificationError as exc:
        raise self.retry(exc=exc, countdown=min(5 * 2 ** self.request.retries, 300)) from exc


@shared_task(bind=True, queue="default", acks_late=True, soft_time_limit=60, time_limit=90)
def send_personal_page(self, page_id: int) -> str:
    """A page due at once (the sweep is the backstop; the claim makes a second run a no-op)."""
    return paging.personal_page_send(page_id=page_id)


@shared_task(bind=True, queue="default", acks_late=True, soft_time_limit=110, time_limit=130)
def sweep_personal_pages(self, now: str | None = None) -> int:
    """Beat's sweep of due personal pages (`now`, an ISO date-time, lets a test drive the clock)."""
    return len(paging.personal_pages_due(now=datetime.fromisoformat(now) if now else None))
