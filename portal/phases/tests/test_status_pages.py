from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.phases.models import GrowthPhase, PhaseFocusItem, UserCountSample
from portal.phases.selectors import current_phase
from portal.phases.services import phase_move, user_count_record
from portal.phases.status import Part, _plan, capacity_part, cost_part, growth_rate

# The phases come from seed_defaults; these tests read them, so they seed them first.
pytestmark = pytest.mark.usefixtures("growth_phases")


def _report(total, forecast, by_service):
    return SimpleNamespace(total=total, forecast=forecast, by_service=by_service, currency="USD")


def test_cost_against_the_phase_budget(db):
    current_phase()
    growth = GrowthPhase.objects.get(slug="growth")
    report = _report(1400.0, 2450.0, {
        "Amazon Elastic Compute Cloud - Compute": 600.0, "Amazon Relational Database Service": 150.0,
        "Amazon ElastiCache": 60.0, "Amazon Simple Storage Service": 200.0, "Amazon CloudFront": 300.0,
        "AmazonCloudWatch": 40.0, "Tax": 50.0,
    })
    c = cost_part(None, growth, _plan(), report=report)
    assert c["budget"] == Decimal("2100.00")
    assert c["forecast_over_budget"] is True and c["over_by"] == Decimal("350.0")
    assert c["percent_of_budget"] == 116
    lines = {line["slug"]: line for line in c["by_service"]}
    # the plan's cost table (9,675 at 300k) scaled to the phase's 2,100 budget
    assert lines["compute"]["plan_at_300k"] == Decimal("2000")
    assert lines["compute"]["phase_budget"] == Decimal("434.11")
    assert lines["compute"]["month_to_date"] == Decimal("600.0") and lines["compute"]["over"]
    assert lines["bandwidth"]["month_to_date"] == Decimal("300.0")
    assert lines["services"]["month_to_date"] == Decimal("50.0")  # Tax has no plan line
    within = cost_part(None, growth, _plan(), report=_report(900.0, 1900.0, {}))
    assert within["forecast_over_budget"] is False


def test_growth_rate_and_outgrow_forecast(db):
    now = timezone.now()
    for days_ago, users in [(10, 3000), (5, 3500), (0, 4000)]:
        user_count_record(users=users, actor="system:test", source="cloudwatch", at=now - timedelta(days=days_ago))
    g = growth_rate(now)
    assert g["users_per_day"] == 100.0
    foundation = current_phase()
    metrics = Part(data=[{"slug": "api-rps", "measured": 4.0}])
    instances = Part(data={"total_in_service": 4})
    cap = capacity_part(4000, foundation, instances, metrics, 35.0, g, _plan(), now=now)
    # 4 req/s on 4 instances at 35 % CPU: one instance takes 2 req/s at 70 %
    assert cap["capacity_per_instance"] == 2.0
    assert cap["expected_peak_rps"] == 8.0 and cap["instances_needed"] == 4 and cap["verdict"] == "within"
    # 4 instances x 2 req/s serve the peak of 4,000 users: the phase's instances run out now
    assert cap["outgrow"]["by"] == "instances" and cap["outgrow"]["days"] == 0.0
    # at half the CPU an instance takes twice as much: users (5,000 at 100/day) run out first
    cap = capacity_part(4000, foundation, instances, metrics, 17.5, g, _plan(), now=now)
    assert cap["instances_needed"] == 2 and cap["users_at_capacity"] == 8000
    assert cap["outgrow"]["by"] == "users" and cap["outgrow"]["days"] == 10.0
    assert cap["outgrow"]["date"] == (now + timedelta(days=10)).date().isoformat()


def test_phases_page_without_a_cloud_environment(client, viewer):
    user_count_record(users=12000, actor="system:test", source="cloudwatch")
    client.force_login(viewer)
    body = client.get("/phases/").content.decode()
    assert "Phase 1: Foundation" in body
    assert "By its users the platform is in phase 2 (Growth)" in body
    assert "Unavailable: no cloud environment" in body
    assert 'data-testid="move-form"' not in body
    panel = client.get("/phases/panel/").content.decode()
    assert "Phase 1: Foundation" in panel and "12,000 users" in panel
    assert client.get("/phases/charts/users.json").json()["users"] == [12000]


def test_lead_moves_the_phase_and_responder_cannot(client, lead, responder):
    client.force_login(responder)
    assert client.post("/phases/move/", {"to": 2, "from": 1}).status_code == 403
    assert current_phase().number == 1
    client.force_login(lead)
    assert 'data-testid="move-form"' in client.get("/phases/").content.decode()
    client.post("/phases/move/", {"to": 2, "from": 1, "reason": "5k users"})
    client.post("/phases/move/", {"to": 2, "from": 1, "reason": "5k users"})  # double click
    assert current_phase().slug == "growth"
    assert AuditEvent.objects.filter(verb="phase.move").count() == 1


def test_api_phase_current(api_client, make_token, lead):
    current_phase()
    phase_move(to_phase=GrowthPhase.objects.get(number=2), actor=lead)
    r = api_client.get("/api/v1/phases/current", token=make_token("read"))
    assert r.status_code == 200
    body = r.json()
    assert body["phase"]["slug"] == "growth" and body["phase"]["instances_min"] == 4 and body["phase"]["instances_max"] == 8
    assert body["next_phase"]["slug"] == "scale"
    assert api_client.get("/api/v1/phases/current").status_code == 401


def test_focus_items_are_ticked_and_audited(client, responder, viewer):
    current_phase()
    client.force_login(viewer)
    assert client.post("/phases/foundation/focus/1/", {"done": "1"}).status_code == 403
    client.force_login(responder)
    client.post("/phases/foundation/focus/1/", {"done": "1"})
    item = PhaseFocusItem.objects.get(phase__slug="foundation", position=1)
    assert item.done and item.done_by == responder and item.done_at
    assert AuditEvent.objects.filter(verb="phase.focus_done").count() == 1


def test_lead_enters_users_bad_input_is_refused(client, lead):
    client.force_login(lead)
    r = client.post("/phases/users/", {"users": "lots"}, follow=True)
    assert "whole number" in r.content.decode()
    client.post("/phases/users/", {"users": "7,500", "note": "analytics"})
    s = UserCountSample.objects.get()
    assert s.users == 7500 and s.source == "manual" and s.entered_by == lead


def test_users_are_sampled_from_the_metrics_source(aws_platform, monkeypatch):
    from portal.cloud import metrics
    from portal.phases.services import user_count_sample_from_metrics

    class Fake:
        def users(self):
            return 5000

    monkeypatch.setattr(metrics, "metrics_source", lambda env: Fake())
    sample = user_count_sample_from_metrics()
    assert sample.users == 5000 and sample.source == "cloudwatch" and sample.environment == aws_platform
    from portal.phases.status import phase_status

    st = phase_status(live=False)
    assert st.users_phase.slug == "growth" and st.phase.slug == "foundation"

    class Silent:
        def users(self):
            return None

    monkeypatch.setattr(metrics, "metrics_source", lambda env: Silent())
    assert user_count_sample_from_metrics() is None
    assert UserCountSample.objects.count() == 1
