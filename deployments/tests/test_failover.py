"""RDS failover: leads only, with a reason, audited."""

from __future__ import annotations

from deployments import errors, services
from portal.audit.models import AuditEvent


def test_rds_failover_is_for_leads(aws_platform, client, responder, lead):
    client.force_login(responder)
    assert client.post("/deployments/rds-failover/", {"environment": "sandbox", "reason": "primary slow"}).status_code == 403
    try:
        services.rds_failover(environment=aws_platform, actor=responder, reason="x")
        raise AssertionError("a responder failed the database over")
    except errors.NeedsApproval:
        pass
    client.force_login(lead)
    r = client.post("/deployments/rds-failover/", {"environment": "sandbox", "reason": ""}, follow=True)
    assert b"reason is required" in r.content
    r = client.post("/deployments/rds-failover/", {"environment": "sandbox", "reason": "primary slow"}, follow=True)
    assert b"Failover to the standby requested" in r.content, r.content[-2000:]
    event = AuditEvent.objects.get(verb="environment.rds_failover")
    assert event.actor == lead and event.extra["reason"] == "primary slow"
