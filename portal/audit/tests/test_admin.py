"""Admin-site edits: incidents are read-only there; configuration edits write audit rows."""

from __future__ import annotations

import pytest

from portal.audit.models import AuditEvent
from portal.incidents.models import Incident, NotificationChannel


@pytest.fixture
def superuser_client(client, django_user_model):
    su = django_user_model.objects.create_superuser("root-audit", "root@example.com", "root-password-1")
    client.force_login(su)
    client.user = su
    return client


@pytest.fixture
def incident(db):
    from portal.incidents.ingest import alert_ingest_internal

    alert = alert_ingest_internal(source="test", fingerprint="fp-admin", name="DiskFull", severity="critical", firing=True,
                                  summary="disk full", labels={"host": "a"})
    return alert.incident


def test_admin_cannot_change_or_delete_an_incident(superuser_client, incident):
    url = f"/admin/incidents/incident/{incident.pk}/change/"
    page = superuser_client.get(url)
    assert page.status_code == 200 and b'name="_save"' not in page.content  # view only
    r = superuser_client.post(url, {"title": "nothing happened", "status": "resolved", "severity": "info"})
    assert r.status_code == 403
    assert superuser_client.post(f"/admin/incidents/incident/{incident.pk}/delete/", {"post": "yes"}).status_code == 403
    incident.refresh_from_db()
    assert incident.status != "resolved" and incident.title != "nothing happened"
    assert Incident.objects.filter(pk=incident.pk).exists()


def test_admin_edit_of_a_channel_writes_an_audit_row_without_the_secret(superuser_client):
    channel = NotificationChannel.objects.create(name="ops-slack", kind="slack", webhook_url="https://hooks.example.com/T0/B0/old")
    r = superuser_client.post(f"/admin/incidents/notificationchannel/{channel.pk}/change/", {
        "name": "ops-slack", "kind": "slack", "target": "", "webhook_url": "https://hooks.example.com/T0/B0/new-secret",
        "seeded_hash": ""})  # "enabled" unticked: the channel is switched off
    assert r.status_code == 302, r.content[-1500:]
    row = AuditEvent.objects.get(verb="admin.incidents.notificationchannel.change")
    assert row.actor == superuser_client.user and row.target_id == str(channel.pk)
    assert row.before == {"enabled": True} and row.after == {"enabled": False}
    text = str(row.before) + str(row.after) + str(row.extra)
    assert "hooks.example.com" not in text


def test_admin_delete_of_a_channel_is_audited(superuser_client):
    channel = NotificationChannel.objects.create(name="ops-mail", kind="email", target="ops@example.com")
    r = superuser_client.post(f"/admin/incidents/notificationchannel/{channel.pk}/delete/", {"post": "yes"})
    assert r.status_code == 302
    row = AuditEvent.objects.get(verb="admin.incidents.notificationchannel.delete")
    assert row.before["target"] == "ops@example.com"


def test_audit_log_is_read_only_in_the_admin(superuser_client):
    event = AuditEvent.objects.create(actor_label="system:test", verb="test.admin")
    assert superuser_client.get(f"/admin/audit/auditevent/{event.pk}/change/").status_code == 200
    assert superuser_client.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
