"""Check sources against the moto sandbox (and a dead endpoint), and the high error rate decision path
ending in a real rollback."""

import datetime as dt
import random

import pytest
from django.utils import timezone

from runbooks.checks import SOURCES, run_check
from runbooks.models import Runbook


def _traffic(env, *, green_error_pct: float | None = None, weights=None):
    """An hour of simulated traffic with green taking a share; optionally an error-rate drill on green at the end."""
    from portal.cloud import aws
    from portal.sandbox import simulator
    from portal.sandbox.services import drill_start

    aws.set_desired_capacity(env, "green", 2)
    aws.set_listener_weights(env, weights or {"blue": 75, "green": 25})
    now = timezone.now()
    rng = random.Random(7)
    for minutes in (65, 60, 55):
        simulator.tick(env, now=now - dt.timedelta(minutes=minutes), rng=rng, interval=300)
    if green_error_pct is not None:
        drill_start(environment=env, kind="error-rate", colour="green", level=green_error_pct, minutes=10, actor="test")
    for minutes in (3, 2, 1, 0):
        simulator.tick(env, now=now - dt.timedelta(minutes=minutes), rng=rng, interval=60)


def _external_checks():
    from portal.health.models import Check

    rows = [("openai", "OpenAI", "ok", ""), ("twilio", "Twilio", "ok", ""), ("stripe", "Stripe", "failing", "Major outage: payments API")]
    for slug, name, status, reason in rows:
        Check.objects.create(slug=slug, name=name, kind="statuspage", group=Check.Group.EXTERNAL, status=status,
                             last_reason=reason, config={"url": f"https://status.{slug}.example/api/v2/status.json"})


def test_every_source_reads_the_sandbox(aws_platform):
    from portal.cloud.clients import client

    env = aws_platform
    _traffic(env, green_error_pct=20)
    _external_checks()
    client(env, "cloudwatch").put_metric_data(Namespace=env.platform_namespace, MetricData=[
        {"MetricName": "SlowQueries", "Value": 7, "Timestamp": timezone.now() - dt.timedelta(minutes=2)},
        {"MetricName": "SlowQueries", "Value": 6, "Timestamp": timezone.now() - dt.timedelta(minutes=1)},
    ])
    seen = {name: run_check(name, environment=env, params={}) for name in SOURCES}
    for name, reading in seen.items():
        assert reading["source"] == name and reading["words"] and reading["at"], name

    er = seen["error_rate_now_vs_hour_ago"]
    assert er["status"] == "critical"
    green, blue = er["data"]["per_colour"]["green"], er["data"]["per_colour"]["blue"]
    assert green > 15 and blue < 1 and er["data"]["worst_colour"] == "green"
    assert er["data"]["hour_ago"] < 1 and er["data"]["baseline"] == "60 minutes ago"
    assert f"green {green:.2f}%" in er["words"] and "(rising)" in er["words"] and "critical > 5%" in er["words"]

    p95 = seen["p95_now_vs_hour_ago"]
    assert p95["status"] == "ok" and 0 < p95["data"]["now"] < 1 and " s" in p95["words"]
    assert seen["recent_deployments"]["words"] == "No deployments to sandbox in the last 60 minutes."

    ext = seen["external_service_status"]
    assert ext["status"] == "critical" and "Stripe failing (Major outage: payments API)" in ext["words"]
    ext_only = run_check("external_service_status", params={"services": ["openai", "twilio"]})
    assert ext_only["status"] == "ok" and ext_only["words"] == "All OK: OpenAI, Twilio."

    cpu = seen["cpu_memory_per_colour"]
    assert cpu["data"]["per_colour"]["blue"]["cpu"] is not None and "blue: CPU" in cpu["words"]
    assert seen["cache_hit_ratio"]["data"]["now"] > 70 and seen["cache_hit_ratio"]["status"] == "ok"
    rds = seen["rds_connections_vs_max"]
    assert rds["data"]["max_connections"] and rds["data"]["pct"] is not None and "Multi-AZ on" in rds["words"]
    assert seen["slow_query_count"]["words"].startswith("13 slow queries in the last 15 minutes")
    assert seen["slow_query_count"]["status"] == "warning"
    # Nothing counts lock waits in this sandbox: the step says where the number would come from.
    assert seen["locks"]["status"] == "unavailable" and "No LockWaits data in CloudWatch" in seen["locks"]["words"]
    backup = seen["latest_backup_age"]
    assert backup["status"] == "ok" and backup["data"]["retention_days"] == 7 and "hours old" in backup["words"]
    assert seen["listener_weights"]["data"] == {"weights": {"blue": 75, "green": 25}, "live_colour": "blue"}
    cap = seen["group_capacity"]
    assert cap["data"]["groups"]["green"]["desired"] == 2 and "green: 2 in service of 2 desired" in cap["words"]


