"""Incident command reads: suggested SEV, update drafts, what is due, the status page, review facts."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Max, Q
from django.urls import reverse
from django.utils import timezone

from deployments import selectors as deployment_selectors
from deployments.models import Analysis, Deployment, Rollback
from portal.command.models import (
    ActionItem,
    CommandRole,
    IncidentCommand,
    Journey,
    RoleKind,
    Sev,
    StatusUpdate,
)
from portal.health import thresholds
from portal.health.models import Check
from portal.health.selectors import service_statuses
from portal.incidents.models import Incident, Severity
from portal.incidents.services import OPEN

UPDATE_INTERVALS: dict[str, timedelta] = {Sev.SEV1: timedelta(minutes=30), Sev.SEV2: timedelta(hours=1)}

# Which health checks stand for each journey: the seed's external services (by their check slug) and
# the environment's own resources (by check kind). A journey is degraded when one of them fails or
# an open declared incident names it.
JOURNEY_CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    Journey.POST_JOB: {"slugs": ("service-openai",), "kinds": (Check.Kind.TARGET_HEALTH, Check.Kind.RDS)},
    Journey.BID: {"slugs": ("service-trueway",), "kinds": (Check.Kind.TARGET_HEALTH, Check.Kind.RDS, Check.Kind.ELASTICACHE)},
    Journey.PAY: {"slugs": ("service-stripe",), "kinds": (Check.Kind.TARGET_HEALTH, Check.Kind.RDS)},
    Journey.SMS_EMAIL: {"slugs": ("service-twilio", "service-sendgrid"), "kinds": ()},
    Journey.PHOTOS: {"slugs": (), "kinds": (Check.Kind.S3,)},
}


def command_url(incident: Incident) -> str:
    return reverse("command:incident", args=[incident.public_id])


def command_for(incident: Incident) -> IncidentCommand | None:
    return IncidentCommand.objects.filter(incident=incident).first()


def roles_of(incident: Incident, held_roles=None) -> list[dict]:
    """Each role with its holder; `held_roles` are the incident's CommandRole rows when already fetched."""
    rows = held_roles if held_roles is not None else CommandRole.objects.filter(incident=incident).select_related("user")
    held = {r.role: r for r in rows}
    return [{"role": value, "label": label, "user": held[value].user.get_username() if value in held else None,
             "taken_at": held[value].taken_at if value in held else None} for value, label in RoleKind.choices]


def error_rate_now(environment) -> float | None:
    """The highest error rate the environment's metric checks last read (they watch the live traffic)."""
    if environment is None:
        return None
    values = [c.last_value for c in Check.objects.filter(environment=environment, kind=Check.Kind.METRIC_THRESHOLD,
                                                           rule__metric="error_rate", last_value__isnull=False)]
    return max(values) if values else None


def sev_suggest(*, environment=None, journeys=(), alert_severity: str = "") -> tuple[str, str]:
    """A suggested SEV and why, from the seed's thresholds: an error rate above the critical threshold
    (5 %) suggests SEV1, above the warning one (2 %) or a critical alert or the pay journey SEV2."""
    rate = error_rate_now(environment)
    critical, warning = thresholds.threshold("error_rate", "critical"), thresholds.threshold("error_rate", "warning")
    if rate is not None and critical is not None and rate > critical.value:
        return Sev.SEV1, f"error rate {rate:g} % is above the critical {critical.value:g} %"
    if rate is not None and warning is not None and rate > warning.value:
        return Sev.SEV2, f"error rate {rate:g} % is above the warning {warning.value:g} %"
    if alert_severity == Severity.CRITICAL:
        return Sev.SEV2, "a critical alert is firing"
    if Journey.PAY in journeys:
        return Sev.SEV2, "payments are affected"
    return Sev.SEV3, "no threshold is breached" if rate is not None else "no error-rate reading"


def last_update_at(incident: Incident) -> datetime | None:
    return StatusUpdate.objects.filter(incident=incident).aggregate(m=Max("posted_at"))["m"]


