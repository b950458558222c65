"""JSON API for on call (mounted at /api/v1/): who is on call, schedules, overrides.

Reads need `read`; schedule writes `lead`; overrides `actions` for the token's own person (the user
who created the token) and `lead` for anyone else (checked in the service).
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.contrib.auth import get_user_model
from ninja import Router, Schema

from portal.api_auth import ScopedTokenAuth, require_scope
from portal.errors import Invalid, NotFound
from portal.oncall import selectors, services
from portal.oncall.models import Override

router = Router()


class RestrictionsIn(Schema):
    weekdays: list[int] = []
    start: str | None = None
    end: str | None = None


class LayerIn(Schema):
    members: list[str]
    shift_hours: int | None = None
    frequency: str | None = None
    interval: int | None = None
    starts_at: datetime
    name: str = ""
    restrictions: RestrictionsIn | None = None


class ScheduleIn(Schema):
    slug: str
    name: str = ""
    time_zone: str = "UTC"
    layers: list[LayerIn]


class ScheduleUpdateIn(Schema):
    name: str | None = None
    time_zone: str | None = None
    layers: list[LayerIn] | None = None


class OverrideIn(Schema):
    user: str
    starts_at: datetime
    ends_at: datetime
    reason: str = ""


def _override_json(o: Override) -> dict:
    return {"id": str(o.public_id), "schedule": o.schedule.slug, "user": o.user.username,
            "starts_at": o.starts_at.isoformat(), "ends_at": o.ends_at.isoformat(), "reason": o.reason,
            "created_by": o.created_by_label}


def _layers(layers: list[LayerIn]) -> list[dict]:
    return [layer.dict() for layer in layers]


@router.get("/oncall", summary="For each schedule: who is on call now (until) and next (from)")
def oncall(request):
    require_scope(request, "read")
    return [summary.as_json() for summary in selectors.oncall_summaries()]


@router.get("/schedules", summary="Schedules with their rotation layers")
def schedules(request):
    require_scope(request, "read")
    return [selectors.schedule_json(s) for s in selectors.schedules_with_layers()]


@router.post("/schedules", response={201: dict}, auth=ScopedTokenAuth("lead"),
             summary="Create a schedule (layers from the bottom: a later layer covers an earlier one)")
def schedule_create(request, payload: ScheduleIn):
    schedule = services.schedule_create(slug=payload.slug, name=payload.name, time_zone=payload.time_zone,
                                        layers=_layers(payload.layers), actor=request.auth)
    return 201, selectors.schedule_json(selectors.find_schedule(schedule.slug))


@router.put("/schedules/{slug}", auth=ScopedTokenAuth("lead"), summary="Change a schedule's name, zone or layers")
def schedule_update(request, slug: str, payload: ScheduleUpdateIn):
    schedule = services.schedule_update(
        schedule=selectors.find_schedule(slug), name=payload.name, time_zone=payload.time_zone,
        layers=_layers(payload.layers) if payload.layers is not None else None, actor=request.auth)
    return selectors.schedule_json(selectors.find_schedule(schedule.slug))


@router.post("/schedules/{slug}/overrides", response={201: dict, 200: dict}, auth=ScopedTokenAuth("actions"),
             summary="Someone covers a time range (overlaps allowed: the newest wins)")
def override_create(request, slug: str, payload: OverrideIn):
    schedule = selectors.find_schedule(slug)
    user = get_user_model().objects.filter(username=payload.user).first()
    if user is None:
        raise Invalid(f"no user {payload.user!r}")
    override, _ = services.override_create(schedule=schedule, user=user, starts_at=payload.starts_at,
                                           ends_at=payload.ends_at, reason=payload.reason, actor=request.auth)
    return 201, _override_json(override)


@router.delete("/schedules/{slug}/overrides/{override_id}", response={204: None}, auth=ScopedTokenAuth("actions"),
               summary="Remove an override")
def override_delete(request, slug: str, override_id: UUID):
    override = Override.objects.select_related("schedule", "user").filter(public_id=override_id, schedule__slug=slug).first()
    if override is None:
        raise NotFound("no such override on this schedule")
    services.override_delete(override=override, actor=request.auth)
    return 204, None
