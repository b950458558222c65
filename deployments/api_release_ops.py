"""JSON API (mounted at /api/v1/): an environment's freeze windows and its DORA figures."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from ninja import Router, Schema, Status

from deployments import dora, freezes
from deployments.models import FreezeWindow
from portal.api_auth import ScopedTokenAuth, require_environment_grant, require_scope
from portal.cloud.models import Environment
from portal.errors import NotFound

router = Router()


class ErrorOut(Schema):
    error: str
    detail: str


class FreezeIn(Schema):
    starts_at: datetime
    ends_at: datetime
    reason: str
    rrule: str = ""


class LiftIn(Schema):
    reason: str = ""


class FreezeWindowOut(Schema):
    id: uuid.UUID
    environment: str
    starts_at: datetime
    ends_at: datetime
    rrule: str
    reason: str
    created_by: str
    created_at: datetime
    lifted_at: datetime | None
    active: bool
    active_until: datetime | None
    next_starts_at: datetime | None


class FreezeNowOut(Schema):
    kind: str
    reason: str
    until: datetime | None
    window: uuid.UUID | None
    incident: uuid.UUID | None


class FreezesOut(Schema):
    environment: str
    frozen: bool
    active: list[FreezeNowOut]
    windows: list[FreezeWindowOut]


class DoraWeekOut(Schema):
    week: str
    starts_on: date
    deployments: int
    changes: int
    failures: int
    change_failure_rate_pct: float | None
    lead_time_p50_seconds: float | None
    restores: int
    unrestored: int
    time_to_restore_p50_seconds: float | None


class DoraOut(Schema):
    environment: str
    weeks: list[DoraWeekOut]


def _env(name: str) -> Environment:
    env = Environment.objects.filter(name=name).first()
    if env is None:
        raise NotFound(f"no environment named {name!r}")
    return env


def window_out(w: FreezeWindow, *, active_until: datetime | None = None, next_starts_at: datetime | None = None) -> dict:
    return {"id": w.public_id, "environment": w.environment.name, "starts_at": w.starts_at, "ends_at": w.ends_at,
            "rrule": w.rrule, "reason": w.reason, "created_by": w.created_by_label, "created_at": w.created_at,
            "lifted_at": w.ended_at, "active": active_until is not None, "active_until": active_until,
            "next_starts_at": next_starts_at}


@router.get("/environments/{name}/freezes", response={200: FreezesOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
            summary="The environment's freezes: what freezes it now (windows, a critical incident, a spent error budget) "
                    "and its windows not yet over")
def list_freezes(request, name: str):
    require_scope(request, "read")
    env = _env(name)
    now_on = freezes.active_freezes(env)
    return Status(200, {
        "environment": env.name, "frozen": bool(now_on),
        "active": [{"kind": f.kind, "reason": f.reason, "until": f.until, "window": f.window.public_id if f.window else None,
                    "incident": f.incident.public_id if f.incident else None} for f in now_on],
        "windows": [window_out(row["window"], active_until=row["active_until"], next_starts_at=row["next_starts_at"])
                    for row in freezes.windows_for(env)],
    })


@router.post("/environments/{name}/freezes", response={201: FreezeWindowOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut,
                                                      422: ErrorOut},
             summary="Freeze deployments on the environment from starts_at to ends_at (repeated by an RFC 5545 rrule, "
                     "e.g. FREQ=WEEKLY;BYDAY=FR); rollbacks still run; audited", auth=ScopedTokenAuth("actions"))
def create_freeze(request, name: str, payload: FreezeIn):
    token = require_scope(request, "actions")
    env = _env(name)
    require_environment_grant(token, env)
    w = freezes.freeze_create(environment=env, starts_at=payload.starts_at, ends_at=payload.ends_at, reason=payload.reason,
                              rrule=payload.rrule, actor=token)
    return Status(201, window_out(w, active_until=freezes.occurrence_end(w, w.created_at),
                                  next_starts_at=freezes.next_start(w, w.created_at)))


@router.delete("/environments/{name}/freezes/{freeze_id}", response={200: FreezeWindowOut, 401: ErrorOut, 403: ErrorOut,
                                                                    404: ErrorOut},
               summary="Lift a freeze window now (a recurring one ends for good); lead scope; audited",
               auth=ScopedTokenAuth("lead"))
def lift_freeze(request, name: str, freeze_id: str):
    token = require_scope(request, "lead")
    env = _env(name)
    try:
        key = uuid.UUID(str(freeze_id))
    except ValueError as exc:
        raise NotFound("no such freeze window") from exc
    require_environment_grant(token, env)
    w = freezes.freeze_lift(window=freezes.freeze_get(env, key), actor=token)
    return Status(200, window_out(w))


@router.get("/environments/{name}/dora", response={200: DoraOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
            summary="DORA figures per ISO week from the portal's records: deployment frequency, lead time, change "
                    "failure rate, time to restore (weeks: 1 to 52, default 8)")
def get_dora(request, name: str, weeks: int = 8):
    require_scope(request, "read")
    env = _env(name)
    return Status(200, {"environment": env.name, "weeks": [w.as_dict() for w in dora.dora_weeks(env, weeks=weeks)]})