def reminders_due(*, now: datetime) -> list[IncidentCommand]:
    """Declared open SEV1/SEV2 incidents whose last update (or declaration) is older than their interval,
    and not reminded within that interval."""
    out = []
    qs = (IncidentCommand.objects.filter(declared=True, sev__in=list(UPDATE_INTERVALS), incident__status__in=OPEN,
                                         merged_into__isnull=True)
          .select_related("incident").annotate(last_update=Max("incident__status_updates__posted_at")))
    for cmd in qs:
        interval = UPDATE_INTERVALS[cmd.sev]
        since = cmd.last_update or cmd.declared_at or cmd.incident.opened_at
        if now - since < interval:
            continue
        if cmd.last_reminded_at and cmd.last_reminded_at > since and now - cmd.last_reminded_at < interval:
            continue
        out.append(cmd)
    return out


def update_due_at(cmd: IncidentCommand) -> datetime | None:
    interval = UPDATE_INTERVALS.get(cmd.sev)
    if interval is None or not cmd.declared:
        return None
    since = last_update_at(cmd.incident) or cmd.declared_at or cmd.incident.opened_at
    return since + interval


def vendor_states() -> list[dict]:
    return [{"slug": s["slug"], "name": s["name"], "status": s["status"], "reason": s["reason"]} for s in service_statuses()]


def rollout_state(environment) -> str:
    if environment is None:
        return ""
    rollback = deployment_selectors.active_rollback(environment) or deployment_selectors.latest_rollback(environment)
    active = deployment_selectors.active_deployment(environment)
    parts = []
    if active is not None:
        parts.append(f"rollout of {active.release.version} is {active.get_state_display().lower()} "
                     f"({', '.join(f'{c} {w} %' for c, w in (active.weights or {}).items()) or 'no weights read'})")
    if rollback is not None and (rollback.is_active or (rollback.finished_at and timezone.now() - rollback.finished_at < timedelta(hours=2))):
        parts.append(f"rollback to {rollback.to_colour} is {rollback.get_state_display().lower()}")
    return "; ".join(parts)


def update_draft(incident: Incident) -> str:
    """A draft a person edits before it goes out: journeys, vendors that fail, the rollout or rollback."""
    cmd = command_for(incident)
    journeys = ", ".join(cmd.journey_labels()) if cmd and cmd.journeys else ""
    lines = [f"We are investigating: {incident.title}."]
    if journeys:
        lines.append(f"Affected: {journeys}.")
    failing = [v["name"] for v in vendor_states() if v["status"] == Check.Status.FAILING]
    if failing:
        lines.append(f"Our providers report problems: {', '.join(failing)}.")
    state = rollout_state(incident.environment)
    if state:
        lines.append(f"Release state: {state}.")
    lines.append("Next update within " + ("30 minutes." if cmd and cmd.sev == Sev.SEV1 else "the hour."))
    return " ".join(lines)


def current_incidents(*, public: bool) -> list[dict]:
    """Open declared incidents (and those resolved in the last day) with their updates, newest first."""
    since = timezone.now() - timedelta(days=1)
    qs = (IncidentCommand.objects.filter(declared=True, merged_into__isnull=True)
          .filter(Q(incident__status__in=OPEN) | Q(incident__resolved_at__gte=since))
          .select_related("incident", "incident__environment").order_by("-incident__opened_at"))
    out = []
    for cmd in qs:
        updates = StatusUpdate.objects.filter(incident=cmd.incident)
        if public:
            updates = updates.filter(public=True)
        out.append({"command": cmd, "incident": cmd.incident, "updates": list(updates[:20]),
                    "journeys": cmd.journey_labels(), "open": cmd.incident.is_open})
    return out


def journey_states() -> list[dict]:
    checks = list(Check.objects.filter(enabled=True).only("slug", "name", "kind", "status"))
    affected: set[str] = set()
    for cmd in IncidentCommand.objects.filter(declared=True, incident__status__in=OPEN, merged_into__isnull=True):
        affected.update(cmd.journeys)
    out = []
    for value, label in Journey.choices:
        spec = JOURNEY_CHECKS.get(value, {})
        mine = [c for c in checks if c.slug in spec.get("slugs", ()) or c.kind in spec.get("kinds", ())]
        failing = [c for c in mine if c.status == Check.Status.FAILING]
        if failing or value in affected:
            state = "degraded"
        elif mine and all(c.status == Check.Status.OK for c in mine):
            state = "operational"
        elif mine:
            state = "unknown"
        else:
            state = "operational"  # nothing stands for it and no incident names it
        out.append({"journey": value, "label": label, "state": state, "checks": [{"name": c.name, "status": c.status} for c in mine],
                    "failing": [c.name for c in failing], "incident": value in affected})
    return out


