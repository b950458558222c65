"""Health pages, panels and API by role; the seeder."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.health import maintenance, services
from portal.health.models import Check, Slo, ThresholdRule
from portal.health.runners import Outcome
from portal.health.seed import seed
from portal.plan.loader import load_plan


@pytest.fixture
def seeded(db):
    seed(load_plan(), reset=False)


def login(client, user):
    client.force_login(user)
    return client


def test_seed_loads_rules_slos_services_and_beat_rows_idempotently(seeded):
    from django_celery_beat.models import PeriodicTask

    assert ThresholdRule.objects.count() == 9
    crit = ThresholdRule.objects.get(slug="error-rate-critical")
    assert (crit.metric, crit.comparison, crit.value, crit.severity, crit.window_minutes) == ("error_rate", "gt", 5.0, "critical", 5)
    assert ThresholdRule.objects.get(slug="cache-hit-ratio-warning").comparison == "lt"
    assert set(Slo.objects.values_list("slug", flat=True)) == {"page-load-p95", "api-p50", "api-p95", "job-posting", "uptime", "error-rate"}
    services_ = {c.slug: c for c in Check.objects.filter(group="external")}
    assert set(services_) == {"service-openai", "service-twilio", "service-sendgrid", "service-stripe", "service-trueway"}
    assert services_["service-openai"].kind == "statuspage"
    assert services_["service-openai"].config["url"] == "https://status.openai.com/api/v2/status.json"
    assert services_["service-stripe"].kind == "http"
    poll = PeriodicTask.objects.get(name="health: poll due checks")
    assert poll.queue == "polling" and poll.interval.every == 5
    stats = seed(load_plan(), reset=False)
    assert stats.created == 0
    assert PeriodicTask.objects.filter(name__startswith="health:").count() == 4


def test_seeder_keeps_an_operator_edit(seeded, lead):
    rule = ThresholdRule.objects.get(slug="cpu-warning")
    services.threshold_rule_update(rule=rule, actor=lead, value=85, window_minutes=10, severity="warning")
    seed(load_plan(), reset=False)
    rule.refresh_from_db()
    assert (rule.value, rule.window_minutes) == (85.0, 10)


def test_grid_shows_every_check_to_a_viewer(client, viewer, seeded):
    check = Check.objects.get(slug="service-twilio")
    services.check_record_result(check_id=check.pk, outcome=Outcome(False, "DNS lookup failed for status.twilio.com (unreachable from here)"),
                                 started_at=timezone.now())
    maintenance.rollups_refresh()
    login(client, viewer)
    resp = client.get("/health/")
    assert resp.status_code == 200
    body = resp.content.decode()
    for name in ("OpenAI API", "Twilio", "SendGrid", "Stripe", "Trueway API"):
        assert name in body
    assert "DNS lookup failed for status.twilio.com" in body
    assert "<svg class=\"spark\"" in body
    assert "style=" not in body and "<script>" not in body
    assert "Service level objectives" in body


def test_grid_query_count_does_not_grow_with_checks(client, viewer, seeded):
    login(client, viewer)
    with CaptureQueriesContext(connection) as few:
        client.get("/health/grid/")
    for i in range(20):
        c = Check.objects.create(slug=f"extra-{i}", name=f"Extra {i}", kind="http", group="external", config={"url": "http://127.0.0.1:1/"})
        services.check_record_result(check_id=c.pk, outcome=Outcome(True, "ok", 5.0), started_at=timezone.now())
    maintenance.rollups_refresh()
    with CaptureQueriesContext(connection) as many:
        resp = client.get("/health/grid/")
    assert resp.status_code == 200 and "Extra 19" in resp.content.decode()
    assert len(many) <= len(few) + 1


def test_pages_need_a_login(client, seeded):
    resp = client.get("/health/")
    assert resp.status_code == 302 and "/accounts/login/" in resp["Location"]
    resp = client.get("/health/panel/", headers={"HX-Request": "true"})
    assert resp.status_code == 401


def test_check_page_and_run_now_by_role(client, viewer, responder, seeded):
    check = Check.objects.get(slug="service-openai")
    login(client, viewer)
    page = client.get(f"/health/checks/{check.slug}/")
    assert page.status_code == 200
    assert "Run now" not in page.content.decode()
    assert client.post(f"/health/checks/{check.slug}/run/").status_code == 403
    login(client, responder)
    page = client.get(f"/health/checks/{check.slug}/")
    assert "Run now" in page.content.decode() and 'data-confirm="Run OpenAI API' in page.content.decode()
    resp = client.post(f"/health/checks/{check.slug}/run/")
    assert resp.status_code == 302
    check.refresh_from_db()
    assert check.next_due_at is not None and check.next_due_at <= timezone.now()
    assert AuditEvent.objects.filter(verb="health.check.run_now", target_id=check.slug, actor=responder).exists()
    assert client.get("/health/checks/no-such-check/").status_code == 404


def test_disable_is_audited_and_safe_twice(client, responder, seeded):
    check = Check.objects.get(slug="service-stripe")
    login(client, responder)
    for _ in range(2):
        assert client.post(f"/health/checks/{check.slug}/enabled/", {"enabled": "false"}).status_code == 302
    check.refresh_from_db()
    assert not check.enabled
    verbs = list(AuditEvent.objects.filter(verb="health.check.disable").values_list("result", flat=True))
    assert sorted(verbs) == ["noop", "ok"]


def test_threshold_edit_needs_a_lead_and_validates(client, responder, lead, seeded):
    rule = ThresholdRule.objects.get(slug="p95-critical")
    login(client, responder)
    assert "<input" not in client.get("/health/thresholds/").content.decode().split("rules-table")[1]
    assert client.post(f"/health/thresholds/{rule.slug}/", {"value": "3", "window_minutes": "5", "severity": "critical", "enabled": "on"}).status_code == 403
    login(client, lead)
    resp = client.post(f"/health/thresholds/{rule.slug}/", {"value": "abc", "window_minutes": "5", "severity": "critical"}, follow=True)
    assert "must be a number" in resp.content.decode()
    resp = client.post(f"/health/thresholds/{rule.slug}/", {"value": "3", "window_minutes": "0", "severity": "critical", "enabled": "on"}, follow=True)
    assert "between 1 and 1440" in resp.content.decode()
    rule.refresh_from_db()
    assert rule.value == 2.0
    resp = client.post(f"/health/thresholds/{rule.slug}/", {"value": "3", "window_minutes": "10", "severity": "critical", "enabled": "on"})
    assert resp.status_code == 302
    rule.refresh_from_db()
    assert (rule.value, rule.window_minutes) == (3.0, 10)
    ev = AuditEvent.objects.get(verb="health.threshold.update", result="ok")
    assert ev.before["value"] == 2.0 and ev.after["value"] == 3.0


def test_panels_render_fragments(client, viewer, seeded):
    login(client, viewer)
    panel = client.get("/health/panel/")
    assert panel.status_code == 200
    body = panel.content.decode()
    assert "<html" not in body and "External services" in body and "Twilio" in body
    slo = client.get("/health/slo-panel/").content.decode()
    assert "Uptime" in slo and "no data" in slo
    table = client.get("/health/slo-panel/?table=1").content.decode()
    assert 'id="slo-table"' in table


def test_dashboard_lists_the_health_panels(client, viewer, seeded):
    login(client, viewer)
    body = client.get("/").content.decode()
    assert 'hx-get="/health/panel/"' in body and 'hx-get="/health/slo-panel/"' in body


# --- API -------------------------------------------------------------------------------------


def test_api_lists_checks_with_status(api_client, make_token, seeded):
    token = make_token("read")
    check = Check.objects.get(slug="service-sendgrid")
    for _ in range(3):
        services.check_record_result(check_id=check.pk, outcome=Outcome(False, "answered HTTP 500"), started_at=timezone.now())
    resp = api_client.get("/api/v1/health/checks", token=token)
    assert resp.status_code == 200
    data = resp.json()
    assert data["count"] == 5
    row = next(r for r in data["results"] if r["slug"] == "service-sendgrid")
    assert row["status"] == "failing" and row["last_reason"] == "answered HTTP 500"
    assert data["counts"]["failing"] == 1
    failing = api_client.get("/api/v1/health/checks?status=failing", token=token).json()
    assert [r["slug"] for r in failing["results"]] == ["service-sendgrid"]
    bad = api_client.get("/api/v1/health/checks?status=broken", token=token)
    assert bad.status_code == 400 and bad.json()["error"] == "bad_request"


def test_api_check_detail_and_errors(api_client, make_token, seeded):
    token = make_token("read")
    resp = api_client.get("/api/v1/health/checks/service-openai", token=token)
    assert resp.status_code == 200 and resp.json()["config"]["service"] == "openai"
    missing = api_client.get("/api/v1/health/checks/nope", token=token)
    assert missing.status_code == 404 and missing.json() == {"error": "not_found", "detail": "no check 'nope'"}
    assert api_client.get("/api/v1/health/checks").status_code == 401
    assert api_client.post("/api/v1/health/checks/service-openai/run", token=token).status_code == 403
    assert api_client.post("/api/v1/health/checks/service-openai/run", token=make_token("actions")).status_code == 202
    slos = api_client.get("/api/v1/health/slos", token=token).json()
    assert {s["slug"] for s in slos} >= {"uptime", "api-p95"}


def test_admin_edits_checks_and_rules(client, seeded, django_user_model):
    su = django_user_model.objects.create_superuser("root-health", "r@example.com", "root-password-1")
    client.force_login(su)
    assert client.get("/admin/health/check/").status_code == 200
    check = Check.objects.get(slug="service-openai")
    assert client.get(f"/admin/health/check/{check.pk}/change/").status_code == 200
    assert client.get("/admin/health/thresholdrule/").status_code == 200
    assert client.get("/admin/health/slo/").status_code == 200
