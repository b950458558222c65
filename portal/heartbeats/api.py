"""Heartbeats under /api/v1/heartbeats (mounted by portal/api.py).

Creating one needs the lead scope. A ping carries no bearer token of the portal: the heartbeat's own
ping token is the credential, in the path (`.../ping/{token}`, for a cron curl or an Alertmanager
webhook_config) or as `Authorization: Bearer <ping token>`. An unknown slug or a wrong token is a 401
that changes nothing.
"""

from __future__ import annotations

from ninja import Router, Schema

from portal.api_auth import ScopedTokenAuth, require_scope
from portal.heartbeats import selectors, services

router = Router()


class HeartbeatIn(Schema):
    name: str
    period_seconds: int
    grace_seconds: int = 0
    slug: str = ""


class ErrorOut(Schema):
    error: str
    detail: str


class PingOut(Schema):
    slug: str
    status: str
    last_ping_at: str | None


def _bearer(request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _pinged(slug: str, token: str) -> dict:
    heartbeat = services.heartbeat_ping(heartbeat=services.heartbeat_authenticate(slug=slug, token=token))
    return {"slug": heartbeat.slug, "status": heartbeat.status,
            "last_ping_at": heartbeat.last_ping_at.isoformat() if heartbeat.last_ping_at else None}


@router.get("", summary="Heartbeats with their last ping and status")
def list_heartbeats(request):
    require_scope(request, "read")
    return [selectors.heartbeat_json(row["heartbeat"]) for row in selectors.heartbeats_for_page()]


@router.post("", response={201: dict}, auth=ScopedTokenAuth("lead"),
             summary="Create a heartbeat: answers its slug and ping URL (the token in it is shown once)")
def create_heartbeat(request, payload: HeartbeatIn):
    heartbeat, token = services.heartbeat_create(name=payload.name, period_seconds=payload.period_seconds,
                                                 grace_seconds=payload.grace_seconds, slug=payload.slug,
                                                 actor=request.auth)
    return 201, {**selectors.heartbeat_json(heartbeat), "ping_url": heartbeat.ping_url(token), "ping_token": token}


@router.post("/{slug}/ping", auth=None, url_name="heartbeat_ping", response={200: PingOut, 401: ErrorOut},
             summary="Ping a heartbeat with its ping token as Authorization: Bearer <token>")
def ping(request, slug: str):
    return _pinged(slug, _bearer(request))


@router.post("/{slug}/ping/{token}", auth=None, url_name="heartbeat_ping_token", response={200: PingOut, 401: ErrorOut},
             summary="Ping a heartbeat with its ping token in the path")
def ping_with_token(request, slug: str, token: str):
    return _pinged(slug, token)


@router.get("/{slug}/ping/{token}", auth=None, url_name="heartbeat_ping_token_get", response={200: PingOut, 401: ErrorOut},
            summary="Ping a heartbeat with its ping token in the path (GET, for curl from cron)")
def ping_with_token_get(request, slug: str, token: str):
    return _pinged(slug, token)