# ------------------------------------------------------------------------------------------------ reviews


def _seconds(a, b) -> float | None:
    return round((b - a).total_seconds(), 1) if a and b else None


def rollback_facts(r: Rollback) -> dict:
    return {"id": str(r.public_id), "to_colour": r.to_colour, "state": r.state, "automatic": r.automatic,
            "requested_at": r.requested_at.isoformat(), "capacity_ready_s": r.seconds("capacity_ready_at"),
            "switched_s": r.seconds("switched_at"), "confirmed_s": r.seconds("confirmed_at"), "finished_s": r.seconds("finished_at")}


def measured_facts(incident: Incident) -> dict:
    """What the incident's own records say: times, the deployment and its analysis runs, rollbacks,
    runbook steps with evidence, the timeline. JSON-ready (ISO times)."""
    from runbooks.models import RunbookRun  # a leaf read; runbooks does not import command

    cmd = command_for(incident)
    iso = lambda d: d.isoformat() if d else None  # noqa: E731
    deployments = list(Deployment.objects.filter(incident=incident).select_related("release", "strategy"))
    dep_ids = [e.data.get("deployment") for e in incident.timeline.filter(kind="deployment") if isinstance(e.data, dict)]
    if dep_ids:
        deployments += [d for d in Deployment.objects.filter(public_id__in=[x for x in dep_ids if x]).select_related("release", "strategy")
                        if d not in deployments]
    deps = []
    for d in deployments:
        deps.append({
            "id": str(d.public_id), "version": d.release.version, "strategy": d.strategy.slug, "state": d.state,
            "started_at": iso(d.started_at), "finished_at": iso(d.finished_at),
            "analyses": [{"at": iso(a.at), "weight": a.weight, "decision": a.decision, "new_error_rate": a.new_error_rate,
                          "old_error_rate": a.old_error_rate, "new_p95": a.new_p95, "old_p95": a.old_p95}
                         for a in Analysis.objects.filter(deployment=d)],
            "rollbacks": [rollback_facts(r) for r in d.rollbacks.all()],
        })
    rb_ids = [e.data.get("rollback") for e in incident.timeline.filter(kind="deployment") if isinstance(e.data, dict) and e.data.get("rollback")]
    rollbacks = [rollback_facts(r) for r in Rollback.objects.filter(public_id__in=rb_ids)] if rb_ids else []
    runs = []
    for run in RunbookRun.objects.filter(incident=incident).select_related("version__runbook").prefetch_related("outcomes"):
        runs.append({"runbook": run.version.runbook.slug, "status": run.status, "started_at": iso(run.started_at),
                     "steps": [{"step": o.step_id, "status": o.status, "note": o.note, "evidence": o.evidence, "by": o.actor_label}
                               for o in run.outcomes.all()]})
    return {
        "incident": f"INC-{incident.pk}", "title": incident.title, "sev": cmd.sev if cmd else "",
        "journeys": cmd.journeys if cmd else [], "environment": incident.environment.name if incident.environment else None,
        "opened_at": iso(incident.opened_at), "acknowledged_at": iso(incident.acknowledged_at),
        "resolved_at": iso(incident.resolved_at), "acknowledged_by": incident.acknowledged_by, "resolved_by": incident.resolved_by,
        "time_to_acknowledge_s": _seconds(incident.opened_at, incident.acknowledged_at),
        "time_to_resolve_s": _seconds(incident.opened_at, incident.resolved_at),
        "alerts": incident.alerts.count(),
        "roles": [{"role": r["role"], "user": r["user"]} for r in roles_of(incident) if r["user"]],
        "updates": StatusUpdate.objects.filter(incident=incident).count(),
        "deployments": deps, "rollbacks": rollbacks, "runbook_runs": runs,
        "timeline": [{"at": iso(t.at), "kind": t.kind, "actor": t.actor_label, "text": t.text} for t in incident.timeline.all()],
    }