def test_recent_deployments_names_the_release_and_colour(aws_platform, db):
    from deployments.models import Deployment, Release, Strategy
    from deployments.seed import seed_strategies
    from portal.plan.loader import SeedStats, load_plan

    seed_strategies(load_plan(), reset=True, stats=SeedStats())
    env = aws_platform
    release = Release.objects.create(environment=env, version="2026.11.27-3", launch_template_version="7")
    Deployment.objects.create(environment=env, release=release, strategy=Strategy.objects.get(slug="canary"),
                              from_colour="blue", to_colour="green", state="holding", started_at=timezone.now())
    reading = run_check("recent_deployments", environment=env, params={"within_minutes": 120})
    assert reading["status"] == "warning"
    assert reading["words"].startswith("1 deployment(s) to sandbox in the last 120 minutes; latest 2026.11.27-3 to green (holding")
    assert reading["data"]["latest_colour"] == "green"


@pytest.fixture
def dead_env(db):
    """An environment whose AWS endpoint refuses connections (nothing listens on port 1)."""
    from portal.cloud.clients import reset_cache
    from portal.cloud.models import Environment

    env = Environment.objects.create(
        name="dead", region="us-east-1", credentials_mode="static", endpoint_url="http://127.0.0.1:1",
        listener_arn="arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/x/1/2",
        blue_asg="ftw-blue", green_asg="ftw-green", rds_instance_id="ftw-db", alb_dimension="app/x/1",
        cache_replication_group_id="ftw-cache", blue_tg_dimension="targetgroup/b/1", green_tg_dimension="targetgroup/g/2",
    )
    reset_cache()
    yield env
    reset_cache()


CLOUD_SOURCES = sorted(set(SOURCES) - {"recent_deployments", "external_service_status"})


def test_unreachable_sources_give_a_message(dead_env):
    for name in CLOUD_SOURCES:
        reading = run_check(name, environment=dead_env, params={})
        assert reading["status"] == "unavailable", (name, reading)
        assert reading["words"], name


def test_unreachable_source_shows_a_message_on_the_run_page(client, responder, library, dead_env):
    from runbooks import services

    run = services.run_start(runbook=Runbook.objects.get(slug="high-error-rate"), environment=dead_env, actor=responder)
    client.force_login(responder)
    assert client.get(run.get_absolute_url()).status_code == 200
    r = client.get(f"/runbooks/runs/{run.public_id}/steps/dashboard/check/")
    assert r.status_code == 200
    body = r.content.decode()
    assert 'data-status="unavailable"' in body and "Could not read error rate now vs hour ago" in body
    # The responder can still work the step; what was seen (the failure) is the evidence.
    outcome = services.step_record(run=run, step_id="dashboard", status="done", note="CloudWatch down, used Grafana", actor=responder)
    assert outcome.evidence["status"] == "unavailable"


