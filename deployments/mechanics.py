"""The mechanics the deployments engines share: the environment lock, events, state changes, scale
apply, cooldowns and alerts.

The rollout (deployments.rollout), the rollback (deployments.rollback), the automatic scaler
(deployments.autoscale) and the commands (deployments.services) stand on this module; it imports none
of them. Callers hold the environment's row lock (`lock_environment`) around every change made here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone

from deployments import cloudops
from deployments.errors import DeploymentError
from deployments.models import Deployment, DeploymentEvent, DeploymentState, ScaleAction
from portal.accounts.roles import APPROVE
from portal.actors import Actor
from portal.audit.services import audit_record, audit_record_later, audits_failures
from portal.cloud.models import Environment
from portal.incidents.ingest import alert_ingest_internal
from portal.incidents.models import Incident
from portal.incidents.services import OPEN, incident_timeline_add

log = logging.getLogger(__name__)


def audited(verb: str, **kw: Any) -> Callable:
    """A cloud action that fails leaves a result="error" audit row written after its transaction rolled
    back; the portal's own refusals (a DeploymentError without a cause) are answered, not audited."""
    return audits_failures(verb, expected=(DeploymentError,), **kw)


def now() -> datetime:
    return timezone.now()


def can_approve(who: Any) -> bool:
    """A lead (a user with the approve permission, or a token of lead scope); never the portal itself."""
    actor = Actor.of(who)
    if actor.token is not None:
        return bool(actor.token.grants("lead"))
    return bool(actor.user is not None and actor.user.has_perm(APPROVE))


def lock_environment(environment: Environment) -> Environment:
    """Lock the aggregate root for the rest of the transaction (a no-op on SQLite, which serialises writers)."""
    return Environment.objects.select_for_update().get(pk=environment.pk)


def event_add(*, environment: Environment, kind: str, message: str, deployment: Any = None, rollback: Any = None,
              data: dict | None = None, actor: Any = None, at: datetime | None = None) -> DeploymentEvent:
    return DeploymentEvent.objects.create(
        environment=environment, deployment=deployment, rollback=rollback, at=at or now(), kind=kind,
        message=message[:500], data=data or {}, actor_label=Actor.of(actor).label if actor is not None else "",
    )


def fmt_weights(weights: dict | None) -> str:
    return " / ".join(f"{c} {w} %" for c, w in (weights or {}).items()) or "–"


def live_colour(weights: dict[str, int]) -> str:
    return "blue" if int(weights.get("blue", 0)) >= int(weights.get("green", 0)) else "green"


def set_state(dep: Deployment, state: str, *, now: datetime | None = None, message: str = "", actor: Any = None,
              data: dict | None = None, fields: tuple[str, ...] = ()) -> None:
    at = now or timezone.now()
    old = dep.state
    dep.state = state
    dep.state_entered_at = at
    dep.progressed_at = at
    dep.stall_alerted_at = None
    dep.save(update_fields=["state", "state_entered_at", "progressed_at", "stall_alerted_at", *fields])
    event_add(environment=dep.environment, deployment=dep, kind="state", actor=actor, at=at,
              message=message or f"{DeploymentState(old).label} → {DeploymentState(state).label}",
              data={"from": old, "to": state, **(data or {})})


def raise_alert(*, environment: Environment, key: str, name: str, severity: str, summary: str, labels: dict | None = None,
                firing: bool = True, deployment: Deployment | None = None) -> Any:
    """Through the incidents pipeline (dedup, incident, paging). Never raises: the caller's work is done."""
    try:
        labels = dict(labels or {})
        annotations = {}
        if deployment is not None:
            labels["deployment"] = str(deployment.public_id)
            annotations["deployment_url"] = deployment.get_absolute_url()
        return alert_ingest_internal(
            source="deployments", fingerprint=key, name=name, severity=severity, firing=firing, summary=summary,
            labels=labels, annotations=annotations, environment=environment, grouping_key=f"deployments:{environment.name}:{key}")
    except Exception:  # noqa: BLE001
        log.exception("could not raise alert %s on %s", name, environment)
        return None


