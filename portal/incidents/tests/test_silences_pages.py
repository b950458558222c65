"""The silences API and pages, the banner, and the grouping rules page's preview."""

from __future__ import annotations

import datetime as dt

from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.incidents import ingest
from portal.incidents.models import GroupingRule, Silence


def test_silences_api_create_list_delete_audited(api_client, make_token, db):
    act, read = make_token("actions"), make_token("read")
    ends = (timezone.now() + dt.timedelta(hours=1)).isoformat()
    r = api_client.post("/api/v1/silences", {"matchers": {"environment": "production", "metric": "error_rate"}, "ends_at": ends,
                                             "reason": "load test"}, token=act)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["active"] is True and body["matchers"] == {"environment": "production", "metric": "error_rate"}
    assert AuditEvent.objects.filter(verb="silence.create").count() == 1
    listed = api_client.get("/api/v1/silences", token=read).json()
    assert [s["id"] for s in listed] == [body["id"]]
    assert api_client.post("/api/v1/silences", {"matchers": {}, "ends_at": ends, "reason": "x"}, token=act).status_code == 422
    assert api_client.post("/api/v1/silences", {"matchers": {"a": "b"}, "ends_at": "2020-01-01T00:00:00Z", "reason": "x"},
                           token=act).status_code == 422
    assert api_client.post("/api/v1/silences", {"matchers": {"a": "b\u0000"}, "ends_at": ends, "reason": "x"}, token=act).status_code == 422
    r = api_client.c.delete(f"/api/v1/silences/{body['id']}", headers={"Authorization": f"Bearer {act}"})
    assert r.status_code == 200 and r.json()["active"] is False
    assert api_client.c.delete(f"/api/v1/silences/{body['id']}", headers={"Authorization": f"Bearer {act}"}).status_code == 200
    assert AuditEvent.objects.filter(verb="silence.delete").count() == 1
    assert api_client.get("/api/v1/silences", token=read).json() == []
    assert api_client.c.delete("/api/v1/silences/nope", headers={"Authorization": f"Bearer {act}"}).status_code == 404


def test_a_responder_silences_on_the_page_and_the_banner_shows_it(client, responder):
    client.force_login(responder)
    r = client.post("/incidents/silences/new/", {"matchers": "environment=staging, metric=cpu", "minutes": "30", "reason": "resize"})
    assert r.status_code == 302
    silence = Silence.objects.get()
    assert silence.matchers == {"environment": "staging", "metric": "cpu"} and silence.created_by == responder.username
    assert AuditEvent.objects.filter(verb="silence.create").exists()
    banner = client.get("/incidents/silences/banner/").content.decode()
    assert "1 silence active" in banner and "metric=cpu" in banner and "resize" in banner
    page = client.get("/incidents/silences/").content.decode()
    assert "resize" in page
    client.post(f"/incidents/silences/{silence.public_id}/delete/")
    assert 'data-testid="silence-banner"' not in client.get("/incidents/silences/banner/").content.decode()


def test_a_maintenance_window_planned_on_the_page(client, responder):
    client.force_login(responder)
    start = (timezone.now() - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    r = client.post("/incidents/maintenance/new/", {"name": "Patch night", "matchers": "environment=staging", "starts_at": start,
                                                     "minutes": "60", "rrule": "FREQ=WEEKLY", "reason": "OS patches"})
    assert r.status_code == 302
    assert "Maintenance: Patch night" in client.get("/incidents/silences/banner/").content.decode()


def test_grouping_page_previews_before_saving_and_only_leads_edit(client, lead, responder):
    for severity in ("warning", "critical"):
        ingest.alert_ingest_internal(source="health", fingerprint=f"check:{severity}", name=f"Error rate {severity}", severity=severity,
                                     firing=True, summary="", labels={"metric": "error_rate", "environment": "x"})
    rule = GroupingRule.objects.get(slug="same-condition")
    client.force_login(responder)
    assert client.post("/incidents/grouping/", {"slug": rule.slug, "name": "x", "labels": "environment", "action": "save"}).status_code == 403
    client.force_login(lead)
    r = client.post("/incidents/grouping/", {"slug": rule.slug, "name": rule.name, "labels": "environment, metric, severity",
                                             "optional_labels": "", "window_minutes": "30", "priority": "100", "enabled": "on",
                                             "action": "preview"})
    assert r.status_code == 200
    assert "this rule would have made 2 incidents instead of 1" in r.content.decode()
    rule.refresh_from_db()
    assert rule.labels == ["environment", "metric", "colour"]  # a preview saves nothing
    r = client.post("/incidents/grouping/", {"slug": rule.slug, "name": rule.name, "labels": "environment, metric",
                                             "window_minutes": "20", "priority": "100", "enabled": "on", "action": "save"})
    assert r.status_code == 302
    rule.refresh_from_db()
    assert rule.labels == ["environment", "metric"] and rule.window_minutes == 20
    assert AuditEvent.objects.filter(verb="grouping_rule.save").count() == 1
