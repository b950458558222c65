"""Celery tasks of incident command: thin callers of the services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from portal.command import services


@shared_task(queue="default", acks_late=True, soft_time_limit=50, time_limit=60)
def deliver_update(update_id: int) -> list[str]:
    return services.update_deliver(update_id=update_id)


@shared_task(queue="default", acks_late=True, soft_time_limit=50, time_limit=60)
def update_reminders() -> list[int]:
    """Each minute: a declared SEV1 without an update for 30 minutes (SEV2: an hour) reminds its communications lead."""
    return services.update_reminders_send()


@shared_task(queue="default", acks_late=True, soft_time_limit=110, time_limit=130)
def nag_action_items() -> list[int]:
    """Hourly: overdue action items mail their owners, once a day each."""
    return services.action_items_nag()
