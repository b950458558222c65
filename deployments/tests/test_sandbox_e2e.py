"""End to end on the sandbox platform with the real simulator and CloudWatch metrics (no scripted numbers).

The state machine's clock jumps over the holds; the simulator writes traffic at real time, so the
metric windows the analysis reads hold what the listener weights and the drills produced.
"""

from __future__ import annotations

import random

import pytest

from deployments import cloudops, services
from deployments.models import Analysis, Deployment, DeploymentEvent, Rollback
from deployments.rollback import rollback_advance
from deployments.tests.conftest import drive
from portal.cloud import aws
from portal.sandbox import simulator

pytestmark = pytest.mark.slow


@pytest.fixture
def traffic(settings):
    settings.SANDBOX_MIN_RPS = 200.0  # enough requests at a 5 % step in a few ticks
    rng = random.Random(7)

    def run(env, ticks=3):
        for _ in range(ticks):
            simulator.tick(env, rng=rng)

    return run


def test_canary_quick_on_the_simulator_completes(aws_platform, strategies, fast, clock, responder, traffic):
    env = aws_platform
    traffic(env)
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    read_backs = []

    def on_pass(state):
        if state == "holding":
            green = cloudops.read_weights(env)["green"]
            if not read_backs or read_backs[-1] != green:
                read_backs.append(green)
            traffic(env)

    assert drive(dep, clock, on_pass=on_pass) == "completed"
    assert read_backs == [5, 25, 50, 100]
    decisions = list(Analysis.objects.filter(deployment=dep, watching=False).values_list("weight", "decision"))
    # Every hold was analysed more than once, and the simulator's clean traffic passed every run.
    assert [w for w in (5, 25, 50, 100) if sum(1 for x, _ in decisions if x == w) >= 2] == [5, 25, 50, 100]
    assert {d for _, d in decisions} == {"pass"}
    assert aws.describe_groups(env)["blue"].desired == 0


def test_error_rate_drill_on_green_during_the_25_hold_rolls_back_and_opens_an_incident(
        aws_platform, strategies, fast, clock, responder, lead, traffic, django_capture_on_commit_callbacks):
    from portal.sandbox.services import drill_start

    env = aws_platform
    traffic(env)
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    drilled = {"at": None}

    def on_pass(state):
        d = Deployment.objects.get(pk=dep.pk)
        if state == "holding" and d.step_index == 1 and drilled["at"] is None:
            drilled["at"] = d.wake_at
            drill_start(environment=env, kind="error-rate", colour="green", level=20, minutes=5, actor=lead)
        if state == "holding":
            traffic(env, ticks=4)

    assert drive(dep, clock, on_pass=on_pass) == "rolling_back"
    failed = Analysis.objects.get(deployment=dep, decision__in=("fail", "critical"))
    assert failed.weight == 25 and failed.new_error_rate > 5.0 > failed.old_error_rate
    # Within one analysis interval: the first analysis after the drill began is the one that failed.
    assert Analysis.objects.filter(deployment=dep, weight=25).count() == 1
    rb = Rollback.objects.get(deployment=dep)
    assert rb.automatic
    with django_capture_on_commit_callbacks(execute=True):
        assert rollback_advance(rollback_id=rb.pk) == "completed"
    assert cloudops.read_weights(env) == {"blue": 100, "green": 0}
    dep.refresh_from_db()
    assert dep.state == "rolled_back" and dep.incident is not None
    assert dep.incident.environment == env and "analysis" in dep.incident.title.lower()
    kinds = list(DeploymentEvent.objects.filter(deployment=dep).values_list("kind", flat=True))
    assert "analysis" in kinds and "rollback" in kinds


@pytest.fixture
def lowest_traffic(settings):
    settings.SANDBOX_MIN_RPS = 10.0  # the sandbox's floor: half a request a second at a 5 % step
    rng = random.Random(11)

    def run(env, ticks=1):
        for _ in range(ticks):
            simulator.tick(env, rng=rng)

    return run


def test_a_clean_canary_at_the_sandboxs_lowest_traffic_completes_without_a_promote(
        aws_platform, strategies, fast, clock, responder, lowest_traffic):
    env = aws_platform
    lowest_traffic(env, ticks=2)
    dep = services.deployment_create(environment=env, version="v2-low", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)

    def on_pass(state):
        if state in ("holding", "watching"):
            lowest_traffic(env)

    assert drive(dep, clock, on_pass=on_pass) == "completed"
    runs = list(Analysis.objects.filter(deployment=dep, watching=False))
    first = [a for a in runs if a.weight == 5]
    # At 5 % it first could not tell (a handful of requests), held on, then passed on the evidence.
    assert first[0].decision == "inconclusive" and first[-1].decision == "pass"
    assert first[-1].new_requests >= 10 and first[-1].new_error_upper < 5
    assert not any(a.decision in ("fail", "critical") for a in runs)
    assert not DeploymentEvent.objects.filter(deployment=dep, message__icontains="promoted").exists()


def test_a_clearly_worse_canary_at_the_lowest_traffic_fails(aws_platform, strategies, fast, clock, responder, lead,
                                                             lowest_traffic):
    from portal.sandbox.services import drill_start

    env = aws_platform
    lowest_traffic(env, ticks=2)
    dep = services.deployment_create(environment=env, version="v2-bad", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    drill_start(environment=env, kind="error-rate", colour="green", level=30, minutes=30, actor=lead)

    def on_pass(state):
        if state in ("holding", "watching"):
            lowest_traffic(env)

    assert drive(dep, clock, on_pass=on_pass) == "rolling_back"
    failed = Analysis.objects.filter(deployment=dep, decision__in=("fail", "critical")).last()
    assert failed.weight == 5 and failed.new_errors >= 2
    assert cloudops.read_weights(env)["green"] <= 5
