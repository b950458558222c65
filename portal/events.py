"""The portal's event bus: a service says what happened, by kind, and whoever listens learns of it after commit.

Incidents and deployments emit here (`emit("incident.acknowledged", {...})`); the listeners are named by
task (EVENT_SUBSCRIBERS, with the kinds each acts on), so this module, and the apps that emit, import none of them. Each event gets
one id at emit time, which listeners use to do their work once per event (a redelivered task is no
second event).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from portal.tasking import enqueue

KINDS = (
    "incident.opened", "incident.acknowledged", "incident.escalated", "incident.resolved",
    "rollback.started", "rollback.finished", "runbook.run_completed",
)
# The tasks that hear events, called as task(event) with the event's JSON, each with the kinds it acts
# on (None: every kind). An alert storm opens hundreds of incidents a minute: a listener that would
# only look at the event and return is not sent it, so the storm puts no work on the `actions` queue a
# rollback needs, and none on Slack's (a new incident has no Slack message yet: paging posts it).
EVENT_SUBSCRIBERS: dict[str, frozenset[str] | None] = {
    "portal.webhooks.tasks.fanout": None,
    "portal.inbound.slack_tasks.refresh": frozenset(KINDS) - {"incident.opened", "runbook.run_completed"},
    "deployments.tasks.deployments_on_event": frozenset({"incident.opened"}),
    "portal.checklist.tasks.checklist_on_event": frozenset({"runbook.run_completed"}),
}
# Narrower still, by what the event says: a rollout looks again only at a critical incident on a
# named environment (deployments.tasks.deployments_on_event checks the same).
EVENT_CONDITIONS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "deployments.tasks.deployments_on_event": lambda data: data.get("severity") == "critical" and bool(data.get("environment")),
}


def subscribers(kind: str, data: dict[str, Any] | None = None) -> list[str]:
    """The listeners an event of this kind, carrying `data`, is sent to."""
    return [name for name, kinds in EVENT_SUBSCRIBERS.items()
            if (kinds is None or kind in kinds) and EVENT_CONDITIONS.get(name, lambda _d: True)(data or {})]


def emit(kind: str, payload: dict[str, Any]) -> str:
    """Publish one event after the current transaction commits (nothing if it rolls back); returns its id."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    event = {"id": str(uuid.uuid4()), "kind": kind, "at": timezone.now().isoformat(), "data": payload}
    for name in subscribers(kind, payload):
        enqueue(name, event)
    return event["id"]


def incident_payload(incident) -> dict[str, Any]:
    """What an incident event carries (ids and words, no secrets)."""
    return {
        "incident": str(incident.public_id), "title": incident.title, "status": incident.status,
        "severity": incident.severity, "environment": incident.environment.name if incident.environment_id else None,
        "service": incident.service, "acknowledged_by": incident.acknowledged_by or None,
        "resolved_by": incident.resolved_by or None, "escalation_level": incident.escalation_level,
        "url": incident.get_absolute_url(),
    }


def rollback_payload(rollback) -> dict[str, Any]:
    return {
        "rollback": str(rollback.public_id), "environment": rollback.environment.name, "state": rollback.state,
        "from_colour": rollback.from_colour, "to_colour": rollback.to_colour, "requested_by": rollback.requested_by_label,
        "weights_before": rollback.weights_before, "weights_after": rollback.weights_after or None,
        "error": rollback.error or None,
    }
