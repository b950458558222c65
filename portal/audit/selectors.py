from __future__ import annotations

from django.db.models import QuerySet

from portal.audit.models import AuditEvent


def audit_events(*, verb: str = "", actor: str = "", target_type: str = "", target_id: str = "", result: str = "") -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    if verb:
        qs = qs.filter(verb__startswith=verb)
    if actor:
        qs = qs.filter(actor_label__icontains=actor)
    if target_type:
        qs = qs.filter(target_type=target_type)
    if target_id:
        qs = qs.filter(target_id=target_id)
    if result:
        qs = qs.filter(result=result)
    return qs
