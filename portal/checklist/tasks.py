"""Checklist tasks: scheduled verifications against the cloud, expiry flags, lead notifications."""

from __future__ import annotations

import logging

from celery import shared_task

from portal.checklist.models import ChecklistItem
from portal.checklist.notifications import notification_deliver
from portal.checklist.services import checklist_verify_all, evidence_attach_restore_run, items_flag_expired
from portal.checklist.verify import VERIFIERS
from portal.cloud.models import Environment

log = logging.getLogger(__name__)


@shared_task(bind=True, queue="polling", acks_late=True, soft_time_limit=110, time_limit=140)
def checklist_verify(self, slug: str | None = None, environment_name: str | None = None, triggered_by: str = "system:checklist") -> dict:
    """Run the automated verifications (one item or all) and store their results; safe to redeliver.

    The scheduled run (all items) also flags sign-offs whose expiry passed, once each.
    """
    out: dict = {}
    if not slug:
        expired = items_flag_expired()
        if expired:
            out["expired"] = [i.slug for i in expired]
    try:
        env = Environment.objects.get(name=environment_name) if environment_name else Environment.objects.get_default()
    except Environment.DoesNotExist:
        log.info("checklist: no environment %r to verify against", environment_name or "default")
        out["skipped"] = "no environment"
        return out
    items = ChecklistItem.objects.filter(slug__in=list(VERIFIERS))
    if slug:
        items = items.filter(slug=slug)
    for v in checklist_verify_all(items=items, env=env, triggered_by=triggered_by):
        out[v.item.slug] = v.outcome
    return out


@shared_task(bind=True, queue="default", acks_late=True, soft_time_limit=60, time_limit=90,
             autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def checklist_send_notification(self, notification_id: int) -> bool:
    return notification_deliver(notification_id=notification_id)


@shared_task(bind=True, queue="default", acks_late=True, soft_time_limit=60, time_limit=90)
def checklist_on_event(self, event: dict) -> str | None:
    """Every portal event (portal.events names this task): a finished restore run becomes DR evidence, once."""
    data = event.get("data") or {}
    if event.get("kind") != "runbook.run_completed" or not data.get("run"):
        return None
    ev = evidence_attach_restore_run(run_id=data["run"])
    return str(ev.public_id) if ev is not None else None
