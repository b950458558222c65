"""Several incidents at once (an alert storm is 40, not one): each acknowledged or resolved on its own
through the lifecycle services, so each has its own transaction, timeline entry and audit row."""

from __future__ import annotations

import uuid

from django.db import transaction

from portal.errors import Invalid
from portal.incidents.models import Incident
from portal.incidents.services import incident_acknowledge, incident_lock, incident_resolve_locked

BULK_ACTIONS = ("acknowledge", "resolve")
BULK_LIMIT = 200


def incident_bulk(*, action: str, ids: list, actor) -> list[dict]:
    """Acknowledge or resolve several incidents, one transaction and one audit row each (an alert storm is
    40 incidents). Each id answers `done`, `already` (nothing to do), `not_allowed` (its state refuses the
    action: acknowledging a resolved incident) or `not_found`, in the order given; a repeated id answers once."""
    if action not in BULK_ACTIONS:
        raise Invalid("action must be acknowledge or resolve")
    if len(ids) > BULK_LIMIT:
        raise Invalid(f"at most {BULK_LIMIT} ids at once")
    keys: dict[str, uuid.UUID | None] = {}
    for raw in ids:
        try:
            keys.setdefault(str(raw), uuid.UUID(str(raw)))
        except ValueError:
            keys.setdefault(str(raw), None)
    found = Incident.objects.in_bulk([k for k in keys.values() if k], field_name="public_id")
    done_status = Incident.Status.ACKNOWLEDGED if action == "acknowledge" else Incident.Status.RESOLVED
    results = []
    for raw, key in keys.items():
        inc = found.get(key) if key else None
        if inc is None:
            results.append({"id": raw, "result": "not_found"})
            continue
        with transaction.atomic():
            locked = incident_lock(inc)
            if locked.status == done_status:
                result = "already"
            elif action == "acknowledge" and locked.status == Incident.Status.RESOLVED:
                result = "not_allowed"
            else:
                if action == "acknowledge":
                    incident_acknowledge(incident=locked, actor=actor)
                else:
                    incident_resolve_locked(locked, actor=actor, reason="bulk resolve")
                result = "done"
        results.append({"id": str(inc.public_id), "result": result, "status": done_status if result != "not_allowed" else locked.status})
    return results
