"""Webhooks (Alertmanager, SNS) and the incidents JSON API. Mounted at /api/v1/ by portal/api.py.

The webhooks take auth=None and check their own credentials (a bearer token for Alertmanager, the
message signature for SNS) so every refusal is recorded in RejectedDelivery with its reason.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest
from django.http.request import RawPostDataException
from django.utils import timezone
from ninja import Router, Schema

from portal.api_auth import ScopedTokenAuth, TokenAuth, require_scope
from portal.errors import Invalid, NotFound, PortalError, Unavailable
from portal.incidents import bulk, ingest, rejects, services, silences, sns
from portal.incidents.models import Incident, MaintenanceWindow, Silence, Source
from portal.incidents.parsing import PayloadError, decode_json, parse_cloudwatch_message, screen_alertmanager
from portal.incidents.selectors import incident_list

router = Router()


class ErrorOut(Schema):
    error: str
    detail: str


class RejectedAlertOut(Schema):
    index: int
    error: str
    detail: str


class DeliveryOut(Schema):
    status: str
    delivery: uuid.UUID
    alerts: int
    duplicate: bool = False
    rejected: list[RejectedAlertOut] = []


class AlertOut(Schema):
    fingerprint: str
    name: str
    status: str
    severity: str
    summary: str
    labels: dict
    generator_url: str
    starts_at: datetime | None
    ends_at: datetime | None


class TimelineOut(Schema):
    at: datetime
    kind: str
    actor: str
    text: str
    data: dict


class IncidentOut(Schema):
    id: uuid.UUID
    title: str
    status: str
    severity: str
    environment: str | None
    service: str
    grouping_key: str
    source: str
    runbook_slug: str
    opened_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str
    resolved_at: datetime | None
    resolved_by: str
    assignee: str | None
    url: str


class IncidentDetailOut(IncidentOut):
    alerts: list[AlertOut]
    timeline: list[TimelineOut]
    postmortem: dict


class IncidentPage(Schema):
    count: int
    results: list[IncidentOut]


class ResolveIn(Schema):
    reason: str = ""


class BulkIn(Schema):
    action: str
    ids: list[str]


class BulkResultOut(Schema):
    id: str
    result: str  # done | already | not_allowed | not_found
    status: str | None = None


class BulkOut(Schema):
    action: str
    results: list[BulkResultOut]


class NoteIn(Schema):
    text: str


WEBHOOK_RESPONSES = {200: DeliveryOut, 400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 413: ErrorOut, 422: ErrorOut, 503: ErrorOut}


def _client(request: HttpRequest) -> tuple[str, str]:
    return request.META.get("REMOTE_ADDR", ""), request.headers.get("User-Agent", "")


def _record(request: HttpRequest, source: str, status: int, reason: str, detail: str, body: bytes | str = b"") -> None:
    remote, agent = _client(request)
    rejects.delivery_reject(source=source, reason=reason, detail=detail, status_code=status, remote_addr=remote, user_agent=agent, body=body)


def _reject(request: HttpRequest, source: str, status: int, reason: str, detail: str, body: bytes | str = b""):
    _record(request, source, status, reason, detail, body)
    return PortalError(detail, status=status, code=reason)


def _read_body(request: HttpRequest, source: str) -> bytes:
    try:
        body = request.body
    except RequestDataTooBig as exc:
        raise _reject(request, source, 413, "too_large", f"the body is larger than the {request_limit()} bytes accepted") from exc
    except RawPostDataException as exc:  # pragma: no cover - only if something read the stream first
        raise _reject(request, source, 400, "bad_request", "the body could not be read") from exc
    return body


def request_limit() -> int:
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def _store(request, *, source: str, payload, dedup_key: str = "", count: int = 0) -> dict:
    remote, _ = _client(request)
    try:
        delivery, created = ingest.delivery_store(source=source, payload=payload, dedup_key=dedup_key, remote_addr=remote, alert_count=count)
    except DatabaseError as exc:
        # Not stored: the sender must retry (Alertmanager and SNS retry on 5xx only).
        raise Unavailable(f"the delivery could not be stored ({exc.__class__.__name__}); retry") from exc
    return {"status": "accepted" if created else "duplicate", "delivery": delivery.public_id, "alerts": count, "duplicate": not created}


@router.post(
    "/alerts/alertmanager", auth=None, response=WEBHOOK_RESPONSES, tags=["alerts"],
    summary="Alertmanager webhook (version 4); Authorization: Bearer <token of scope alerts:write>",
    openapi_extra={
        "security": [{"TokenAuth": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["alerts"],
            "properties": {"version": {"type": "string"}, "groupKey": {"type": "string"}, "status": {"type": "string"},
                           "truncatedAlerts": {"type": "integer"}, "alerts": {"type": "array", "items": {"type": "object"}}},
        }}}},
    },
)
def alertmanager_webhook(request):
    source = Source.ALERTMANAGER
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    try:
        token = TokenAuth().authenticate(request, raw.strip()) if scheme.lower() == "bearer" else None
    except DatabaseError as exc:
        raise Unavailable("the database is unavailable; retry") from exc
    if token is None:
        raise _reject(request, source, 401, "unauthorized", "missing or invalid bearer token")
    if not token.grants("alerts:write"):
        raise _reject(request, source, 403, "forbidden", f"this token's scope ({token.scope}) does not allow 'alerts:write'")
    body = _read_body(request, source)
    try:
        screened = screen_alertmanager(decode_json(body))
    except PayloadError as exc:
        raise _reject(request, source, _status(exc), exc.reason, exc.detail, body) from exc
    if screened.rejected:
        first = screened.rejected[0]
        excerpt = json.dumps(first.alert, ensure_ascii=True)
        if not screened.alerts:
            raise _reject(request, source, 422, first.reason, first.detail, excerpt)
        # Refused alerts are recorded; the batch's other alerts are stored and processed.
        _record(request, source, 200, first.reason, f"{len(screened.rejected)} of {len(screened.rejected) + len(screened.alerts)} alerts refused: {first.detail}", excerpt)
    out = _store(request, source=source, payload=screened.payload, count=len(screened.alerts))
    out["rejected"] = [{"index": r.index, "error": r.reason, "detail": r.detail} for r in screened.rejected[:100]]
    return 200, out


def _status(exc: PayloadError) -> int:
    """400 for a body that is not usable JSON at all, 422 for JSON that is not a valid delivery."""
    return 400 if exc.reason in ("malformed_json", "too_deep") else 422


@router.post(
    "/alerts/sns", auth=None, response=WEBHOOK_RESPONSES, tags=["alerts"],
    summary="AWS SNS HTTP(S) delivery: subscription confirmation, CloudWatch alarm notification, unsubscribe",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["Type", "MessageId", "TopicArn", "Signature", "SigningCertURL", "SignatureVersion"],
        "properties": {"Type": {"type": "string", "enum": list(sns.TYPES)}, "Message": {"type": "string"}},
    }}}}},
)
def sns_webhook(request):
    source = Source.SNS
    body = _read_body(request, source)
    try:
        message = sns.check_envelope(decode_json(body))
        header_type = request.headers.get("x-amz-sns-message-type")
        if header_type and header_type != message["Type"]:
            raise PayloadError("type_mismatch", "x-amz-sns-message-type does not match the body's Type")
    except PayloadError as exc:
        raise _reject(request, source, _status(exc), exc.reason, exc.detail, body) from exc
    try:
        # Topic, Timestamp and every URL are checked before the certificate is fetched.
        sns.verify(message)
    except sns.Unavailable as exc:
        raise _reject(request, source, 503, exc.reason, exc.detail, body) from exc
    except PayloadError as exc:
        raise _reject(request, source, 403, exc.reason, exc.detail, body) from exc
    count = 0
    if message["Type"] == "Notification":
        try:
            parse_cloudwatch_message(message["Message"])
        except PayloadError as exc:
            raise _reject(request, source, _status(exc), exc.reason, exc.detail, body) from exc
        count = 1
    return 200, _store(request, source=source, payload=message, dedup_key=message["MessageId"], count=count)


# ----------------------------------------------------------------------------------------------
# Incidents


def incident_out(inc: Incident) -> dict:
    return {
        "id": inc.public_id, "title": inc.title, "status": inc.status, "severity": inc.severity,
        "environment": inc.environment.name if inc.environment else None, "service": inc.service,
        "grouping_key": inc.grouping_key, "source": inc.source, "runbook_slug": inc.runbook_slug,
        "opened_at": inc.opened_at, "acknowledged_at": inc.acknowledged_at, "acknowledged_by": inc.acknowledged_by,
        "resolved_at": inc.resolved_at, "resolved_by": inc.resolved_by,
        "assignee": inc.assignee.get_username() if inc.assignee else None, "url": inc.get_absolute_url(),
    }


def _get(incident_id: str) -> Incident:
    try:
        key = uuid.UUID(str(incident_id))
    except ValueError as exc:
        raise NotFound("no incident with this id") from exc
    inc = Incident.objects.select_related("environment", "assignee").filter(public_id=key).first()
    if inc is None:
        raise NotFound("no incident with this id")
    return inc


def _detail(inc: Incident) -> dict:
    out = incident_out(inc)
    out["alerts"] = [
        {"fingerprint": a.fingerprint, "name": a.name, "status": a.status, "severity": a.severity, "summary": a.summary,
         "labels": a.labels, "generator_url": a.generator_url, "starts_at": a.starts_at, "ends_at": a.ends_at}
        for a in inc.alerts.all()
    ]
    out["timeline"] = [{"at": t.at, "kind": t.kind, "actor": t.actor_label, "text": t.text, "data": t.data} for t in inc.timeline.all()]
    out["postmortem"] = {"summary": inc.postmortem_summary, "impact": inc.postmortem_impact,
                         "root_cause": inc.postmortem_root_cause, "actions": inc.postmortem_actions}
    return out


@router.get("/incidents", response={200: IncidentPage, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut}, tags=["incidents"],
            summary="List incidents; status=open (triggered or acknowledged), triggered, acknowledged or resolved")
def list_incidents(request, status: str = "", severity: str = "", limit: int = 100, offset: int = 0):
    require_scope(request, "read")
    if status and status not in ("open", "triggered", "acknowledged", "resolved"):
        raise Invalid("status must be open, triggered, acknowledged or resolved")
    limit, offset = max(1, min(limit, 500)), max(0, offset)
    qs = incident_list(status=status, severity=severity)
    return 200, {"count": qs.count(), "results": [incident_out(i) for i in qs[offset : offset + limit]]}


@router.post("/incidents/bulk", response={200: BulkOut, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut}, tags=["incidents"],
             summary="Acknowledge or resolve several incidents; each is audited on its own and answers done, already, "
                     "not_allowed or not_found", auth=ScopedTokenAuth("actions"))
def bulk_action(request, payload: BulkIn):
    token = require_scope(request, "actions")
    return 200, {"action": payload.action, "results": bulk.incident_bulk(action=payload.action, ids=payload.ids, actor=token)}


@router.get("/incidents/{incident_id}", response={200: IncidentDetailOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut}, tags=["incidents"],
            summary="One incident with its alerts, timeline and postmortem")
def get_incident(request, incident_id: str):
    require_scope(request, "read")
    return 200, _detail(_get(incident_id))


@router.post("/incidents/{incident_id}/acknowledge", response={200: IncidentOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut},
             tags=["incidents"], summary="Acknowledge (stops escalation); acknowledging twice is a no-op", auth=ScopedTokenAuth("actions"))
def acknowledge(request, incident_id: str):
    token = require_scope(request, "actions")
    inc = services.incident_acknowledge(incident=_get(incident_id), actor=token)  # InvalidTransition: 409
    return 200, incident_out(inc)


@router.post("/incidents/{incident_id}/resolve", response={200: IncidentOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
             tags=["incidents"], summary="Resolve; resolving twice is a no-op", auth=ScopedTokenAuth("actions"))
def resolve(request, incident_id: str, payload: ResolveIn | None = None):
    token = require_scope(request, "actions")
    inc = services.incident_resolve(incident=_get(incident_id), actor=token, reason=(payload.reason if payload else "")[:500])
    return 200, incident_out(inc)


@router.post("/incidents/{incident_id}/notes", response={201: TimelineOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
             tags=["incidents"], summary="Add a Markdown note to the timeline", auth=ScopedTokenAuth("actions"))
def add_note(request, incident_id: str, payload: NoteIn):
    token = require_scope(request, "actions")
    inc = _get(incident_id)
    if not payload.text.strip():
        raise Invalid("text must not be empty")
    entry = services.incident_note_add(incident=inc, actor=token, text=payload.text)
    return 201, {"at": entry.at, "kind": entry.kind, "actor": entry.actor_label, "text": entry.text, "data": entry.data}


# ---------------------------------------------------------------------------------------------- silences


class SilenceIn(Schema):
    matchers: dict[str, str]
    starts_at: datetime | None = None
    ends_at: datetime
    reason: str


class SilenceOut(Schema):
    id: uuid.UUID
    matchers: dict
    starts_at: datetime
    ends_at: datetime
    reason: str
    expected: str
    created_by: str
    active: bool
    deleted_at: datetime | None


def silence_out(s: Silence) -> dict:
    now = timezone.now()
    return {"id": s.public_id, "matchers": s.matchers, "starts_at": s.starts_at, "ends_at": s.ends_at, "reason": s.reason,
            "expected": s.expected, "created_by": s.created_by, "deleted_at": s.deleted_at,
            "active": s.deleted_at is None and s.starts_at <= now < s.ends_at}


@router.get("/silences", response={200: list[SilenceOut], 401: ErrorOut, 403: ErrorOut}, tags=["silences"],
            summary="Silences not yet ended (active and planned), newest first")
def list_silences(request):
    require_scope(request, "read")
    qs = Silence.objects.filter(deleted_at__isnull=True, ends_at__gt=timezone.now()).order_by("-starts_at", "-id")[:500]
    return 200, [silence_out(s) for s in qs]


@router.post("/silences", response={201: SilenceOut, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut}, tags=["silences"],
             summary="Silence alerts whose labels equal every matcher between starts_at (default now) and ends_at; audited",
             auth=ScopedTokenAuth("actions"))
def create_silence(request, payload: SilenceIn):
    token = require_scope(request, "actions")
    s = silences.silence_create(matchers=payload.matchers, starts_at=payload.starts_at, ends_at=payload.ends_at,
                                reason=payload.reason, actor=token)
    return 201, silence_out(s)


@router.delete("/silences/{silence_id}", response={200: SilenceOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut}, tags=["silences"],
               summary="End a silence now (kept for the record); deleting twice is a no-op", auth=ScopedTokenAuth("actions"))
def delete_silence(request, silence_id: str):
    token = require_scope(request, "actions")
    s = silences.silence_delete(silence=silences.silence_get(silence_id), actor=token)
    return 200, silence_out(s)


# ---------------------------------------------------------------------------------------------- maintenance windows


class MaintenanceWindowIn(Schema):
    environment: str
    starts_at: datetime
    ends_at: datetime | None = None
    duration_minutes: int | None = None
    rrule: str = ""
    matchers: dict[str, str] = {}
    reason: str
    name: str = ""


class MaintenanceWindowOut(Schema):
    id: uuid.UUID
    name: str
    environment: str | None
    matchers: dict
    starts_at: datetime
    duration_minutes: int
    ends_at: datetime
    rrule: str
    reason: str
    created_by: str
    active: bool
    active_until: datetime | None
    next_starts_at: datetime | None


def maintenance_out(w: MaintenanceWindow, *, removed: bool = False) -> dict:
    now = timezone.now()
    until = None if removed else silences.occurrence_at(w, now)
    return {"id": w.public_id, "name": w.name, "environment": w.matchers.get("environment"), "matchers": w.matchers,
            "starts_at": w.starts_at, "duration_minutes": w.duration_minutes, "ends_at": w.starts_at + timedelta(minutes=w.duration_minutes),
            "rrule": w.rrule, "reason": w.reason, "created_by": w.created_by, "active": until is not None, "active_until": until,
            "next_starts_at": None if removed else silences.maintenance_next(w, now)}


@router.get("/maintenance-windows", response={200: list[MaintenanceWindowOut], 401: ErrorOut, 403: ErrorOut}, tags=["silences"],
            summary="Maintenance windows not yet over (in progress, planned or recurring), by first start")
def list_maintenance_windows(request):
    require_scope(request, "read")
    out = []
    for w in MaintenanceWindow.objects.all()[:500]:
        row = maintenance_out(w)
        if row["active"] or row["next_starts_at"] is not None:
            out.append(row)
    return 200, out


@router.post("/maintenance-windows", response={201: MaintenanceWindowOut, 401: ErrorOut, 403: ErrorOut, 422: ErrorOut}, tags=["silences"],
             summary="Plan a maintenance window on an environment: alerts matching environment and matchers during an "
                     "occurrence (starts_at to ends_at, or duration_minutes; repeated by an RFC 5545 rrule) are stored "
                     "and page nobody; audited", auth=ScopedTokenAuth("actions"))
def create_maintenance_window(request, payload: MaintenanceWindowIn):
    token = require_scope(request, "actions")
    w = silences.maintenance_plan(environment=payload.environment, starts_at=payload.starts_at, ends_at=payload.ends_at,
                                  duration_minutes=payload.duration_minutes, rrule=payload.rrule, matchers=payload.matchers,
                                  reason=payload.reason, name=payload.name, actor=token)
    return 201, maintenance_out(w)


@router.delete("/maintenance-windows/{window_id}", response={200: MaintenanceWindowOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut},
               tags=["silences"], summary="Remove a maintenance window: an occurrence in progress ends now; audited",
               auth=ScopedTokenAuth("actions"))
def delete_maintenance_window(request, window_id: str):
    token = require_scope(request, "actions")
    w = silences.maintenance_get(window_id)
    out = maintenance_out(w, removed=True)
    silences.maintenance_delete(window=w, actor=token)
    return 200, out
