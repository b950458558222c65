"""Reads: the generated handoff note (the state of things an incoming person needs), and the latest
handoffs the /oncall/ page shows. The note reads the apps above on-call (incidents, deployments,
checklist, phases); that is why it lives here and not in portal.oncall."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db.models import OuterRef, Prefetch, Subquery

from deployments.models import ACTIVE_DEPLOYMENT_STATES, Deployment
from portal.checklist.models import ChecklistItem, ItemStatus
from portal.cloud.models import Environment
from portal.handoff.models import OutgoingNote, ShiftHandoff
from portal.incidents import selectors as incident_selectors
from portal.oncall.models import Schedule
from portal.phases.selectors import NoPhases
from portal.phases.status import phase_status

log = logging.getLogger(__name__)
EXPIRY_SOON = timedelta(days=7)
OPEN_INCIDENTS = 20


def _incidents() -> list[dict[str, Any]]:
    return [{"title": i.title, "severity": i.severity, "status": i.status, "opened_at": i.opened_at.isoformat(),
             "environment": i.environment.name if i.environment else "", "url": i.get_absolute_url()}
            for i in incident_selectors.open_incidents(limit=OPEN_INCIDENTS)]


def _rollouts() -> list[dict[str, Any]]:
    rows = (Deployment.objects.select_related("environment", "release")
            .filter(state__in=ACTIVE_DEPLOYMENT_STATES).order_by("environment__name", "-created_at"))
    return [{"environment": d.environment.name, "version": d.release.version, "state": d.state,
             "state_label": d.get_state_display(), "paused": d.state == "paused", "pause_reason": d.pause_reason,
             "weights": d.weights, "url": d.get_absolute_url()} for d in rows]


def _automation() -> list[dict[str, Any]]:
    return [{"environment": e.name, "paused": e.automation_paused, "reason": e.automation_paused_reason, "dry_run": e.dry_run}
            for e in Environment.objects.order_by("name")]


def _sign_offs(now: datetime) -> list[dict[str, Any]]:
    """Signed-off items whose attestation ends within a week (or has ended and not been renewed)."""
    items = (ChecklistItem.objects.filter(status=ItemStatus.SIGNED_OFF, attested_until__isnull=False,
                                          attested_until__lte=now + EXPIRY_SOON).order_by("attested_until"))
    return [{"title": i.title, "slug": i.slug, "expires_at": i.attested_until.isoformat() if i.attested_until else None,
             "expired": bool(i.attested_until and i.attested_until <= now), "url": i.get_absolute_url()} for i in items]


def _money(value: Any) -> str | None:
    return None if value is None else f"{value:.2f}"


def _phase() -> dict[str, Any]:
    """The phase, its bounds and the month's cost against its budget (the cost read may fail: said so)."""
    try:
        st = phase_status(live=True)
    except NoPhases as exc:
        return {"error": str(exc)}
    phase = st.phase
    out: dict[str, Any] = {"number": phase.number, "name": phase.name, "instances": f"{phase.instances_min}-{phase.instances_max}",
                           "budget": _money(phase.monthly_cost), "users": st.users.users if st.users else None}
    cost = st.cost.data if st.cost and not st.cost.error else None
    if cost:
        out.update(currency=cost.get("currency", "USD"), month_to_date=_money(cost.get("month_to_date")),
                   forecast=_money(cost.get("forecast")), over_budget=bool(cost.get("forecast_over_budget")),
                   percent_of_budget=cost.get("percent_of_budget"))
    else:
        out["cost_error"] = st.cost.error if st.cost else "not read"
    return out


def handoff_note(*, now: datetime) -> dict[str, Any]:
    """Everything the incoming person should know, as JSON (stored on the handoff, shown and sent)."""
    return {
        "generated_at": now.isoformat(),
        "incidents": _incidents(),
        "rollouts": _rollouts(),
        "automation": _automation(),
        "sign_offs": _sign_offs(now),
        "phase": _phase(),
    }


def latest_handoff(schedule: Schedule) -> ShiftHandoff | None:
    return ShiftHandoff.objects.filter(schedule=schedule).select_related("incoming", "outgoing").order_by("-shift_start").first()


def pending_notes(schedule: Schedule) -> list[OutgoingNote]:
    return list(OutgoingNote.objects.filter(schedule=schedule, handoff__isnull=True).order_by("written_at", "pk"))


def handoffs_for_page() -> list[dict[str, Any]]:
    """Per schedule: its latest handoff (with the notes it carried) and the notes waiting for the next one."""
    latest_id = ShiftHandoff.objects.filter(schedule=OuterRef("pk")).order_by("-shift_start").values("pk")[:1]
    schedules = list(Schedule.objects.annotate(latest_handoff_id=Subquery(latest_id)).order_by("slug"))
    notes = Prefetch("outgoing_notes", queryset=OutgoingNote.objects.order_by("written_at", "pk"))
    handoffs = {h.pk: h for h in ShiftHandoff.objects.select_related("incoming", "outgoing").prefetch_related(notes)
                .filter(pk__in=[s.latest_handoff_id for s in schedules if s.latest_handoff_id])}
    pending: dict[int, list[OutgoingNote]] = {}
    for n in OutgoingNote.objects.filter(handoff__isnull=True).order_by("written_at", "pk"):
        pending.setdefault(n.schedule_id, []).append(n)
    return [{"schedule": s, "handoff": handoffs.get(s.latest_handoff_id), "pending": pending.get(s.pk, [])} for s in schedules]
