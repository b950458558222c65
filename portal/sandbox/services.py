"""Writes of the sandbox: drills (faults injected into the sandbox for a while). Audited."""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from typing import Any

from django.db import transaction
from django.utils import timezone

from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud.errors import CloudError
from portal.cloud.models import COLOURS, Drill, Environment
from portal.errors import BadRequest
from portal.incidents import silences
from portal.plan.loader import load_plan
from portal.sandbox.costs import costs_sync
from portal.sandbox.simulator import sync_state

log = logging.getLogger(__name__)

# What each drill kind is expected to set off (the product's alert labels), silenced while it runs.
DRILL_METRICS = {"error-rate": ["error_rate"], "latency": ["p95_response_time"], "cpu": ["cpu"],
                 "db-connections": ["db_connections"], "cache-hit-ratio": ["cache_hit_ratio"]}
# The CloudWatch alarms check says "N alarm(s) in ALARM" for the whole account: a metric drill's alarms are
# expected to fire (the individual metric checks still page for anything the drill does not cause).
DRILL_EXTRA_MATCHERS = {"unhealthy-instance": [{"kind": "target_health"}], "service-outage": [{"kind": "statuspage"}],
                        **{k: [{"kind": "alarm"}] for k in ("error-rate", "latency", "cpu", "db-connections", "cache-hit-ratio")}}

LEVEL_LIMITS = {  # kind -> (min, max, unit)
    "error-rate": (0.0, 100.0, "%"),
    "latency": (0.0, 60.0, "s"),
    "cpu": (0.0, 100.0, "%"),
    "db-connections": (0.0, 100.0, "%"),
    "cache-hit-ratio": (0.0, 100.0, "%"),
    "unhealthy-instance": (1.0, 32.0, "instances"),
    "cost-spike": (1.0, 1000.0, "% of the phase budget"),
}
MAX_MINUTES = 24 * 60


class DrillError(BadRequest, ValueError):
    """A drill that cannot start as asked; the message says why in words."""


def _service_slugs() -> list[str]:
    return [s["slug"] for s in load_plan().get("services", [])]


def drill_start(*, environment: Environment, kind: str, colour: str | None = None, level: float | None = None,
                minutes: int = 10, actor: Any, seed: int | None = None, target: str = "") -> Drill:
    """Start a drill; an identical drill already running is returned as is (safe to click twice)."""
    if kind not in Drill.Kind.values:
        raise DrillError(f"unknown drill kind {kind!r}; kinds: {', '.join(Drill.Kind.values)}")
    if environment.credentials_mode != Environment.CredentialsMode.STATIC:
        raise DrillError(f"drills run only in the sandbox; {environment.name} is a real AWS environment")
    colour = colour or ""
    if colour and colour not in COLOURS:
        raise DrillError(f"colour must be blue or green, not {colour!r}")
    if kind in ("db-connections", "cache-hit-ratio", "service-outage", "cost-spike") and colour:
        raise DrillError(f"a {kind} drill is not per colour; leave the colour empty")
    try:
        minutes = int(minutes)
    except (TypeError, ValueError) as exc:
        raise DrillError(f"minutes must be a whole number, not {minutes!r}") from exc
    if not 1 <= minutes <= MAX_MINUTES:
        raise DrillError(f"minutes must be between 1 and {MAX_MINUTES}")
    if level is not None:
        if kind not in LEVEL_LIMITS:
            raise DrillError(f"a {kind} drill takes no level")
        try:
            level = float(level)
        except (TypeError, ValueError) as exc:
            raise DrillError(f"level must be a number, not {level!r}") from exc
        lo, hi, unit = LEVEL_LIMITS[kind]
        if not lo <= level <= hi:
            raise DrillError(f"the level of a {kind} drill must be between {lo:g} and {hi:g} {unit}")
    target = (target or "").strip()
    if kind == "service-outage":
        slugs = _service_slugs()
        target = target or (slugs[0] if slugs else "openai")
        if slugs and target not in slugs:
            raise DrillError(f"unknown service {target!r}; services: {', '.join(slugs)}")
    elif target:
        raise DrillError(f"a {kind} drill takes no target service")
    now = timezone.now()
    with transaction.atomic():
        Environment.objects.select_for_update().filter(pk=environment.pk).first()  # one start at a time per environment
        running = Drill.objects.filter(environment=environment, kind=kind, colour=colour, target=target,
                                       stopped_at__isnull=True, ends_at__gt=now).first()
        if running is not None:
            return running
        drill = Drill.objects.create(
            environment=environment, kind=kind, colour=colour, level=level, target=target,
            seed=int(seed) if seed is not None else int(now.timestamp() * 1000) % 2_147_483_647,
            ends_at=now + dt.timedelta(minutes=minutes), started_by=Actor.of(actor).label,
        )
        audit_record(actor=actor, verb="drill.start", target=drill, after=_snapshot(drill),
                     extra={"environment": environment.name})
        # A drill pages nobody for what it is expected to cause; anything else during it still pages.
        silences.silence_expected(environment=environment, metrics=DRILL_METRICS.get(kind, []), what="drill",
                                  ends_at=drill.ends_at, actor=actor, ref=f"drill:{drill.pk}", colour=colour,
                                  extra=DRILL_EXTRA_MATCHERS.get(kind))
    if kind in ("unhealthy-instance", "service-outage"):
        transaction.on_commit(partial(_sync_quietly, environment))
    if kind == "cost-spike":
        transaction.on_commit(partial(_costs_quietly, environment))
    return drill


