"""SLO arithmetic with a fake metrics source: budget left, burn rates, paging at 14.4x / 6x."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from portal.health.models import Slo, SloSample
from portal.health.slo import slo_evaluate
from portal.incidents.models import Alert


class FakeSource:
    def __init__(self, readings: dict):
        self.readings = readings  # (metric, minutes) -> value, or metric -> value

    def value(self, metric, colour=None, minutes=5):
        if metric not in {"error_rate", "requests", "p95_response_time"}:
            raise ValueError(f"unknown metric {metric!r}")
        return self.readings.get((metric, minutes), self.readings.get(metric))


@pytest.fixture
def uptime(db):
    return Slo.objects.create(slug="uptime", name="Uptime", kind=Slo.Kind.AVAILABILITY, metric="error_rate",
                              comparison="gte", target=99.9, unit="%")


def test_availability_budget_and_burn(uptime):
    now = timezone.now()
    # 30 days of history: 1,000,000 requests, 500 failed = half the 0.1 % budget.
    SloSample.objects.create(slo=uptime, at=now - dt.timedelta(days=30), value=99.95, good=999_500, total=1_000_000)
    slo = slo_evaluate(slo=uptime, now=now, source=FakeSource({"error_rate": 0.0, "requests": 600}))
    assert slo.current_value == pytest.approx(100 - 100 * 500 / 1_000_600, rel=1e-6)
    assert slo.budget_remaining_pct == pytest.approx(100 * (1 - (100 * 500 / 1_000_600) / 0.1), rel=1e-6)
    assert slo.burn_rate_1h == 0.0 and not slo.alert_raised
    # 2 % errors over the last hour and 5 minutes: 20x the budget rate -> page.
    slo = slo_evaluate(slo=uptime, now=now + dt.timedelta(minutes=1),
                       source=FakeSource({"error_rate": 2.0, "requests": 600}))
    assert slo.burn_rate_1h == pytest.approx(20.0)
    assert slo.alert_raised
    alert = Alert.objects.get(fingerprint="health:slo:uptime")
    assert alert.status == "firing" and alert.severity == "critical" and "20.0x over 1 h" in alert.summary
    # The hour still burns but the last 5 minutes are clean: the page resolves.
    slo = slo_evaluate(slo=uptime, now=now + dt.timedelta(minutes=2), source=FakeSource({
        ("error_rate", 60): 2.0, ("error_rate", 360): 0.5, ("error_rate", 5): 0.0, ("error_rate", 30): 0.5,
        ("error_rate", 1): 0.0, "requests": 600}))
    assert not slo.alert_raised
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_slow_burn_pages_at_6x_over_6h(uptime):
    slo = slo_evaluate(slo=uptime, source=FakeSource({("error_rate", 60): 0.7, ("error_rate", 360): 0.7,
                                                        ("error_rate", 30): 0.7, ("error_rate", 5): 0.7,
                                                        ("error_rate", 1): 0.7, "requests": 100}))
    assert slo.burn_rate_6h == pytest.approx(7.0) and slo.burn_rate_1h < 14.4
    assert slo.alert_raised


def test_threshold_slo_compliance_and_unknown_metric(db):
    p95 = Slo.objects.create(slug="api-p95", name="API P95", kind=Slo.Kind.THRESHOLD, metric="p95_response_time",
                             comparison="lt", target=0.5, unit="s")
    now = timezone.now()
    SloSample.objects.create(slo=p95, at=now - dt.timedelta(days=30), value=0.2, met=True)  # measured all window
    for i in range(998):
        SloSample.objects.create(slo=p95, at=now - dt.timedelta(minutes=i + 1), value=0.2, met=True)
    slo = slo_evaluate(slo=p95, now=now, source=FakeSource({"p95_response_time": 0.8}))
    assert slo.current_value == 0.8 and slo.meets_target is False
    assert slo.compliance_pct == pytest.approx(99.9)
    assert slo.budget_remaining_pct == pytest.approx(0.0, abs=1e-6)
    p50 = Slo.objects.create(slug="api-p50", name="API P50", kind=Slo.Kind.THRESHOLD, metric="p50_response_time",
                             comparison="lt", target=0.1, unit="s")
    slo = slo_evaluate(slo=p50, now=now, source=FakeSource({}))
    assert slo.current_value is None and "does not report p50_response_time" in slo.note


def test_a_fresh_slo_spends_part_of_the_windows_budget_not_all_of_it(uptime):
    """Two hours measured at 600 requests a minute, then ten minutes at 8 % errors (a drill on a fresh
    sandbox): the month's budget at this traffic is 0.1 % of 30 days of it, so about 2 % of it is gone,
    not -999 %; and the spent-budget freeze does not start for it."""
    from deployments.freezes import active_freezes
    from portal.cloud.models import Environment

    env = Environment.objects.create(name="fresh")
    uptime.environment = env
    uptime.save(update_fields=["environment"])
    now = timezone.now()
    for i in range(120):
        SloSample.objects.create(slo=uptime, at=now - dt.timedelta(minutes=130 - i), value=100.0, good=600, total=600)
    for i in range(9):
        SloSample.objects.create(slo=uptime, at=now - dt.timedelta(minutes=9 - i), value=92.0, good=552, total=600)
    slo = slo_evaluate(slo=uptime, now=now, source=FakeSource({"error_rate": 8.0, "requests": 600}))
    bad, total = 10 * 48, 130 * 600
    covered_minutes = 130
    expected = 100 * (1 - bad / (0.001 * total * (30 * 24 * 60 / covered_minutes)))
    assert slo.budget_remaining_pct == pytest.approx(expected, rel=1e-3)
    assert 97 < slo.budget_remaining_pct < 99
    assert "slo" not in [f.kind for f in active_freezes(env)]  # (the burn-rate page's incident freezes while open)
    # Once the whole window is measured, the same share of bad requests is judged against it alone.
    SloSample.objects.create(slo=uptime, at=now - dt.timedelta(days=30), value=100.0, good=0, total=0)
    slo = slo_evaluate(slo=uptime, now=now + dt.timedelta(minutes=1), source=FakeSource({"error_rate": 8.0, "requests": 600}))
    assert slo.budget_remaining_pct < 0
    assert "slo" in [f.kind for f in active_freezes(env)]
