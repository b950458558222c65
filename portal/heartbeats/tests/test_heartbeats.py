"""Heartbeats: a missed ping opens an incident after period plus grace, the next ping resolves it;
paused ones open nothing; a wrong token changes nothing; the backups verification shows the job's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.heartbeats import services, tasks
from portal.heartbeats.models import BACKUP_SLUG, PORTAL_BEAT_SLUG, Heartbeat
from portal.heartbeats.seed import seed
from portal.incidents.models import Incident

pytestmark = pytest.mark.django_db


def _incidents(slug: str):
    return Incident.objects.filter(grouping_key=f"internal:heartbeat:{slug}")


@pytest.fixture
def created(api_client, make_token):
    r = api_client.post("/api/v1/heartbeats", {"name": "Nightly export", "period_seconds": 3600, "grace_seconds": 600},
                        token=make_token("lead"))
    assert r.status_code == 201, r.content
    return r.json()


def test_create_answers_slug_and_ping_url_and_stores_the_token_hashed(created):
    assert created["slug"] == "nightly-export"
    token = created["ping_token"]
    assert created["ping_url"].endswith(f"/api/v1/heartbeats/nightly-export/ping/{token}")
    heartbeat = Heartbeat.objects.get(slug="nightly-export")
    assert token not in heartbeat.token_hash and len(heartbeat.token_hash) == 64
    assert AuditEvent.objects.filter(verb="heartbeat.create").count() == 1


def test_a_heartbeat_that_stops_pinging_opens_an_incident_after_period_plus_grace_and_a_ping_resolves_it(created, api_client):
    slug, token = created["slug"], created["ping_token"]
    r = api_client.post(f"/api/v1/heartbeats/{slug}/ping", token=token)  # Authorization: Bearer <ping token>
    assert r.status_code == 200 and r.json()["status"] == "up", r.content
    pinged = Heartbeat.objects.get(slug=slug).last_ping_at

    assert tasks.check_heartbeats((pinged + timedelta(seconds=3600 + 599)).isoformat()) == []
    assert not _incidents(slug).exists()
    assert tasks.check_heartbeats((pinged + timedelta(seconds=3600 + 601)).isoformat()) == [slug]
    incident = _incidents(slug).get()
    assert incident.status == Incident.Status.TRIGGERED and incident.severity == "critical"
    assert Heartbeat.objects.get(slug=slug).status == Heartbeat.Status.DOWN
    # A second check (or a redelivery) flips nothing and opens nothing more.
    assert tasks.check_heartbeats((pinged + timedelta(seconds=7200)).isoformat()) == []
    assert _incidents(slug).count() == 1

    r = api_client.get(f"/api/v1/heartbeats/{slug}/ping/{token}")  # the cron curl form
    assert r.status_code == 200 and r.json()["status"] == "up"
    incident.refresh_from_db()
    assert incident.status == Incident.Status.RESOLVED
    assert Heartbeat.objects.get(slug=slug).status == Heartbeat.Status.UP


def test_a_paused_heartbeat_opens_nothing(created, api_client, lead):
    slug, token = created["slug"], created["ping_token"]
    assert api_client.post(f"/api/v1/heartbeats/{slug}/ping/{token}").status_code == 200
    services.heartbeat_pause(heartbeat=Heartbeat.objects.get(slug=slug), reason="planned migration", actor=lead)
    assert AuditEvent.objects.filter(verb="heartbeat.pause").count() == 1
    later = timezone.now() + timedelta(days=2)
    assert services.heartbeats_check(now=later) == []
    assert not _incidents(slug).exists()
    heartbeat = services.heartbeat_resume(heartbeat=Heartbeat.objects.get(slug=slug), actor=lead, now=later)
    assert heartbeat.status == Heartbeat.Status.UP and heartbeat.alert_after == later + timedelta(seconds=4200)
    assert AuditEvent.objects.filter(verb="heartbeat.resume").count() == 1


def test_pausing_a_down_heartbeat_resolves_its_incident(created, api_client, lead):
    slug, token = created["slug"], created["ping_token"]
    api_client.post(f"/api/v1/heartbeats/{slug}/ping/{token}")
    assert services.heartbeats_check(now=timezone.now() + timedelta(hours=2)) == [slug]
    services.heartbeat_pause(heartbeat=Heartbeat.objects.get(slug=slug), actor=lead)
    assert _incidents(slug).get().status == Incident.Status.RESOLVED


def test_a_new_heartbeat_that_never_pinged_opens_nothing(created):
    assert services.heartbeats_check(now=timezone.now() + timedelta(days=3)) == []
    assert not _incidents(created["slug"]).exists()


def test_a_wrong_ping_token_changes_nothing(created, api_client, make_token):
    slug = created["slug"]
    before = Heartbeat.objects.get(slug=slug)
    audits = AuditEvent.objects.count()
    for r in (
        api_client.post(f"/api/v1/heartbeats/{slug}/ping", token="hb_wrong"),
        api_client.post(f"/api/v1/heartbeats/{slug}/ping"),
        api_client.post(f"/api/v1/heartbeats/{slug}/ping", token=make_token("lead")),  # a portal token is no ping token
        api_client.get(f"/api/v1/heartbeats/{slug}/ping/hb_wrong"),
        api_client.post(f"/api/v1/heartbeats/no-such/ping/{created['ping_token']}"),
    ):
        assert r.status_code == 401 and r.json()["error"] == "bad_ping_token", r.content
    after = Heartbeat.objects.get(slug=slug)
    assert (after.status, after.last_ping_at, after.ping_count) == (before.status, None, 0)
    assert AuditEvent.objects.count() == audits + 1  # the lead token made above


def test_create_needs_the_lead_scope_and_valid_numbers(api_client, make_token):
    body = {"name": "x", "period_seconds": 60, "grace_seconds": 0}
    assert api_client.post("/api/v1/heartbeats", body, token=make_token("actions")).status_code == 403
    r = api_client.post("/api/v1/heartbeats", {**body, "period_seconds": 0}, token=make_token("lead"))
    assert r.status_code == 422
    assert not Heartbeat.objects.exists()


def test_seed_and_the_portal_beat_pings_itself_through_the_service():
    seed({}, reset=False)
    seed({}, reset=False)  # idempotent
    assert set(Heartbeat.objects.values_list("slug", flat=True)) == {"alertmanager-watchdog", BACKUP_SLUG, PORTAL_BEAT_SLUG}
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.filter(task="portal.heartbeats.tasks.check_heartbeats").count() == 1
    assert tasks.ping_portal_beat() is True
    assert Heartbeat.objects.get(slug=PORTAL_BEAT_SLUG).status == Heartbeat.Status.UP


def test_page_lists_heartbeats_and_pause_is_audited(client, responder, viewer):
    seed({}, reset=False)
    client.force_login(viewer)
    body = client.get("/heartbeats/").content.decode()
    assert "Database backup job" in body and "Portal beat" in body
    assert client.post(f"/heartbeats/{BACKUP_SLUG}/pause/").status_code == 403
    client.force_login(responder)
    assert client.post(f"/heartbeats/{BACKUP_SLUG}/pause/", {"reason": "restore drill"}).status_code == 302
    assert Heartbeat.objects.get(slug=BACKUP_SLUG).status == Heartbeat.Status.PAUSED
    assert AuditEvent.objects.filter(verb="heartbeat.pause", actor_label=responder.username).count() == 1
