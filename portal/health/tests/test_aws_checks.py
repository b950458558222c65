"""AWS check kinds against the moto platform (aws_platform fixture): healthy and failing."""

from __future__ import annotations

import pytest

from portal.health.models import Check
from portal.health.runners import run_check
from portal.health.services import health_checks_ensure_for_environment


@pytest.fixture
def env_checks(aws_platform):
    checks = health_checks_ensure_for_environment(environment=aws_platform, actor="system:test")
    return aws_platform, {c.slug.removeprefix(f"{aws_platform.name}-"): c for c in checks}


def test_ensure_creates_aws_checks_idempotently(aws_platform):
    first = health_checks_ensure_for_environment(environment=aws_platform, actor="system:test")
    second = health_checks_ensure_for_environment(environment=aws_platform, actor="system:test")
    assert [c.pk for c in first] == [c.pk for c in second]
    kinds = {c.kind for c in first}
    assert {"asg", "target_health", "rds", "elasticache", "alarm", "s3"} <= kinds
    assert Check.objects.filter(environment=aws_platform).count() == len(first)


def test_healthy_platform(env_checks):
    env, checks = env_checks
    for key in ("asg-blue", "asg-green", "targets-blue", "targets-green", "cache", "s3"):
        out = run_check(checks[key])
        assert out.ok, f"{key}: {out.reason}"
    assert "in service and healthy" in run_check(checks["asg-blue"]).reason
    assert "scaled to zero" in run_check(checks["asg-green"]).reason
    rds = run_check(checks["rds"])
    assert rds.ok, rds.reason
    assert rds.reason.startswith("available, Multi-AZ")


def test_unhealthy_instance_fails_asg_and_targets(env_checks):
    from portal.cloud import aws
    from portal.sandbox.simstate import state_for

    env, checks = env_checks
    inst = aws.describe_groups(env)["blue"].instances[0]
    state = state_for(env)
    state.unhealthy = {inst.id: {"colour": "blue"}}
    state.save()
    out = run_check(checks["asg-blue"])
    assert not out.ok and "healthy in service of" in out.reason
    out = run_check(checks["targets-blue"])
    assert not out.ok and "targets unhealthy" in out.reason and inst.id in out.reason


def test_alarm_in_alarm_state_fails(env_checks):
    from portal.cloud.clients import client

    env, checks = env_checks
    alarms = client(env, "cloudwatch").describe_alarms()["MetricAlarms"]
    assert alarms, "the sandbox platform ships CloudWatch alarms"
    name = alarms[0]["AlarmName"]
    client(env, "cloudwatch").set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    out = run_check(checks["alarms"])
    assert not out.ok and name in out.reason


def test_missing_bucket_fails_in_words(env_checks):
    env, checks = env_checks
    check = checks["s3"]
    check.config = {"buckets": ["photos", "no-such-bucket-ftw"]}
    out = run_check(check)
    assert not out.ok
    assert "no-such-bucket-ftw" in out.reason


def test_aws_error_becomes_words_not_a_crash(env_checks):
    env, checks = env_checks
    env.blue_asg = "does-not-exist"
    check = checks["asg-blue"]
    check.environment = env
    out = run_check(check)
    assert not out.ok
    assert out.reason.startswith("AWS DescribeAutoScalingGroups failed (NotFound)")


def test_an_error_rate_alarm_in_alarm_joins_the_error_rate_incident(env_checks):
    """The alarms check names the metric its alarms read, so the CloudWatch alarm about a breach joins the
    incident the error-rate check opened (one condition, one incident) instead of opening a second one."""
    from django.utils import timezone

    from portal.cloud.clients import client
    from portal.health.services import check_record_result
    from portal.incidents import ingest
    from portal.incidents.models import Incident
    from portal.incidents.seed import seed
    from portal.plan.loader import load_plan

    seed(load_plan(), reset=False)  # the grouping rules
    env, checks = env_checks
    ingest.alert_ingest_internal(
        source="health", fingerprint="check:error-rate", name="Health check failing: Error rate", severity="critical",
        firing=True, summary="error rate 8% on blue", environment=env, grouping_key="check:error-rate",
        labels={"check": "error-rate", "kind": "metric_threshold", "group": "metrics", "metric": "error_rate"})
    cw = client(env, "cloudwatch")
    name = next(a["AlarmName"] for a in cw.describe_alarms()["MetricAlarms"] if "error" in a["AlarmName"])
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason="test")
    alarms = checks["alarms"]
    Check.objects.filter(pk=alarms.pk).update(fail_threshold=1)
    out = run_check(alarms)
    assert out.detail["firing_metrics"], out.detail
    check_record_result(check_id=alarms.pk, outcome=out, started_at=timezone.now())
    incidents = list(Incident.objects.all())
    assert len(incidents) == 1, [i.title for i in incidents]
    assert {a.name for a in incidents[0].alerts.all()} == {"Health check failing: Error rate",
                                                           f"Health check failing: {alarms.name}"}