def open_incidents_note(*, environment: Environment, kind: str, actor: Any, text: str, data: dict | None = None) -> int:
    """One line on the timeline of every open incident of the environment: what a person did there and how
    it ended (a manual rollback, scale or failover). A timeline that cannot be written never undoes the action.
    Returns how many incidents were told."""
    told = 0
    for incident in Incident.objects.filter(environment=environment, status__in=OPEN).order_by("opened_at"):
        try:
            incident_timeline_add(incident=incident, kind=kind, actor=actor, text=text[:2000],
                                  data={**(data or {}), "environment": environment.name})
            told += 1
        except Exception:  # noqa: BLE001 - the action is done; its note is not worth failing it
            log.exception("could not add to the timeline of incident %s", incident.pk)
    return told


# ----------------------------------------------------------------------------------------------
# Scale


def cooldown_left(env: Environment, colour: str, seconds: float, now: datetime) -> float:
    """Seconds until `colour` may be scaled again: `seconds` after its last applied scale action."""
    last = (ScaleAction.objects.filter(environment=env, colour=colour, state=ScaleAction.State.APPLIED)
            .order_by("-created_at").values_list("created_at", flat=True).first())
    if last is None:
        return 0.0
    return max(0.0, seconds - (now - last).total_seconds())


def scale_apply(*, env: Environment, colour: str, desired: int, actor: Any, reason: str, automatic: bool,
                approved_by: Any = None, requested_by_label: str = "", now: datetime | None = None,
                dry_run: bool = False) -> ScaleAction:
    """Record and carry out a capacity change (caller holds the environment lock); the read back is stored."""
    at = now or timezone.now()
    group = cloudops.groups(env)[colour]
    action = ScaleAction.objects.create(
        environment=env, colour=colour, from_desired=int(group.desired), to_desired=int(desired), reason=reason[:500],
        state=ScaleAction.State.DRY_RUN if dry_run else ScaleAction.State.APPLIED, automatic=automatic,
        requested_by=Actor.of(actor).user, requested_by_label=requested_by_label or Actor.of(actor).label,
        approved_by=Actor.of(approved_by).user, approved_by_label=Actor.of(approved_by).label if approved_by is not None else "",
        created_at=at,
    )
    if not dry_run:
        try:
            read_back = cloudops.set_capacity(env, colour, int(desired))
        except Exception as exc:
            action.state = ScaleAction.State.FAILED
            action.error = str(exc)[:500]
            action.save(update_fields=["state", "error"])  # rolled back with the caller's transaction
            audit_record_later(exc, actor=actor, verb="environment.scale", target=env, before={"desired": action.from_desired},
                               after={"desired": desired}, extra={"colour": colour, "reason": reason, "automatic": automatic})
            raise
        action.read_back = read_back
        action.applied_at = timezone.now()
        audit_bounds(actor, env, colour, read_back, before={"min_size": int(group.min_size), "max_size": int(group.max_size)})
        if read_back.get("desired") != int(desired):
            action.state = ScaleAction.State.FAILED
            action.error = f"asked for {desired}, AWS reports {read_back.get('desired')}"
        action.save(update_fields=["read_back", "applied_at", "state", "error"])
    audit_record(actor=actor, verb="environment.scale", target=env, before={"desired": action.from_desired},
                 after={"desired": int(desired), "read_back": action.read_back}, result="ok" if action.state != "failed" else "error",
                 extra={"colour": colour, "reason": reason, "automatic": automatic, "dry_run": dry_run,
                        "approved_by": Actor.of(approved_by).label if approved_by else None, "scale_action": str(action.public_id)})
    if not automatic and not dry_run:
        open_incidents_note(environment=env, kind="cloud_action", actor=actor, text=scale_words(action, env),
                            data={"scale_action": str(action.public_id), "colour": colour, "state": action.state})
    return action


def scale_words(action: ScaleAction, env: Environment) -> str:
    who = action.requested_by_label + (f" (approved by {action.approved_by_label})" if action.approved_by_label else "")
    result = (f"AWS reads back {action.read_back.get('desired')}" if action.state == ScaleAction.State.APPLIED
              else f"did not apply: {action.error}")
    return f"{who} scaled {action.colour} on {env.name} from {action.from_desired} to {action.to_desired} ({action.reason}): {result}"


def audit_bounds(actor: Any, env: Environment, colour: str, read_back: dict, before: dict | None = None) -> None:
    """AWS's MinSize/MaxSize widened so that a capacity fits (cloudops.set_capacity): a change of its own."""
    if read_back.get("widened"):
        audit_record(actor=actor, verb="environment.group_bounds", target=env, before=before,
                     after={"min_size": read_back.get("min_size"), "max_size": read_back.get("max_size")},
                     extra={"colour": colour, "widened": read_back["widened"]})
