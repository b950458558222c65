"""Writes about growth phases: moving the platform's phase, ticking focus items, recording user counts."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud import aws
from portal.cloud import metrics as cloud_metrics
from portal.cloud.models import Environment
from portal.errors import Conflict, Invalid
from portal.phases.models import (
    CapacitySample,
    CostSnapshot,
    GrowthPhase,
    PhaseFocusItem,
    PhaseSettings,
    PhaseState,
    UserCountSample,
)
from portal.phases.selectors import current_phase, per_colour_range
from portal.tasking import enqueue

log = logging.getLogger(__name__)

MAX_USERS = 1_000_000_000


class PhaseError(Invalid, ValueError):
    """A phase action that cannot be done as asked (the message says why): 422, or 409 for a `conflict`."""

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code, status=Conflict.status if code == Conflict.code else Invalid.status)


def _phase_dict(phase: GrowthPhase) -> dict:
    return {
        "number": phase.number, "slug": phase.slug, "name": phase.name,
        "instances_min": phase.instances_min, "instances_max": phase.instances_max,
    }


def phase_move(*, to_phase: GrowthPhase, actor, reason: str = "", from_number: int | None = None) -> tuple[PhaseState, bool]:
    """Set the platform's phase to `to_phase` (one step forward, or one back as a correction).

    Returns (state, changed). Moving to the phase the platform is already in changes nothing
    (a second click). `from_number` is the phase the person saw; when another lead moved the
    phase meanwhile the move is refused rather than skipping a phase.
    The scale bounds deployments enforce are current_phase()'s instance range, so they follow.
    """
    reason = (reason or "").strip()
    if len(reason) > 500:
        raise PhaseError("invalid", "the reason is longer than 500 characters")
    with transaction.atomic():
        current = current_phase()  # seeds the phases on a fresh database
        state = PhaseState.objects.select_for_update().filter(key="platform").first()
        if state is not None:
            current = state.phase
        if current.pk == to_phase.pk:
            return state or _create_state(current, actor, reason), False
        if from_number is not None and from_number != current.number:
            raise PhaseError(
                "conflict",
                f"the platform is now in phase {current.number} ({current.name}), not {from_number}; reload and try again",
            )
        if abs(to_phase.number - current.number) != 1:
            raise PhaseError(
                "invalid",
                f"phases move one step at a time: from {current.number} ({current.name}) to {current.number + 1} or back to {current.number - 1}",
            )
        if to_phase.number < current.number and not reason:
            raise PhaseError("invalid", "moving back a phase needs a reason")
        before = _phase_dict(current)
        now = timezone.now()
        if state is None:
            state = _create_state(to_phase, actor, reason)
        else:
            state.phase = to_phase
            state.set_by = Actor.of(actor).user
            state.set_by_label = Actor.of(actor).label
            state.set_at = now
            state.reason = reason
            state.save(update_fields=["phase", "set_by", "set_by_label", "set_at", "reason"])
        audit_record(
            actor=actor, verb="phase.move", target=to_phase, before=before, after=_phase_dict(to_phase),
            extra={"reason": reason, "scale_bounds": [to_phase.instances_min, to_phase.instances_max]},
        )
        # The groups' bounds are checked against the phase: re-check them for the new one.
        enqueue("portal.checklist.tasks.checklist_verify", slug="auto-scaling", triggered_by="system:phases")
    return state, True


def _create_state(phase: GrowthPhase, actor, reason: str) -> PhaseState:
    try:
        with transaction.atomic():
            return PhaseState.objects.create(
                key="platform", phase=phase, set_by=Actor.of(actor).user, set_by_label=Actor.of(actor).label,
                set_at=timezone.now(), reason=reason,
            )
    except IntegrityError:
        # Another lead created the row at the same moment; theirs stands.
        return PhaseState.objects.select_for_update().get(key="platform")


def focus_item_set(*, item: PhaseFocusItem, done: bool, actor) -> tuple[PhaseFocusItem, bool]:
    """Tick or untick a focus item; the same request twice changes nothing the second time."""
    with transaction.atomic():
        item = PhaseFocusItem.objects.select_for_update().select_related("phase").get(pk=item.pk)
        if item.done == done:
            return item, False
        before = {"done": item.done, "done_by": item.done_by.get_username() if item.done_by else None}
        item.done = done
        item.done_by = Actor.of(actor).user if done else None
        item.done_at = timezone.now() if done else None
        item.save(update_fields=["done", "done_by", "done_at"])
        audit_record(
            actor=actor, verb="phase.focus_done" if done else "phase.focus_reopened", target=item,
            before=before, after={"done": done, "phase": item.phase.number, "text": item.text},
        )
    return item, True


def user_count_record(*, users: int, actor, note: str = "", source: str = UserCountSample.Source.MANUAL,
                      environment=None, at=None) -> UserCountSample:
    """Record a user count (a lead's entry, or the metrics source's reading)."""
    try:
        users = int(users)
    except (TypeError, ValueError):
        raise PhaseError("invalid", f"the user count must be a whole number, got {users!r}") from None
    if users < 0 or users > MAX_USERS:
        raise PhaseError("invalid", f"the user count must be between 0 and {MAX_USERS:,}")
    if source not in UserCountSample.Source.values:
        raise PhaseError("invalid", f"unknown source {source!r}")
    with transaction.atomic():
        sample = UserCountSample.objects.create(
            at=at or timezone.now(), users=users, source=source, environment=environment,
            entered_by=Actor.of(actor).user, note=(note or "")[:300],
        )
        if source == UserCountSample.Source.MANUAL:
            # Samples from the metrics source come every few minutes; only people's entries are audited.
            audit_record(actor=actor, verb="phase.users_entered", target=("phases.usercountsample", str(sample.pk)),
                         after={"users": users, "note": sample.note})
    return sample


def user_count_sample_from_metrics(*, environment_name: str | None = None) -> UserCountSample | None:
    """Read users() from the environment's metrics source and keep it; None when it has no answer."""
    try:
        env = Environment.objects.get(name=environment_name) if environment_name else Environment.objects.get_default()
    except Environment.DoesNotExist:
        log.info("phases: no environment %r to sample users from", environment_name or "default")
        return None
    try:
        users = cloud_metrics.metrics_source(env).users()
    except Exception as exc:  # the metrics source is outside; a failed read is logged, not fatal
        log.warning("phases: reading users from %s failed: %s", env.name, exc)
        return None
    if users is None:
        return None
    source = env.metrics_source if env.metrics_source in UserCountSample.Source.values else UserCountSample.Source.CLOUDWATCH
    return user_count_record(users=int(users), actor="system:phases", source=source, environment=env)


