"""Celery tasks of the Slack pages: thin callers of portal.inbound.slack, safe to redeliver (each renders
the incident as it is now and updates the message in place).

Not a `tasks.py` (that name is the inbound app's), so the app's ready() imports this module to register them.
"""

from __future__ import annotations

from celery import shared_task

from portal.inbound import slack

OPTS = {"acks_late": True, "queue": "default", "soft_time_limit": 60, "time_limit": 90, "ignore_result": True}


@shared_task(name="portal.inbound.slack_tasks.refresh", **OPTS)
def refresh(event: dict) -> int:
    """Every event (portal.events names this task): the Slack pages it concerns are updated."""
    return slack.event_refresh(event)


@shared_task(name="portal.inbound.slack_tasks.page_posted", **OPTS)
def page_posted(incident_id: int, page_id: int | None, channel: str, ts: str) -> bool:
    """Paging posted a page to Slack: remember where, and bring it up to date (portal.incidents.paging names this task)."""
    return slack.page_posted(incident_id=incident_id, page_id=page_id, channel=channel, ts=ts)
