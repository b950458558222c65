import pytest
from django.core import mail

from portal.incidents import escalation, ingest, services
from portal.incidents.models import Incident, RejectedDelivery
from portal.incidents.seed import seed
from portal.plan.loader import load_plan


@pytest.fixture
def seeded(db):
    seed(load_plan(), reset=False)


def open_incident(name="HighErrorRate", severity="critical", fp="e1"):
    return ingest.alert_ingest_internal(source="health", fingerprint=fp, name=name, severity=severity, firing=True,
                                          summary="5xx above 5%", labels={"service": "api"}).incident


def test_seed_is_idempotent_and_maps_runbooks(seeded):
    from django_celery_beat.models import PeriodicTask

    stats = seed(load_plan(), reset=False)
    assert stats.created == 0
    assert PeriodicTask.objects.filter(task="portal.incidents.tasks.check_escalations").count() == 1
    assert ingest.runbook_for("HighErrorRate", {}) == "high-error-rate"
    assert ingest.runbook_for("APIHighLatency", {}) == "slow-performance"
    assert ingest.runbook_for("RDSConnectionsHigh", {}) == "database-issues"


def test_list_detail_panel_for_a_viewer_without_buttons(client, viewer, seeded):
    inc = open_incident()
    client.force_login(viewer)
    body = client.get("/incidents/").content.decode()
    assert inc.title in body and "Response times" in body
    body = client.get(inc.get_absolute_url()).content.decode()
    assert "/runbooks/high-error-rate/" in body
    assert "Acknowledge</button>" not in body and "Start runbook" not in body and 'id="note-form"' not in body
    panel = client.get("/incidents/panel/").content.decode()
    assert "<html" not in panel and inc.title in panel
    for action in ("acknowledge", "resolve", "notes", "assign"):
        r = client.post(f"{inc.get_absolute_url()}{action}/", {"text": "x"})
        assert r.status_code == 403, action
    inc.refresh_from_db()
    assert inc.status == "triggered" and not inc.timeline.filter(kind="note").exists()


def test_responder_acknowledges_notes_and_resolves(client, responder, seeded):
    inc = open_incident()
    client.force_login(responder)
    body = client.get(inc.get_absolute_url()).content.decode()
    assert "Acknowledge</button>" in body and "data-confirm" in body and 'action="/runbooks/high-error-rate/start/?incident=' in body
    assert client.post(f"{inc.get_absolute_url()}acknowledge/").status_code == 302
    assert client.post(f"{inc.get_absolute_url()}acknowledge/").status_code == 302  # twice is fine
    client.post(f"{inc.get_absolute_url()}notes/", {"text": "Rolled back **green**"})
    client.post(f"{inc.get_absolute_url()}assign/", {"assignee": responder.username})
    client.post(f"{inc.get_absolute_url()}resolve/", {"reason": "rolled back"})
    inc.refresh_from_db()
    assert inc.status == "resolved" and inc.acknowledged_by == responder.username and inc.assignee == responder
    body = client.get(inc.get_absolute_url()).content.decode()
    assert "<strong>green</strong>" in body
    md = client.get(f"{inc.get_absolute_url()}export.md").content.decode()
    assert "# Incident:" in md and "Rolled back **green**" in md


def test_rejected_page_is_for_leads(client, lead, responder, db):
    RejectedDelivery.objects.create(source="alertmanager", reason="malformed_json", detail="bad")
    client.force_login(responder)
    assert client.get("/incidents/rejected/").status_code == 403
    client.force_login(lead)
    assert "malformed_json" in client.get("/incidents/rejected/").content.decode()


def test_list_filters_and_query_count(client, viewer, seeded, django_assert_max_num_queries):
    for i in range(15):
        open_incident(name=f"Alert{i}", severity="warning" if i % 2 else "critical", fp=f"f{i}")
    client.force_login(viewer)
    with django_assert_max_num_queries(20):
        r = client.get("/incidents/?severity=critical&partial=rows", headers={"HX-Request": "true"})
    body = r.content.decode()
    assert "Alert0" in body and "Alert1:" not in body and "<html" not in body


@pytest.mark.django_db(transaction=True)
def test_escalation_with_controlled_time(seeded, responder):
    from datetime import timedelta

    from django.utils import timezone

    t0 = timezone.now()
    inc = open_incident()  # level 1 is paged at once (on commit)
    inc.refresh_from_db()
    assert inc.escalation_level == 1
    assert [m.to for m in mail.outbox] == [["oncall@localhost"]]
    assert inc.timeline.filter(kind="notification", text__contains="on-call email").exists()
    assert escalation.escalations_due(now=t0 + timedelta(minutes=4)) == []
    assert len(mail.outbox) == 1
    escalation.escalations_due(now=t0 + timedelta(minutes=5, seconds=1))
    inc.refresh_from_db()
    assert inc.escalation_level == 2 and mail.outbox[-1].to == ["leads@localhost"]

    other = open_incident(name="DatabaseDown", fp="db")
    services.incident_acknowledge(incident=other, actor=responder)
    sent = len(mail.outbox)
    escalation.escalations_due(now=t0 + timedelta(hours=2))
    other.refresh_from_db()
    # The unacknowledged one repeats from level 1 (one more mail); the acknowledged one pages nobody.
    assert other.escalation_level == 1 and len(mail.outbox) == sent + 1
    assert Incident.objects.get(pk=inc.pk).escalation_round == 1
    assert not Incident.objects.get(pk=other.pk).notifications.filter(level=2).exists()


