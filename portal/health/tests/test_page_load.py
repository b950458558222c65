"""The page-load P95 SLO reads a real metric: CloudWatch RUM's PerformanceNavigationDuration (AWS/RUM,
application_name = the environment's app monitor, extended statistic p95, milliseconds), which the
sandbox's traffic simulator publishes. Above the plan's 1 s target the SLO reports it with the value;
below it, it passes."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from django.utils import timezone

from portal.cloud import aws
from portal.cloud.metrics import CloudWatchSource, metrics_source, rum_app_monitor
from portal.health.models import Slo, SloSample
from portal.health.seed import seed_slos
from portal.health.slo import slo_evaluate
from portal.plan.loader import SeedStats, load_plan


@pytest.fixture
def page_load(aws_platform):
    seed_slos(load_plan(), reset=False, stats=SeedStats())
    slo = Slo.objects.get(slug="page-load-p95")
    assert (slo.metric, slo.comparison, slo.target, slo.unit) == ("page_load_p95", "lt", 1.0, "s")  # the plan's "<1s (P95)"
    return slo


def ticks(env, end: dt.datetime, minutes: int, rng: random.Random) -> list:
    from portal.sandbox import simulator

    return [simulator.tick(env, now=end - dt.timedelta(minutes=m), rng=rng, interval=60) for m in range(minutes - 1, -1, -1)]


def test_the_sandbox_publishes_page_loads_to_cloudwatch_rum(aws_platform):
    env = aws_platform
    now = timezone.now().replace(microsecond=0)
    reports = ticks(env, now, 3, random.Random(3))
    assert rum_app_monitor(env) == f"ftw-{env.name}"
    listed = aws.client(env, "cloudwatch").list_metrics(Namespace="AWS/RUM", MetricName="PerformanceNavigationDuration")["Metrics"]
    assert [m["Dimensions"] for m in listed] == [[{"Name": "application_name", "Value": f"ftw-{env.name}"}]]
    value = CloudWatchSource(env, clock=lambda: now).value("page_load_p95", None, 5)
    # Milliseconds in CloudWatch, seconds in the portal: the render time plus three API calls' worth.
    assert value is not None and 0.35 < value < 1.0
    assert min(r.page_load_p95 for r in reports) <= value <= max(r.page_load_p95 for r in reports)
    with pytest.raises(ValueError, match="whole site"):
        CloudWatchSource(env, clock=lambda: now).value("page_load_p95", "blue", 5)


def test_page_load_p95_below_target_passes_and_above_it_reports_the_value(page_load, aws_platform, settings):
    from portal.sandbox.services import drill_start, drill_stop

    env = aws_platform
    settings.DEFAULT_ENVIRONMENT = env.name  # the SLO has no environment of its own: it measures the default one
    rng = random.Random(7)
    t0 = timezone.now().replace(microsecond=0)
    ticks(env, t0, 5, rng)

    slo = slo_evaluate(slo=page_load, now=t0, source=CloudWatchSource(env, clock=lambda: t0))
    assert slo.current_value is not None and 0.35 < slo.current_value < 1.0
    assert slo.meets_target is True and slo.note == ""
    assert SloSample.objects.get(slo=slo).met is True
    assert slo_evaluate(slo=page_load, now=t0).current_value == slo.current_value  # the environment's own source reads the same

    # A latency drill: every API call takes seconds more, and every page waits on three of them.
    drill = drill_start(environment=env, kind="latency", colour="blue", level=1.0, minutes=30, actor="test")
    later = t0 + dt.timedelta(minutes=10)
    ticks(env, later, 5, rng)
    slo = slo_evaluate(slo=page_load, now=later, source=CloudWatchSource(env, clock=lambda: later))
    assert slo.current_value is not None and slo.current_value > 3.0
    assert slo.meets_target is False
    assert slo.note == f"{slo.current_value:.3g} s over the last 5 min misses the target (below 1 s)"
    assert list(SloSample.objects.filter(slo=slo).order_by("at").values_list("met", flat=True)) == [True, True, False]
    assert slo.compliance_pct == pytest.approx(100 * 2 / 3)

    # The drill ends: ten clean minutes later page loads are back under a second.
    drill_stop(drill=drill, actor="test")
    clean = later + dt.timedelta(minutes=10)
    ticks(env, clean, 5, rng)
    slo = slo_evaluate(slo=page_load, now=clean, source=metrics_source(env, clock=lambda: clean))
    assert slo.current_value < 1.0 and slo.meets_target is True and slo.note == ""


def test_an_environment_names_its_app_monitor(aws_platform, settings):
    env = aws_platform
    now = timezone.now().replace(microsecond=0)
    settings.RUM_APP_MONITORS = {env.name: "ftw-web"}
    assert rum_app_monitor(env) == "ftw-web"
    aws.client(env, "cloudwatch").put_metric_data(Namespace="AWS/RUM", MetricData=[{
        "MetricName": "PerformanceNavigationDuration", "Dimensions": [{"Name": "application_name", "Value": "ftw-web"}],
        "Timestamp": now, "Unit": "Milliseconds", "Values": [float(ms) for ms in range(100, 2100, 100)]}])  # 100 .. 2000 ms
    assert CloudWatchSource(env, clock=lambda: now).value("page_load_p95", None, 5) == pytest.approx(1.9)  # nearest-rank p95
    settings.RUM_APP_MONITORS = {}
    assert CloudWatchSource(env, clock=lambda: now).value("page_load_p95", None, 5) is None  # ftw-<env> has no data
