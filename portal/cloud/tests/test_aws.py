"""Every wrapper function against moto in process (mock_aws), with the platform the sandbox builds."""

import datetime as dt
import random

import pytest
from django.utils import timezone

from portal.cloud import aws
from portal.cloud.errors import CloudError
from portal.cloud.models import Environment
from portal.plan.loader import load_plan


def test_describe_groups_and_set_desired_capacity(aws_platform):
    env = aws_platform
    groups = aws.describe_groups(env)
    assert set(groups) == {"blue", "green"}
    blue = groups["blue"]
    assert (blue.name, blue.desired, blue.min_size, blue.max_size, blue.in_service) == ("ftw-blue", 2, 0, 32, 2)
    assert all(i.lifecycle_state == "InService" and i.health_status == "Healthy" and i.instance_type == "t3.large"
               for i in blue.instances)
    assert groups["green"].instances == [] and groups["green"].desired == 0

    aws.set_desired_capacity(env, "green", 3)
    assert aws.describe_groups(env)["green"].in_service == 3
    aws.set_desired_capacity(env, "green", 1)
    assert aws.describe_groups(env)["green"].desired == 1
    with pytest.raises(ValueError):
        aws.set_desired_capacity(env, "green", -1)
    with pytest.raises(ValueError):
        aws.set_desired_capacity(env, "teal", 1)
    with pytest.raises(CloudError) as info:
        aws.set_desired_capacity(env, "green", 99)  # above the group's max size
    assert info.value.operation == "SetDesiredCapacity" and info.value.code == "ValidationError"


def test_describe_groups_errors(aws_platform):
    env = aws_platform
    env.green_asg = "no-such-group"
    with pytest.raises(CloudError) as info:
        aws.describe_groups(env)
    assert info.value.is_not_found and "no-such-group" in info.value.words
    with pytest.raises(CloudError) as info:
        aws.describe_groups(Environment(name="empty"))
    assert info.value.code == "NotConfigured"


def test_listener_weights(aws_platform):
    env = aws_platform
    assert aws.get_listener_weights(env) == {"blue": 100, "green": 0}
    assert aws.listener_target_groups(env) == [env.blue_target_group_arn, env.green_target_group_arn]
    assert aws.set_listener_weights(env, {"blue": 95, "green": 5}) == {"blue": 95, "green": 5}
    assert aws.get_listener_weights(env) == {"blue": 95, "green": 5}
    assert aws.set_listener_weights(env, {"green": 100}) == {"blue": 0, "green": 100}
    for bad in ({"blue": 0, "green": 0}, {"blue": 1000}, {"blue": -1}, {"purple": 5}, {"blue": 50.5}, {"blue": True}):
        with pytest.raises(ValueError):
            aws.set_listener_weights(env, bad)
    assert aws.get_listener_weights(env) == {"blue": 0, "green": 100}  # nothing changed by the bad calls
    # a plain forward (no weights) to one target group counts as 100 % there
    aws.client(env, "elbv2").modify_listener(ListenerArn=env.listener_arn, DefaultActions=[
        {"Type": "forward", "TargetGroupArn": env.blue_target_group_arn}])
    assert aws.get_listener_weights(env) == {"blue": 100, "green": 0}


def test_target_health_in_the_sandbox_and_on_real_aws(aws_platform):
    env = aws_platform
    assert [t.state for t in aws.describe_target_health(env, "blue")] == ["healthy", "healthy"]
    assert aws.healthy_count(env, "green") == 0
    aws.set_desired_capacity(env, "blue", 1)
    assert aws.healthy_count(env, "blue") == 1  # scaled in: the sandbox follows, moto alone would not
    # the same function on a "real" environment reads ELBv2's DescribeTargetHealth
    real = Environment.objects.get(pk=env.pk)
    real.credentials_mode = "default"
    ids = {t.id for t in aws.describe_target_health(real, "blue")}
    assert ids and all(i.startswith("i-") for i in ids)


