"""Bulk acknowledge and resolve: an alert storm of 40 incidents, each audited on its own, a result per id."""

from __future__ import annotations

import uuid

import pytest

from portal.audit.models import AuditEvent
from portal.errors import Invalid
from portal.incidents import bulk, ingest, services
from portal.incidents.models import Incident


def storm(n: int) -> list[Incident]:
    return [ingest.alert_ingest_internal(source="health", fingerprint=f"storm-{i}", name=f"Storm{i}", severity="warning",
                                         firing=True, summary="storm", labels={"service": f"svc{i}"}).incident
            for i in range(n)]


def test_bulk_acknowledge_of_40_incidents_writes_40_audit_rows(db, responder):
    incidents = storm(40)
    before = AuditEvent.objects.filter(verb="incident.acknowledge").count()
    results = bulk.incident_bulk(action="acknowledge", ids=[str(i.public_id) for i in incidents], actor=responder)
    assert [r["result"] for r in results] == ["done"] * 40
    assert AuditEvent.objects.filter(verb="incident.acknowledge").count() - before == 40
    assert Incident.objects.filter(status="acknowledged", acknowledged_by=responder.username).count() == 40


def test_bulk_answers_done_already_not_allowed_not_found(db, responder):
    a, b, c = storm(3)
    services.incident_acknowledge(incident=b, actor=responder)
    services.incident_resolve(incident=c, actor=responder)
    missing = str(uuid.uuid4())
    results = bulk.incident_bulk(action="acknowledge", ids=[str(a.public_id), str(b.public_id), str(c.public_id),
                                                                missing, "not-a-uuid", str(a.public_id)], actor=responder)
    assert [(r["id"], r["result"]) for r in results] == [
        (str(a.public_id), "done"), (str(b.public_id), "already"), (str(c.public_id), "not_allowed"),
        (missing, "not_found"), ("not-a-uuid", "not_found")]
    resolved = bulk.incident_bulk(action="resolve", ids=[str(a.public_id), str(c.public_id)], actor=responder)
    assert [r["result"] for r in resolved] == ["done", "already"]
    with pytest.raises(Invalid):
        bulk.incident_bulk(action="reopen", ids=[], actor=responder)


def test_bulk_api_needs_actions_and_answers_per_id(api_client, make_token, db):
    a, b = storm(2)
    read, act = make_token("read"), make_token("actions")
    body = {"action": "resolve", "ids": [str(a.public_id), str(b.public_id)]}
    assert api_client.post("/api/v1/incidents/bulk", body, token=read).status_code == 403
    r = api_client.post("/api/v1/incidents/bulk", body, token=act)
    assert r.status_code == 200, r.content
    assert [x["result"] for x in r.json()["results"]] == ["done", "done"]
    assert AuditEvent.objects.filter(verb="incident.resolve").count() == 2
    assert api_client.post("/api/v1/incidents/bulk", {"action": "nope", "ids": []}, token=act).status_code == 422


def test_bulk_page_for_responders_only(client, viewer, responder, db):
    a, b = storm(2)
    client.force_login(viewer)
    assert client.post("/incidents/bulk/", {"action": "acknowledge", "ids": [str(a.public_id)]}).status_code == 403
    assert b'id="bulk-form"' not in client.get("/incidents/").content
    client.force_login(responder)
    assert b'id="bulk-form"' in client.get("/incidents/").content
    r = client.post("/incidents/bulk/", {"action": "acknowledge", "ids": [str(a.public_id), str(b.public_id)]}, follow=True)
    assert b"Acknowledged 2 of 2 incidents" in r.content
    assert Incident.objects.filter(status="acknowledged").count() == 2
