"""The one change feed of an environment: what changed in the last hour, newest first.

Deployments, weight changes, rollbacks, scale actions, failovers, automation switches, threshold
edits and drills, each from where it is recorded: the deployments app's rows (models only: the
deployments app imports the incidents services, never the other way round) and the audit trail
(failovers, thresholds, automation, drills: the sandbox's drills are read from their audit rows, so
the product never imports the sandbox).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from deployments.models import Deployment, DeploymentEvent, Rollback, ScaleAction
from portal.audit.models import AuditEvent

WINDOW = timedelta(hours=1)
# Audit verbs that are changes to an environment, and the kind the feed shows them as.
AUDIT_KINDS = {
    "environment.rds_failover": "failover",
    "environment.automation": "automation",
    "health.threshold.update": "threshold",
    "drill.start": "drill",
    "drill.stop": "drill",
}


@dataclass(frozen=True)
class Change:
    at: datetime
    kind: str  # deployment, weights, rollback, scale, failover, automation, threshold, drill
    text: str
    actor: str = ""
    url: str = ""
    data: dict = field(default_factory=dict, compare=False, hash=False)


def _weights(weights: dict) -> str:
    return " / ".join(f"{c} {w}" for c, w in (weights or {}).items())


def _deployments(env, since, until) -> list[Change]:
    out = []
    qs = Deployment.objects.select_related("release").filter(environment=env).filter(
        Q(created_at__range=(since, until)) | Q(finished_at__range=(since, until)))
    for d in qs:
        if since <= d.created_at <= until:
            out.append(Change(at=d.started_at or d.created_at, kind="deployment", actor=d.created_by_label,
                              text=f"Deployment of {d.release.version} to {d.to_colour} started ({d.from_colour} was live)",
                              url=d.get_absolute_url(), data={"deployment": str(d.public_id), "colour": d.to_colour}))
        if d.finished_at and since <= d.finished_at <= until:
            out.append(Change(at=d.finished_at, kind="deployment", text=f"Deployment of {d.release.version} to "
                              f"{d.to_colour}: {d.get_state_display().lower()}", url=d.get_absolute_url(),
                              data={"deployment": str(d.public_id), "state": d.state}))
    return out


def _weight_events(env, since, until) -> list[Change]:
    out = []
    for e in DeploymentEvent.objects.select_related("deployment").filter(
            environment=env, kind=DeploymentEvent.Kind.WEIGHTS, at__range=(since, until)):
        weights = (e.data or {}).get("weights") or {}
        out.append(Change(at=e.at, kind="weights", actor=e.actor_label,
                          text=f"Weights read back {_weights(weights)}" if weights else e.message,
                          url=e.deployment.get_absolute_url() if e.deployment else "", data={"weights": weights}))
    return out


def _rollbacks(env, since, until) -> list[Change]:
    out = []
    for r in Rollback.objects.filter(environment=env, requested_at__range=(since, until)):
        who = "automatic" if r.automatic else r.requested_by_label
        text = f"Rollback to {r.to_colour} ({who}): {r.get_state_display().lower()}"
        if r.weights_after:
            text += f", listener read back {_weights(r.weights_after)}"
        out.append(Change(at=r.requested_at, kind="rollback", actor=r.requested_by_label, text=text,
                          data={"to": r.to_colour, "state": r.state, "automatic": r.automatic}))
    return out


def _scales(env, since, until) -> list[Change]:
    out = []
    for s in ScaleAction.objects.filter(environment=env, created_at__range=(since, until)):
        who = "automatic" if s.automatic else s.requested_by_label
        text = f"Scale {s.colour} {s.from_desired} → {s.to_desired} ({who}, {s.get_state_display().lower()})"
        if s.reason:
            text += f": {s.reason}"
        out.append(Change(at=s.created_at, kind="scale", actor=s.requested_by_label, text=text[:300],
                          data={"colour": s.colour, "from": s.from_desired, "to": s.to_desired, "automatic": s.automatic,
                                "state": s.state}))
    return out


def _audited(env, since, until) -> list[Change]:
    out = []
    env_rows = Q(target_type="cloud.environment", target_id=str(env.pk)) | Q(extra__environment=env.name)
    qs = AuditEvent.objects.filter(created_at__range=(since, until), verb__in=list(AUDIT_KINDS), result="ok").filter(
        env_rows | Q(verb="health.threshold.update"))  # a threshold applies to every environment
    for a in qs:
        kind = AUDIT_KINDS[a.verb]
        after, before, extra = a.after or {}, a.before or {}, a.extra or {}
        if kind == "failover":
            text = f"Database failover requested{': ' + extra['reason'] if extra.get('reason') else ''}"
        elif kind == "automation":
            text = f"Automation {'paused' if after.get('automation_paused') else 'resumed'}"
            if extra.get("reason"):
                text += f": {extra['reason']}"
        elif kind == "threshold":
            text = (f"Threshold {extra.get('metric', a.target_id)} ({extra.get('severity', '')}) "
                    f"{before.get('value', '?')} → {after.get('value', '?')}")
        else:
            what = f"{after.get('kind', '')}{' on ' + after['colour'] if after.get('colour') else ''}"
            if after.get("level") is not None:
                what += f" at {after['level']}"
            text = f"Drill {'started' if a.verb == 'drill.start' else 'stopped'}: {what.strip() or a.target_label}"
        out.append(Change(at=a.created_at, kind=kind, actor=a.actor_label, text=text[:300],
                          data={"verb": a.verb, "after": after, "before": before, "extra": extra,
                                "target": a.target_id}))
    return out


def change_feed(environment, *, now: datetime | None = None, since: datetime | None = None, limit: int = 50) -> list[Change]:
    """Every change of `environment` between `since` (default an hour before `now`) and `now`, newest first."""
    if environment is None:
        return []
    now = now or timezone.now()
    since = since or now - WINDOW
    rows = (_deployments(environment, since, now) + _weight_events(environment, since, now)
            + _rollbacks(environment, since, now) + _scales(environment, since, now) + _audited(environment, since, now))
    return sorted(rows, key=lambda c: c.at, reverse=True)[:limit]