def drill_stop(*, drill: Drill | None = None, environment: Environment | None = None, all: bool = False,  # noqa: A002
               actor: Any) -> list[Drill]:
    """Stop one drill, or every active drill (of an environment, or everywhere with all=True). Idempotent."""
    if drill is None and not all:
        raise DrillError("name a drill to stop, or ask for all")
    now = timezone.now()
    stopped = []
    envs = set()
    with transaction.atomic():
        qs = Drill.objects.select_for_update().filter(stopped_at__isnull=True, ends_at__gt=now)
        if drill is not None:
            qs = qs.filter(pk=drill.pk)
        elif environment is not None:
            qs = qs.filter(environment=environment)
        for d in qs.select_related("environment"):
            before = _snapshot(d)
            d.stopped_at = now
            d.save(update_fields=["stopped_at"])
            audit_record(actor=actor, verb="drill.stop", target=d, before=before, after=_snapshot(d),
                         extra={"environment": d.environment.name})
            silences.silences_finish(ref=f"drill:{d.pk}", actor=actor)
            stopped.append(d)
            envs.add(d.environment)
    for env in envs:
        transaction.on_commit(partial(_sync_quietly, env))
        if any(d.kind == Drill.Kind.COST_SPIKE and d.environment_id == env.pk for d in stopped):
            transaction.on_commit(partial(_costs_quietly, env))
    return stopped


def _sync_quietly(env: Environment) -> None:
    """Apply unhealthy marks and outages now rather than at the next tick (the tick does it anyway)."""
    try:
        sync_state(env)
    except CloudError as exc:
        log.info("drill state for %s will apply at the next simulator tick: %s", env.name, exc)


def _costs_quietly(env: Environment) -> None:
    """Seed Cost Explorer's figures now rather than at the next tick (the tick does it anyway)."""
    try:
        costs_sync(env)
    except Exception as exc:  # noqa: BLE001 - moto may be down; the next tick seeds again
        log.info("sandbox costs for %s will apply at the next simulator tick: %s", env.name, exc)


def _snapshot(d: Drill) -> dict:
    return {"kind": d.kind, "colour": d.colour, "level": d.level, "target": d.target, "seed": d.seed,
            "ends_at": d.ends_at, "stopped_at": d.stopped_at}