def capacity_sample_record(*, environment) -> CapacitySample | None:
    """Keep the live instances per colour and the load, for the instances chart and the capacity view."""
    try:
        groups = aws.describe_groups(environment)
    except Exception as exc:
        log.warning("phases: describe_groups on %s failed: %s", environment.name, exc)
        return None
    rps = cpu = None
    try:
        src = cloud_metrics.metrics_source(environment)
        rps = src.value("requests_per_second", None, 5)
        cpu = src.cpu(None, 5)
    except Exception as exc:
        log.info("phases: load metrics on %s unavailable: %s", environment.name, exc)

    def in_service(colour):
        g = groups.get(colour)
        return None if g is None else int(getattr(g, "in_service", 0) or 0)

    return CapacitySample.objects.create(
        at=timezone.now(), environment=environment, blue_in_service=in_service("blue"),
        green_in_service=in_service("green"), requests_per_second=rps, cpu_percent=cpu,
    )


def cost_snapshot_record(*, environment, report=None) -> CostSnapshot | None:
    """Keep Cost Explorer's month-to-date for this month (one row a month, updated)."""
    if report is None:
        try:
            report = aws.cost_month_to_date(environment)
        except Exception as exc:
            log.info("phases: cost on %s unavailable: %s", environment.name, exc)
            return None
    now = timezone.now()
    by_service = {str(k): float(v or 0) for k, v in (getattr(report, "by_service", None) or {}).items()}
    forecast = getattr(report, "forecast", None)
    snap, _ = CostSnapshot.objects.update_or_create(
        environment=environment, month=now.date().replace(day=1),
        defaults={"total": Decimal(str(getattr(report, "total", 0) or 0)).quantize(Decimal("0.01")),
                  "forecast": None if forecast is None else Decimal(str(forecast)).quantize(Decimal("0.01")),
                  "by_service": by_service, "currency": getattr(report, "currency", "USD") or "USD", "taken_at": now},
    )
    return snap


def instance_range_scope_set(*, scope: str, actor) -> tuple[PhaseSettings, bool]:
    """A lead chooses whether a phase's instance range is per colour or for the whole platform (audited).
    The scale bounds deployments enforce follow at once; the auto-scaling item is checked again."""
    if scope not in PhaseSettings.RangeScope.values:
        raise PhaseError("invalid", f"the instance range is read per_colour or platform, not {scope!r}")
    with transaction.atomic():
        row = PhaseSettings.objects.select_for_update().filter(key="platform").first()
        if row is None:
            try:
                with transaction.atomic():
                    row = PhaseSettings.objects.create(key="platform")
            except IntegrityError:
                row = PhaseSettings.objects.select_for_update().get(key="platform")
        if row.instance_range_scope == scope:
            return row, False
        phase = current_phase()
        before = {"instance_range_scope": row.instance_range_scope, "per_colour": list(per_colour_range(phase, row.instance_range_scope))}
        row.instance_range_scope = scope
        row.set_by = Actor.of(actor).user
        row.set_by_label = Actor.of(actor).label
        row.set_at = timezone.now()
        row.save(update_fields=["instance_range_scope", "set_by", "set_by_label", "set_at"])
        audit_record(actor=actor, verb="phase.instance_range_scope", target=row, before=before,
                     after={"instance_range_scope": scope, "per_colour": list(per_colour_range(phase, scope))},
                     extra={"phase": phase.number, "range": [phase.instances_min, phase.instances_max]})
        enqueue("portal.checklist.tasks.checklist_verify", slug="auto-scaling", triggered_by="system:phases")
    return row, True
