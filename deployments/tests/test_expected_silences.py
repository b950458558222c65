"""The portal's own actions silence exactly what they are expected to cause, for as long as they run
plus a margin: an RDS failover, a scale action, a planned deployment hold."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from deployments import services
from deployments.tests.conftest import drive
from portal.incidents import ingest, silences
from portal.incidents.models import Silence


def health_alert(env, slug: str, labels: dict):
    return ingest.alert_ingest_internal(source="health", fingerprint=f"check:{slug}", name=f"Health check failing: {slug}",
                                        severity="critical", firing=True, summary="", labels={"check": slug, **labels}, environment=env)


def test_a_failover_silences_the_database_alerts_of_its_environment_only(aws_platform, lead):
    env = aws_platform
    services.rds_failover(environment=env, actor=lead, reason="planned failover test")
    made = Silence.objects.filter(expected="rds failover")
    assert {tuple(sorted(s.matchers.items())) for s in made} == {
        (("environment", env.name), ("metric", "db_connections")), (("environment", env.name), ("kind", "rds"))}
    s = made.first()
    assert s.reason == "expected: rds failover" and s.ends_at > timezone.now() + services.FAILOVER_SILENCE
    assert health_alert(env, f"{env.name}-rds", {"kind": "rds"}).incident.silenced_reason == "expected: rds failover"
    cpu = health_alert(env, f"{env.name}-cpu-critical", {"metric": "cpu", "kind": "metric_threshold"})
    assert cpu.incident.silenced_reason == "" and cpu.incident.next_escalation_at is not None


def test_a_scale_silences_its_colour_group_check_and_cpu(aws_platform, lead):
    env = aws_platform
    action = services.environment_scale(environment=env, colour="green", desired=1, actor=lead, reason="warm the idle colour")
    made = Silence.objects.filter(ref=f"scale:{action.public_id}")
    assert {tuple(sorted(s.matchers.items())) for s in made} == {
        (("colour", "green"), ("environment", env.name), ("metric", "cpu")), (("check", f"{env.name}-asg-green"), ("environment", env.name)),
        (("environment", env.name), ("metric", "cpu"), ("scope", "platform"))}
    assert silences.hold_for({"environment": env.name, "check": f"{env.name}-asg-green"}) is not None
    assert silences.hold_for({"environment": env.name, "check": f"{env.name}-asg-blue"}) is None
    assert silences.hold_for({"environment": env.name, "metric": "cpu", "colour": "blue"}) is None


def test_a_planned_hold_silences_its_rollouts_stall_alert_until_it_resumes(aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick", launch_template_version="$Latest",
                                     actor=responder)
    drive(dep, clock, until=("holding",))
    services.deployment_pause(deployment=dep, actor=responder, reason="waiting for the partner's go")
    stall = {"environment": env.name, "alertname": "RolloutStalled", "deployment": str(dep.public_id)}
    hold = silences.hold_for(stall)
    assert hold is not None and hold.reason == "expected: deployment hold"
    assert silences.hold_for({**stall, "deployment": "another"}) is None
    services.deployment_resume(deployment=dep, actor=responder)
    assert silences.hold_for(stall, timezone.now() + silences.EXPECTED_MARGIN + timedelta(seconds=1)) is None