def test_high_error_rate_on_green_leads_to_a_rollback_that_rolls_back(
    aws_platform, responder, library, make_incident, django_capture_on_commit_callbacks, settings
):
    from deployments.models import Rollback
    from portal.cloud import aws
    from runbooks import services

    env = aws_platform
    _traffic(env, green_error_pct=20)
    incident = make_incident(environment=env)
    run = services.run_start(runbook=Runbook.objects.get(slug="high-error-rate"), incident=incident, actor=responder)
    assert run.environment == env

    seen = services.step_record(run=run, step_id="dashboard", status="done", actor=responder)
    assert seen.evidence["data"]["worst_colour"] == "green" and seen.evidence["status"] == "critical"
    services.step_record(run=run, step_id="deployments", status="done", actor=responder)
    services.step_record(run=run, step_id="external", status="done", actor=responder)
    services.step_record(run=run, step_id="cause", status="done", answer="bad-deployment", actor=responder)

    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.step_action_take(run=run, step_id="rollback", actor=responder)
    assert outcome.status == "done", outcome.evidence
    assert outcome.evidence["words"].startswith("Rollback to blue requested (away from green)")
    assert aws.get_listener_weights(env) == {"blue": 100, "green": 0}
    rb = Rollback.objects.get(environment=env)
    assert rb.state == "completed" and rb.requested_by == responder
    assert str(run.public_id) in rb.reason or "high-error-rate" in rb.reason

    # A second click returns the recorded outcome and starts nothing new.
    assert services.step_action_take(run=run, step_id="rollback", actor=responder) == outcome
    assert Rollback.objects.count() == 1

    _traffic(env, weights={"blue": 100, "green": 0})
    recheck = services.step_record(run=run, step_id="recheck", status="done", actor=responder)
    assert recheck.evidence["data"]["per_colour"]["blue"] < 1
    run.refresh_from_db()
    assert run.status == "completed"


def _walk_to(run, actor, steps, answer_step, answer):
    from runbooks import services

    for step in steps:
        services.step_record(run=run, step_id=step, status="done", actor=actor)
    services.step_record(run=run, step_id=answer_step, status="done", answer=answer, actor=actor)


def test_capacity_branch_scales_the_live_colour_within_the_phase(aws_platform, responder, library, django_capture_on_commit_callbacks):
    from portal.cloud import aws
    from runbooks import services

    env = aws_platform
    _traffic(env)
    run = services.run_start(runbook=Runbook.objects.get(slug="high-error-rate"), environment=env, actor=responder)
    _walk_to(run, responder, ("dashboard", "deployments", "external"), "cause", "capacity")
    before = aws.describe_groups(env)["blue"].desired
    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.step_action_take(run=run, step_id="scale", actor=responder)
    assert outcome.status == "done", outcome.evidence
    after = aws.describe_groups(env)["blue"].desired
    assert after > before and outcome.evidence["to"] == after
    assert outcome.evidence["words"] == f"Scaled blue from {before} to {after} instances."


def test_failover_branch_pauses_automation_then_a_lead_fails_over(aws_platform, responder, lead, library):
    from portal.audit.models import AuditEvent
    from runbooks import services

    env = aws_platform
    run = services.run_start(runbook=Runbook.objects.get(slug="database-issues"), environment=env, actor=responder)
    _walk_to(run, responder, ("connections", "slow-queries", "locks", "backups"), "failover-needed", "yes-failover")
    paused = services.step_action_take(run=run, step_id="pause-automation", actor=responder)
    assert paused.status == "done"
    env.refresh_from_db()
    assert env.automation_paused and "database-issues" in env.automation_paused_reason
    # The deployments service refuses a responder (leads only), and says so in the step.
    from runbooks.actions import ACTIONS

    assert ACTIONS["rds_failover"].perm == "accounts.approve"
    outcome = services.step_action_take(run=run, step_id="failover", actor=lead)
    assert outcome.status == "done", outcome.evidence
    assert AuditEvent.objects.filter(verb="environment.rds_failover", actor=lead).count() == 1
    run.refresh_from_db()
    assert run.status == "completed"
