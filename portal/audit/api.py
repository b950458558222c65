from datetime import datetime

from ninja import Router, Schema

from portal.api_auth import require_scope
from portal.audit.selectors import audit_events

router = Router()


class AuditEventOut(Schema):
    id: int
    created_at: datetime
    actor: str
    verb: str
    target_type: str
    target_id: str
    before: dict | list | None
    after: dict | list | None
    extra: dict
    result: str
    remote_addr: str
    request_id: str


class AuditPage(Schema):
    count: int
    results: list[AuditEventOut]


@router.get("", response=AuditPage, summary="List audit events, newest first")
def list_audit(request, verb: str = "", actor: str = "", target_type: str = "", target_id: str = "", limit: int = 100, offset: int = 0):
    require_scope(request, "lead")
    limit = max(1, min(limit, 500))
    offset = max(0, offset)
    qs = audit_events(verb=verb, actor=actor, target_type=target_type, target_id=target_id)
    rows = qs[offset : offset + limit]
    return {
        "count": qs.count(),
        "results": [
            {
                "id": e.id, "created_at": e.created_at, "actor": e.actor_label, "verb": e.verb,
                "target_type": e.target_type, "target_id": e.target_id, "before": e.before, "after": e.after,
                "extra": e.extra, "result": e.result, "remote_addr": e.remote_addr, "request_id": e.request_id,
            }
            for e in rows
        ],
    }
