"""The sandbox end to end: the simulator follows the listener and the groups; drills move only their metrics."""

import datetime as dt
import random

import pytest
from django.utils import timezone

from portal.cloud import aws
from portal.cloud.metrics import CloudWatchSource
from portal.cloud.models import SimulatorState
from portal.sandbox.services import drill_start, drill_stop
from portal.sandbox.simulator import tick


def _slot(n):
    """A time region of its own for each test (the session's sandbox server is shared): n hours back."""
    return timezone.now().replace(microsecond=0) - dt.timedelta(hours=n)


def _tg_requests(env, colour, start, end):
    q = [{"Id": "r", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount", "Dimensions": [
        {"Name": "TargetGroup", "Value": env.tg_dimension(colour)}, {"Name": "LoadBalancer", "Value": env.alb_dimension}]},
        "Period": 60, "Stat": "Sum"}}]
    return sum(v for _, v in aws.metric_data(env, q, start, end)["r"])


def _tg_5xx(env, colour, start, end):
    q = [{"Id": "e", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count",
                                               "Dimensions": [{"Name": "TargetGroup", "Value": env.tg_dimension(colour)},
                                                              {"Name": "LoadBalancer", "Value": env.alb_dimension}]},
                                    "Period": 60, "Stat": "Sum"}}]
    return sum(v for _, v in aws.metric_data(env, q, start, end)["e"])


def test_request_counts_follow_listener_weights_within_two_ticks(sandbox_env):
    env = sandbox_env
    aws.set_desired_capacity(env, "green", 2)
    t0 = _slot(1)
    rng = random.Random(1)
    first = tick(env, now=t0, rng=rng)
    assert first.requests["blue"] > 0 and first.requests["green"] == 0

    aws.set_listener_weights(env, {"blue": 0, "green": 100})
    second = tick(env, now=t0 + dt.timedelta(seconds=5), rng=rng)
    third = tick(env, now=t0 + dt.timedelta(seconds=10), rng=rng)
    assert second.weights == {"blue": 0, "green": 100}
    window = (t0 + dt.timedelta(seconds=4), t0 + dt.timedelta(seconds=11))
    assert _tg_requests(env, "green", *window) == second.requests["green"] + third.requests["green"] > 0
    assert _tg_requests(env, "blue", *window) == 0
    # the first tick's traffic went to blue, and CloudWatch has it there
    assert _tg_requests(env, "blue", t0, t0 + dt.timedelta(seconds=1)) == first.requests["blue"]


def test_traffic_only_reaches_colours_with_instances(sandbox_env):
    env = sandbox_env
    aws.set_listener_weights(env, {"blue": 50, "green": 50})  # green has no instances yet
    report = tick(env, now=_slot(2), rng=random.Random(2))
    assert report.requests["green"] == 0 and report.requests["blue"] > 0


def test_error_rate_drill_on_green_shows_in_greens_5xx_only(sandbox_env, admin_user):
    env = sandbox_env
    aws.set_desired_capacity(env, "green", 2)
    aws.set_listener_weights(env, {"blue": 50, "green": 50})
    drill = drill_start(environment=env, kind="error-rate", colour="green", level=30, minutes=5, seed=11, actor=admin_user)
    t0 = _slot(3)
    rng = random.Random(3)
    reports = [tick(env, now=t0 + dt.timedelta(seconds=5 * i), rng=rng) for i in range(6)]
    end = t0 + dt.timedelta(seconds=31)
    green_5xx, blue_5xx = _tg_5xx(env, "green", t0, end), _tg_5xx(env, "blue", t0, end)
    green_req = _tg_requests(env, "green", t0, end)
    assert green_5xx == sum(r.errors["green"] for r in reports)
    assert 0.2 < green_5xx / green_req < 0.4
    assert blue_5xx <= 1  # blue keeps its 0.1 % base rate
    source = CloudWatchSource(env, clock=lambda: end)
    assert source.error_rate("green", 1) == pytest.approx(30, abs=10)
    assert source.error_rate("blue", 1) < 2
    assert source.p95_latency("green", 1) < 1

    drill_stop(drill=drill, actor=admin_user)
    later = t0 + dt.timedelta(seconds=40)
    after = tick(env, now=later, rng=rng)
    assert after.errors["green"] <= 1


def test_same_seed_same_numbers(sandbox_env):
    env = sandbox_env
    at = _slot(4)
    runs = []
    for _ in range(2):
        SimulatorState.objects.filter(environment=env).update(data={})
        runs.append(tick(env, now=at, rng=random.Random(42)))
    a, b = runs
    assert (a.requests, a.errors, a.p95, a.cpu, a.db_connections, a.cache_hit_ratio, a.users) == \
        (b.requests, b.errors, b.p95, b.cpu, b.db_connections, b.cache_hit_ratio, b.users)


def test_alarms_follow_the_metrics(sandbox_env, admin_user):
    from portal.sandbox.simulator import evaluate_alarms

    env = sandbox_env
    t0 = _slot(5)
    rng = random.Random(5)
    for i in range(3):
        tick(env, now=t0 + dt.timedelta(seconds=5 * i), rng=rng)
    states = evaluate_alarms(env, now=t0 + dt.timedelta(seconds=11))
    assert states["ftw-error-rate-critical"] == "OK" and states["ftw-cpu-critical"] == "OK"
    drill_start(environment=env, kind="error-rate", colour="blue", level=50, minutes=5, seed=1, actor=admin_user)
    t1 = t0 + dt.timedelta(seconds=120)
    for i in range(3):
        tick(env, now=t1 + dt.timedelta(seconds=5 * i), rng=rng)
    states = evaluate_alarms(env, now=t1 + dt.timedelta(seconds=11))
    assert states["ftw-error-rate-critical"] == "ALARM" and states["ftw-error-rate-warning"] == "ALARM"
    assert states["ftw-p95-critical"] == "OK"
    by_name = {a.name: a for a in aws.list_alarms(env)}
    assert by_name["ftw-error-rate-critical"].state == "ALARM" and "sandbox simulator" in by_name["ftw-error-rate-critical"].reason
    drill_stop(all=True, environment=env, actor=admin_user)
    t2 = t1 + dt.timedelta(seconds=120)
    for i in range(3):
        tick(env, now=t2 + dt.timedelta(seconds=5 * i), rng=rng)
    assert evaluate_alarms(env, now=t2 + dt.timedelta(seconds=11))["ftw-error-rate-critical"] == "OK"


def test_the_simulator_publishes_elb_5xx_and_memory_and_the_error_rate_counts_them(sandbox_env):
    env = sandbox_env
    rng = random.Random(7)
    t0 = _slot(41)
    # Ten minutes of traffic per tick, so the load balancer's 0.02 % shows within three ticks.
    reports = [tick(env, now=t0 + dt.timedelta(seconds=60 * i), rng=rng, interval=600) for i in range(3)]
    elb_errors = sum(r.elb_errors for r in reports)
    assert elb_errors > 0
    src = CloudWatchSource(env, clock=lambda: t0 + dt.timedelta(minutes=3))
    requests = sum(sum(r.requests.values()) for r in reports)
    target_errors = sum(sum(r.errors.values()) for r in reports)
    assert src.error_rate(None, 5) == pytest.approx(100.0 * (target_errors + elb_errors) / (requests + elb_errors), abs=1e-3)
    memory = src.value("memory", "blue", 5)
    assert memory is not None and 38.0 <= memory <= 100.0