@pytest.mark.django_db(transaction=True)
def test_page_created_before_ack_is_not_sent_after_it(seeded, responder, monkeypatch):
    from portal.incidents import tasks
    from portal.incidents.models import Notification

    monkeypatch.setattr(tasks.send_notification, "apply_async", lambda *a, **kw: None)  # the worker is slow
    inc = open_incident()
    assert Notification.objects.filter(incident=inc, status="pending").count() == 1
    services.incident_acknowledge(incident=inc, actor=responder)
    n = Notification.objects.get(incident=inc)
    assert escalation.notification_send(notification_id=n.pk) == "skipped"
    n.refresh_from_db()
    assert n.status == "cancelled" and mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_failed_channel_is_recorded(seeded, settings):
    from portal.incidents.models import EscalationLevel, Notification, NotificationChannel
    from portal.incidents.tests.test_api import sandbox_may_reach_local_servers

    sandbox_may_reach_local_servers()
    ch = NotificationChannel.objects.create(name="broken hook", kind="slack", webhook_url="http://127.0.0.1:1/hook")
    EscalationLevel.objects.get(policy__severity="critical", number=1).channels.add(ch)
    inc = open_incident()
    n = Notification.objects.get(incident=inc, channel=ch)
    assert n.status == "failed" and n.error == "ConnectionError to 127.0.0.1"
    assert inc.timeline.filter(kind="notification", text__startswith="Failed to notify broken hook").exists()
    stored = NotificationChannel.objects.filter(pk=ch.pk).values_list("webhook_url", flat=True).get()
    assert stored == "http://127.0.0.1:1/hook"
    from django.db import connection

    with connection.cursor() as c:
        c.execute("SELECT webhook_url FROM incidents_notificationchannel WHERE id = %s", [ch.pk])
        assert c.fetchone()[0].startswith("enc:")


@pytest.mark.django_db(transaction=True)
def test_manual_escalation_pages_the_next_level_now(seeded, responder):
    inc = open_incident()  # level 1 paged at once
    before = len(mail.outbox)
    result = escalation.incident_escalate_now(incident=inc, actor=responder, reason="need a DBA")
    assert result.level == 2 and mail.outbox[-1].to == ["leads@localhost"] and len(mail.outbox) == before + 1
    assert inc.timeline.filter(kind="escalation", text__contains="need a DBA").exists()
    services.incident_acknowledge(incident=inc, actor=responder)
    assert escalation.incident_escalate_now(incident=inc, actor=responder).level == 0  # acknowledged: nobody paged
    assert len(mail.outbox) == before + 1
    services.incident_resolve(incident=inc, actor=responder)
    with pytest.raises(services.InvalidTransition):
        escalation.incident_escalate_now(incident=inc, actor=responder)


def test_the_list_works_out_eight_weeks_of_figures_once_a_minute_not_per_request(client, viewer, seeded, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    open_incident()
    client.force_login(viewer)
    client.get("/incidents/")

    def eight_week_reads():
        with CaptureQueriesContext(connection) as ctx:
            body = client.get("/incidents/").content.decode()
        return sum('"opened_at" >=' in q["sql"] and '"acknowledged_at"' in q["sql"] for q in ctx.captured_queries), body

    reads, body = eight_week_reads()
    assert reads == 0 and 'id="figures-as-of"' in body  # the minute-old figures, and the page says as of when
    open_incident(name="DiskFull", fp="d1")
    import time
    import types

    later = time.time() + 61  # a minute on, as the cache's clock sees it
    monkeypatch.setattr("django.core.cache.backends.locmem.time", types.SimpleNamespace(time=lambda: later))
    reads, body = eight_week_reads()
    assert reads == 1
    assert body.count('class="badge sev-critical"') >= 1 and "<td>2</td>" in body  # both incidents counted now


@pytest.mark.django_db(transaction=True)
def test_a_stale_dashboard_row_is_served_at_once_and_worked_out_again_off_the_request(client, viewer, monkeypatch):
    import threading
    import time as _time

    from django.core.cache import cache

    from portal.incidents import views

    seed(load_plan(), reset=False)
    inc = open_incident()
    client.force_login(viewer)
    calls = []
    real = views._panel_row_compute

    def counted(incident, weights):
        calls.append(threading.current_thread().name)
        return real(incident, weights)

    monkeypatch.setattr(views, "_panel_row_compute", counted)
    assert inc.title in client.get("/incidents/panel/").content.decode()
    assert calls == ["MainThread"]  # the first time, on the request
    key = f"incidents:panel_row:{inc.pk}:{inc.status}"
    row, _ = cache.get(key)
    cache.set(key, (row, _time.time() - views.PANEL_FRESH - 1), views.PANEL_STALE_MAX)  # now stale
    assert inc.title in client.get("/incidents/panel/").content.decode()  # served from the stale row
    assert calls[1:2] != ["MainThread"]
    for _ in range(600):  # until the refresher has worked it out again
        if cache.get(key)[1] > _time.time() - views.PANEL_FRESH:
            break
        _time.sleep(0.05)
    assert cache.get(key)[1] > _time.time() - views.PANEL_FRESH
    assert calls[1].startswith("panel-refresh")
