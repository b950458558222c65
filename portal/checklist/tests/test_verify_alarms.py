"""'Alert rules configured' against moto's server: each CloudWatch alarm compared with its critical threshold
by value, operator and duration (Period x EvaluationPeriods against the threshold's window)."""

from __future__ import annotations

import pytest

from portal.checklist.verify import run_check
from portal.cloud import aws
from portal.cloud.clients import client
from portal.health.models import ThresholdRule
from portal.health.seed import seed_thresholds
from portal.plan.loader import SeedStats, load_plan
from portal.sandbox.platform import alarms_sync


@pytest.fixture
def env(sandbox_env, items):
    # The moto server lives for the session: put the alarms back as the sandbox makes them, before and after.
    alarms_sync(sandbox_env)
    yield sandbox_env
    alarms_sync(sandbox_env)


def _alarm(env, name: str) -> dict:
    return client(env, "cloudwatch").describe_alarms(AlarmNames=[name])["MetricAlarms"][0]


def _put_again(env, name: str, **changes) -> None:
    """The alarm put again with boto3 as it is, with `changes` (what someone editing it in the console does)."""
    a = _alarm(env, name)
    keep = ("AlarmName", "AlarmDescription", "ComparisonOperator", "Threshold", "EvaluationPeriods", "DatapointsToAlarm",
            "TreatMissingData", "Namespace", "MetricName", "Statistic", "ExtendedStatistic", "Period", "Dimensions", "Metrics")
    spec = {k: a[k] for k in keep if a.get(k) not in (None, [], "")}
    spec.update(changes)
    client(env, "cloudwatch").put_metric_alarm(**spec)


def test_the_sandbox_built_platform_passes_with_alarms_over_each_window(env):
    r = run_check("alert-rules", env)
    assert r.outcome == "passing", r.summary
    assert "at its value, operator and window" in r.summary
    compared = {row["threshold"]: row for row in r.evidence["compared"]}
    assert set(compared) == {"error-rate-critical", "p95-critical", "cpu-critical", "db-connections-critical"}
    for row in compared.values():
        assert row["differences"] == [] and row["alarm_duration_seconds"] == row["window_seconds"] == 300
        assert row["alarm_comparison"] == row["comparison"] == "GreaterThanThreshold"
    assert (compared["cpu-critical"]["alarm_period"], compared["cpu-critical"]["alarm_evaluation_periods"]) == (60, 5)
    # the error rate is metric math: its period is its metrics' period
    assert (compared["error-rate-critical"]["alarm_period"], compared["error-rate-critical"]["alarm_evaluation_periods"]) == (60, 5)


def test_an_alarm_with_other_evaluation_periods_fails_naming_the_duration(env):
    _put_again(env, "ftw-cpu-critical", EvaluationPeriods=3, DatapointsToAlarm=2)
    r = run_check("alert-rules", env)
    assert r.outcome == "failing"
    assert r.summary == ("Alarm out of date: ftw-cpu-critical (cpu-critical) waits 3m (3 x 60s), "
                         "the threshold's window is 5m")
    cpu = next(a for a in r.evidence["alarms"] if a["name"] == "ftw-cpu-critical")
    assert (cpu["period"], cpu["evaluation_periods"], cpu["datapoints_to_alarm"]) == (60, 3, 2)
    row = next(x for x in r.evidence["compared"] if x["threshold"] == "cpu-critical")
    assert row["differences"] == ["duration"] and row["alarm_duration_seconds"] == 180 and row["window_seconds"] == 300


def test_an_alarm_with_another_operator_fails_naming_it(env):
    _put_again(env, "ftw-p95-critical", ComparisonOperator="GreaterThanOrEqualToThreshold")
    r = run_check("alert-rules", env)
    assert r.outcome == "failing"
    assert ("ftw-p95-critical (p95-critical) compares GreaterThanOrEqualToThreshold, the threshold is > 2s "
            "(GreaterThanThreshold)") in r.summary
    assert "waits" not in r.summary and "fires at" not in r.summary  # only what differs
    row = next(x for x in r.evidence["compared"] if x["threshold"] == "p95-critical")
    assert row["differences"] == ["operator"] and row["alarm_comparison"] == "GreaterThanOrEqualToThreshold"


def test_each_difference_is_its_own_line(env):
    _put_again(env, "ftw-error-rate-critical", Threshold=50.0, ComparisonOperator="LessThanThreshold", EvaluationPeriods=10,
               DatapointsToAlarm=10)
    r = run_check("alert-rules", env)
    row = next(x for x in r.evidence["compared"] if x["threshold"] == "error-rate-critical")
    assert row["differences"] == ["value", "operator", "duration"]
    assert row["lines"] == [
        "ftw-error-rate-critical (error-rate-critical) fires at 50, the threshold is 5%",
        "ftw-error-rate-critical (error-rate-critical) compares LessThanThreshold, the threshold is > 5% (GreaterThanThreshold)",
        "ftw-error-rate-critical (error-rate-critical) waits 10m (10 x 60s), the threshold's window is 5m",
    ]
    for line in row["lines"]:
        assert line in r.summary


def test_a_changed_window_fails_until_the_sandbox_puts_its_alarms_again(env):
    seed_thresholds(load_plan(), reset=False, stats=SeedStats())
    ThresholdRule.objects.filter(slug="db-connections-critical").update(window_minutes=10)
    r = run_check("alert-rules", env)
    assert r.outcome == "failing"
    assert "ftw-db-connections-critical (db-connections-critical) waits 5m (5 x 60s), the threshold's window is 10m" in r.summary
    alarms_sync(env)
    assert {a.name: a.duration_seconds for a in aws.list_alarms(env)}["ftw-db-connections-critical"] == 600
    assert run_check("alert-rules", env).outcome == "passing"

