"""Incident command JSON API (mounted at /api/v1/ by portal/api.py): declare, updates, roles, action items.

`POST /api/v1/incidents` shares its path with the incidents list (`GET`), and Django serves one
path from one router: the declare operation is therefore added to the incidents router (this module
stays the one that defines it; portal.incidents imports nothing of command). Everything else is on
this module's own router. Reads need `read`, writes `actions`; the services check the person too.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from urllib.parse import parse_qs

from ninja import Router, Schema

from portal.api_auth import ScopedTokenAuth, require_scope
from portal.cloud.models import Environment
from portal.command import selectors, services
from portal.command.models import ActionItem, StatusUpdate
from portal.errors import Invalid, NotFound, PortalError
from portal.inbound import slack
from portal.incidents.api import ErrorOut, incident_out
from portal.incidents.api import router as incidents_router
from portal.incidents.models import Incident

router = Router()


class DeclareIn(Schema):
    title: str
    severity: str
    environment: str | None = None
    journeys: list[str] = []
    description: str = ""


class UpdateIn(Schema):
    status: str
    message: str
    public: bool = True


class RoleIn(Schema):
    role: str
    user: str | None = None


class ActionIn(Schema):
    title: str
    owner: str | None = None
    due_date: date | None = None
    link_kind: str = ""
    link_target: str = ""


class UpdateOut(Schema):
    id: str
    status: str
    message: str
    posted_by: str
    posted_at: datetime
    public: bool


class RoleOut(Schema):
    role: str
    user: str | None
    taken_at: datetime | None


class ActionOut(Schema):
    id: str
    incident: str
    title: str
    owner: str | None
    due_date: date | None
    state: str
    link_kind: str
    link_target: str


def _get(incident_id: str) -> Incident:
    try:
        key = uuid.UUID(str(incident_id))
    except ValueError as exc:
        raise NotFound("no incident with this id") from exc
    inc = Incident.objects.select_related("environment").filter(public_id=key).first()
    if inc is None:
        raise NotFound("no incident with this id")
    return inc


def _update_out(u: StatusUpdate) -> dict:
    return {"id": str(u.public_id), "status": u.status, "message": u.message, "posted_by": u.posted_by,
            "posted_at": u.posted_at, "public": u.public}


def _action_out(a: ActionItem) -> dict:
    return {"id": str(a.public_id), "incident": str(a.incident.public_id), "title": a.title,
            "owner": a.owner.get_username() if a.owner else None, "due_date": a.due_date, "state": a.state,
            "link_kind": a.link_kind, "link_target": a.link_target}


@incidents_router.post("/incidents", response={201: dict, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut}, tags=["incidents"],
                       summary="Declare an incident (title, severity SEV1-SEV3, environment, journeys, description); "
                               "a SEV1 pages the commander on call", auth=ScopedTokenAuth("actions"))
def declare_incident(request, payload: DeclareIn):
    env = None
    if payload.environment:
        env = Environment.objects.filter(name=payload.environment).first()
        if env is None:
            raise Invalid(f"no environment {payload.environment!r}")
    token = require_scope(request, "actions", environment=env)
    inc = services.incident_declare(title=payload.title, sev=payload.severity, environment=env, journeys=payload.journeys,
                                    description=payload.description, actor=token)
    cmd = selectors.command_for(inc)
    return 201, {**incident_out(inc), "sev": cmd.sev, "journeys": cmd.journeys, "declared": True,
                 "roles": [{"role": r["role"], "user": r["user"]} for r in selectors.roles_of(inc)]}


@router.get("/incidents/{incident_id}/updates", response={200: list[UpdateOut], 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
            summary="An incident's stakeholder updates, newest first")
def list_updates(request, incident_id: str):
    require_scope(request, "read")
    return 200, [_update_out(u) for u in _get(incident_id).status_updates.all()]


@router.post("/incidents/{incident_id}/updates", response={201: UpdateOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
             summary="Post a stakeholder update (investigating, identified, monitoring, resolved); subscribers get it",
             auth=ScopedTokenAuth("actions"))
def post_update(request, incident_id: str, payload: UpdateIn):
    token = require_scope(request, "actions")
    upd = services.update_post(incident=_get(incident_id), status=payload.status, message=payload.message,
                               public=payload.public, actor=token)
    return 201, _update_out(upd)


@router.get("/incidents/{incident_id}/roles", response={200: list[RoleOut], 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
            summary="Commander, communications and operations: who holds each")
def list_roles(request, incident_id: str):
    require_scope(request, "read")
    return 200, [{"role": r["role"], "user": r["user"], "taken_at": r["taken_at"]} for r in selectors.roles_of(_get(incident_id))]


@router.post("/incidents/{incident_id}/roles", response={200: list[RoleOut], 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
             summary="Take a role (the token's person, or `user`)", auth=ScopedTokenAuth("actions"))
def take_role(request, incident_id: str, payload: RoleIn):
    from django.contrib.auth import get_user_model

    token = require_scope(request, "actions")
    inc = _get(incident_id)
    user = None
    if payload.user:
        user = get_user_model().objects.filter(username=payload.user, is_active=True).first()
        if user is None:
            raise Invalid(f"no user {payload.user!r}")
    services.role_take(incident=inc, role=payload.role, user=user, actor=token)
    return 200, [{"role": r["role"], "user": r["user"], "taken_at": r["taken_at"]} for r in selectors.roles_of(inc)]


@router.get("/incidents/{incident_id}/actions", response={200: list[ActionOut], 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
            summary="An incident's action items")
def list_actions(request, incident_id: str):
    require_scope(request, "read")
    return 200, [_action_out(a) for a in _get(incident_id).action_items.select_related("owner", "incident")]


@router.post("/incidents/{incident_id}/actions", response={201: ActionOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
             summary="Add an action item (owner, due date, a link to a threshold, runbook or checklist item)",
             auth=ScopedTokenAuth("actions"))
def add_action(request, incident_id: str, payload: ActionIn):
    token = require_scope(request, "actions")
    item = services.action_item_add(incident=_get(incident_id), title=payload.title, owner=payload.owner or None,
                                    due_date=payload.due_date, link_kind=payload.link_kind, link_target=payload.link_target,
                                    actor=token)
    return 201, _action_out(item)


@router.get("/action-items", response={200: list[ActionOut], 401: ErrorOut, 403: ErrorOut},
            summary="Open action items across incidents, soonest due first")
def open_action_items(request, limit: int = 100, offset: int = 0):
    require_scope(request, "read")
    limit, offset = max(1, min(limit, 500)), max(0, offset)
    return 200, [_action_out(a) for a in selectors.open_action_items()[offset : offset + limit]]


class SlackCommandOut(Schema):
    response_type: str
    text: str


SLASH_FORM = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "properties": {"text": {"type": "string", "description": "sev1|sev2|sev3 and the title"},
                                     "user_id": {"type": "string"}, "command": {"type": "string"}},
    "required": ["text", "user_id"]}}}}}
SLASH_USAGE = "Usage: /incident sev1|sev2|sev3 <title> (e.g. /incident sev2 Payments stuck at checkout)"


@router.post("/inbound/slack/commands", auth=None, response={200: SlackCommandOut, 401: ErrorOut}, tags=["inbound"],
             summary="Slack slash command: `/incident sev2 <title>` declares an incident as the Slack user's portal person",
             openapi_extra=SLASH_FORM)
def slack_declare(request):
    """Slack's signature is the credential; the person is the one whose verified Slack method is the sender."""
    body = request.body
    slack.verify(body=body, headers=request.headers)
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", errors="replace")).items()}
    user = slack.slack_user(form.get("user_id", ""))
    if user is None:
        return 200, {"response_type": "ephemeral", "text": "Your Slack account is not linked to a portal user (a verified Slack contact method)."}
    sev, _, title = (form.get("text") or "").strip().partition(" ")
    if not title.strip():
        return 200, {"response_type": "ephemeral", "text": SLASH_USAGE}
    try:
        inc = services.incident_declare(title=title.strip(), sev=sev, actor=user)
    except PortalError as exc:
        return 200, {"response_type": "ephemeral", "text": f"Not declared: {exc.detail}. {SLASH_USAGE}"}
    cmd = selectors.command_for(inc)
    from portal.incidents.paging import public_url

    return 200, {"response_type": "in_channel",
                 "text": f"{user.get_username()} declared {cmd.sev} INC-{inc.pk}: {inc.title} {public_url(selectors.command_url(inc))}"}