def open_action_items():
    return (ActionItem.objects.filter(state=ActionItem.State.OPEN).select_related("owner", "incident")
            .order_by("due_date", "id"))


def overdue_action_items(*, now: datetime) -> list[ActionItem]:
    """Open items past their due date whose owner was not nagged in the last day."""
    today = now.date()
    day_ago = now - timedelta(days=1)
    return list(open_action_items().filter(due_date__lt=today, owner__isnull=False)
                .filter(Q(last_nagged_at__isnull=True) | Q(last_nagged_at__lte=day_ago)))


def open_declared(limit: int = 10) -> list[IncidentCommand]:
    return list(IncidentCommand.objects.filter(declared=True, incident__status__in=OPEN, merged_into__isnull=True)
                .select_related("incident").prefetch_related("incident__command_roles__user")
                .order_by("-incident__opened_at")[:limit])


def markdown_review(incident: Incident, review) -> str:
    f = review.facts
    lines = [f"# Review: INC-{incident.pk} {incident.title}", "", f"- SEV: {f.get('sev') or '–'}",
             f"- Environment: {f.get('environment') or '–'}",
             f"- Journeys: {', '.join(dict(Journey.choices).get(j, j) for j in f.get('journeys') or []) or '–'}",
             f"- Opened: {f.get('opened_at')}", f"- Acknowledged: {f.get('acknowledged_at')} by {f.get('acknowledged_by') or '–'}",
             f"- Resolved: {f.get('resolved_at')} by {f.get('resolved_by') or '–'}",
             f"- Time to acknowledge: {fmt_seconds(f.get('time_to_acknowledge_s'))}",
             f"- Time to resolve: {fmt_seconds(f.get('time_to_resolve_s'))}",
             f"- Alerts: {f.get('alerts')}", f"- Stakeholder updates: {f.get('updates')}", ""]
    lines += ["## Narrative", "", review.narrative or "_not written yet_", ""]
    lines += ["## Deployments", ""]
    for d in f.get("deployments") or []:
        lines.append(f"- {d['version']} ({d['strategy']}): {d['state']}, started {d['started_at']}")
        for a in d["analyses"]:
            lines.append(f"  - analysis at {a['weight']} %: {a['decision']} (new {a['new_error_rate']} % vs old {a['old_error_rate']} %)")
        for r in d["rollbacks"]:
            lines.append(f"  - rollback to {r['to_colour']}: {r['state']}, switched after {fmt_seconds(r['switched_s'])}, "
                         f"finished after {fmt_seconds(r['finished_s'])}")
    for r in f.get("rollbacks") or []:
        lines.append(f"- rollback to {r['to_colour']}: {r['state']}, switched after {fmt_seconds(r['switched_s'])}, "
                     f"finished after {fmt_seconds(r['finished_s'])}")
    if not f.get("deployments") and not f.get("rollbacks"):
        lines.append("- none")
    lines += ["", "## Runbook steps", ""]
    for run in f.get("runbook_runs") or []:
        lines.append(f"- {run['runbook']} ({run['status']})")
        for s in run["steps"]:
            lines.append(f"  - {s['step']}: {s['status']}" + (f" — {s['note']}" if s["note"] else "") + (f" (evidence: {s['evidence']})" if s["evidence"] else ""))
    if not f.get("runbook_runs"):
        lines.append("- none")
    lines += ["", "## Action items", ""]
    items = list(incident.action_items.select_related("owner"))
    for item in items:
        lines.append(f"- [{'x' if item.state == 'done' else ' '}] {item.title} — {item.owner.get_username() if item.owner else 'no owner'}, "
                     f"due {item.due_date or '–'}, {item.state}" + (f", {item.link_kind}: {item.link_target}" if item.link_kind else ""))
    if not items:
        lines.append("- none")
    lines += ["", "## Timeline", ""]
    lines += [f"- {t['at']} {t['kind']} {t['actor']}: {t['text']}" for t in f.get("timeline") or []]
    return "\n".join(lines) + "\n"


def fmt_seconds(value) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value < 120:
        return f"{value:g} s"
    minutes = value / 60
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"