def test_describe_rds_and_failover(aws_platform):
    env = aws_platform
    rds = aws.describe_rds(env)
    assert rds.status == "available" and rds.multi_az is True
    assert (rds.instance_class, rds.allocated_storage_gb, rds.backup_retention_days, rds.engine) == ("db.r5.large", 500, 7, "postgres")
    assert rds.max_connections == 1802  # LEAST(16 GiB / 9531392, 5000)
    assert rds.latest_snapshot_at is not None
    aws.rds_failover(env)
    env.rds_instance_id = "gone-db"
    with pytest.raises(CloudError) as info:
        aws.rds_failover(env)
    assert info.value.operation == "RebootDBInstance" and info.value.is_not_found


def test_describe_cache(aws_platform):
    cache = aws.describe_cache(aws_platform)
    assert (cache.status, cache.node_type, cache.id) == ("available", "cache.r5.large", "ftw-cache")
    assert cache.members


def test_bucket_sizes_follow_the_simulator(aws_platform):
    from portal.sandbox.simulator import tick

    env = aws_platform
    assert aws.bucket_sizes(env) == {"photos": 0, "videos": 0, "documents": 0}
    tick(env, now=timezone.now(), rng=random.Random(1))
    sizes = aws.bucket_sizes(env)
    assert sizes["videos"] > sizes["photos"] > sizes["documents"] > 0


def test_alarms_cover_the_plans_thresholds(aws_platform):
    alarms = aws.list_alarms(aws_platform)
    plan = load_plan()["thresholds"]
    assert len(alarms) == len(plan["critical"]) + len(plan["warning"])
    by_name = {a.name: a for a in alarms}
    assert by_name["ftw-error-rate-critical"].metric == "HTTPCode_Target_5XX_Count"
    assert by_name["ftw-p95-critical"].threshold == 2.0 and by_name["ftw-p95-critical"].metric == "TargetResponseTime"
    assert by_name["ftw-cpu-critical"].comparison == "GreaterThanThreshold"
    assert by_name["ftw-db-connections-critical"].threshold == round(1802 * 0.95)


def test_cost_month_to_date(aws_platform):
    report = aws.cost_month_to_date(aws_platform)
    assert report.currency == "USD" and len(report.by_service) == 7
    assert report.total == pytest.approx(sum(report.by_service.values()), abs=0.05)
    today = dt.datetime.now(dt.UTC).date()
    import calendar

    days = calendar.monthrange(today.year, today.month)[1]
    assert report.total == pytest.approx(9675 * max(today.day - 1, 1) / days, rel=0.01)
    assert report.forecast is not None and report.forecast >= report.total
    assert report.forecast == pytest.approx(9675, rel=0.1)


def test_checklist_evidence(aws_platform):
    env = aws_platform
    certs = aws.acm_certificates(env)
    assert certs[0].status == "ISSUED" and certs[0].domain == "fairtradeworker.example"
    assert certs[0].not_after - timezone.now() > dt.timedelta(days=300)
    records = aws.route53_records(env)
    assert any(r.name == "app.fairtradeworker.example." and r.alias_target == aws.load_balancer_dns_name(env) for r in records)
    dists = aws.cloudfront_distributions(env)
    assert len(dists) == 1 and dists[0].enabled and dists[0].origins == ["ftw-sandbox-photos.s3.amazonaws.com"]
    for colour in ("blue", "green"):
        policies = aws.describe_scaling_policies(env, colour)
        assert [(p.policy_type, p.metric, p.target_value) for p in policies] == [
            ("TargetTrackingScaling", "ASGAverageCPUUtilization", 60.0)]


def test_build_platform_is_idempotent(aws_platform):
    from portal.sandbox.platform import build_platform

    again = build_platform()
    for key in ("listener_arn", "blue_target_group_arn", "green_target_group_arn", "rds_instance_id", "vpc_id", "launch_template_id"):
        assert again[key] == aws_platform.platform[key]
    assert len(aws.list_alarms(aws_platform)) == 9
    assert aws.describe_groups(aws_platform)["blue"].desired == 2
