"""The rollout state machine against moto in process (aws_platform), with scripted metrics."""

from __future__ import annotations

import pytest

from deployments import cloudops, errors, services
from deployments.models import Analysis, Deployment, DeploymentEvent, Rollback, ScaleAction
from deployments.rollback import rollback_advance
from deployments.rollout import deployment_advance
from deployments.tests.conftest import drive
from portal.cloud import aws


def start(env, responder, strategy="canary-quick", version="v2"):
    return services.deployment_create(environment=env, version=version, strategy=strategy,
                                      launch_template_version="$Latest", actor=responder)


def test_canary_quick_steps_5_25_50_100_with_read_back_then_scales_old_colour_down(
        aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    dep = start(env, responder)
    assert (dep.from_colour, dep.to_colour) == ("blue", "green")
    seen_after_each_step = []

    def after(state):
        d = Deployment.objects.get(pk=dep.pk)
        if state == "holding":
            seen = cloudops.read_weights(env)
            if not seen_after_each_step or seen_after_each_step[-1] != seen:
                seen_after_each_step.append(seen)
            assert d.weights == seen_after_each_step[-1]

    state = drive(dep, clock, on_pass=after)
    assert state == "completed"
    assert [w["green"] for w in seen_after_each_step] == [5, 25, 50, 100]
    events = DeploymentEvent.objects.filter(deployment=dep, kind="weights").order_by("at", "id")
    assert [e.data["weights"]["green"] for e in events] == [5, 25, 50, 100]
    assert all(e.data["weights"] == e.data["asked"] for e in events)
    # Each hold was analysed with numbers, and passed.
    analyses = list(Analysis.objects.filter(deployment=dep).order_by("at"))
    held = [a.weight for a in analyses if not a.watching]
    assert sorted(set(held)) == [5, 25, 50, 100] and held == sorted(held)
    # Analysed all through each 10-second hold (every 3 s), not once at its end; and through the watch window.
    assert all(held.count(w) >= 3 for w in (5, 25, 50, 100))
    assert any(a.watching for a in analyses)
    assert all(a.decision == "pass" for a in analyses)
    first = analyses[0]
    assert first.new_errors == pytest.approx(0.75) and first.p_value is not None and first.new_error_upper < 5
    assert first.thresholds["critical_error_rate"] == 5 and first.template_slug == "sandbox-quick"
    assert analyses[0].new_error_rate == 0.5 and analyses[0].new_requests == pytest.approx(150)
    # Green got the live colour's capacity; after the watch window blue was scaled down to 0 (read back).
    groups = aws.describe_groups(env)
    assert groups["green"].desired == 2 and groups["blue"].desired == 0
    assert cloudops.read_weights(env) == {"blue": 0, "green": 100}
    down = ScaleAction.objects.get(environment=env, colour="blue", to_desired=0)
    assert down.read_back["desired"] == 0 and down.state == "applied"
    dep.refresh_from_db()
    assert dep.finished_at is not None and dep.switched_at is not None
    # The watch window was respected: scale-down happened watch_seconds after the switch.
    assert (dep.finished_at - dep.switched_at).total_seconds() >= dep.strategy.watch_seconds


def test_failed_analysis_at_25_rolls_back_automatically_and_opens_an_incident(
        aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    dep = start(env, responder)

    def on_pass(state):
        d = Deployment.objects.get(pk=dep.pk)
        if d.step_index == 1:  # 25 %: green starts failing
            fake_metrics.values["green"]["error_rate"] = 9.0

    state = drive(dep, clock, on_pass=on_pass)
    assert state == "rolling_back"
    failed = Analysis.objects.get(deployment=dep, decision="critical")
    assert failed.weight == 25 and failed.new_error_rate == 9.0 and failed.old_error_rate == 0.5
    assert any("critical 5 %" in r for r in failed.reasons)
    rb = Rollback.objects.get(deployment=dep)
    assert rb.automatic and rb.to_colour == "blue"
    assert rollback_advance(rollback_id=rb.pk) == "completed"
    assert cloudops.read_weights(env) == {"blue": 100, "green": 0}
    dep.refresh_from_db()
    assert dep.state == "rolled_back"
    assert dep.incident is not None and dep.incident.severity == "critical"
    from deployments.selectors import incidents_for

    assert dep.incident in incidents_for(dep)


def test_no_traffic_on_the_new_colour_is_inconclusive_and_pauses(aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    fake_metrics.values["green"]["requests"] = 0.0
    dep = start(env, responder)
    assert drive(dep, clock) == "paused"
    dep.refresh_from_db()
    assert dep.step_index == 0 and "inconclusive" in dep.pause_reason
    runs = list(Analysis.objects.filter(deployment=dep))
    assert runs and all(r.decision == "inconclusive" for r in runs)
    # It held on past the 10-second hold, up to the template's extension, before pausing once.
    assert (runs[-1].at - runs[0].at).total_seconds() >= dep.strategy.template.max_extension_seconds
    assert cloudops.read_weights(env) == {"blue": 95, "green": 5}  # traffic held, not rolled back
    assert not Rollback.objects.exists()
    from portal.incidents.models import Alert

    assert Alert.objects.filter(name="RolloutInconclusive", status="firing").exists()
    # Resume once traffic flows: the step is held again and the rollout continues.
    fake_metrics.values["green"]["requests"] = 3000.0
    services.deployment_resume(deployment=dep, actor=responder)
    assert drive(dep, clock) == "completed"


def test_automation_paused_holds_the_rollout_and_a_failed_analysis_pages_instead(
        aws_platform, strategies, fake_metrics, fast, clock, responder, lead):
    env = aws_platform
    dep = start(env, responder)
    drive(dep, clock, until=("holding",))
    services.automation_set(environment=env, paused=True, actor=lead, reason="investigating")
    clock.advance(60)
    assert deployment_advance(deployment_id=dep.pk, now=clock.now) == "holding"  # holds
    assert cloudops.read_weights(env)["green"] == 5
    fake_metrics.values["green"]["error_rate"] = 20.0
    env.refresh_from_db()
    # Resume automation, fail the analysis while dry-run is on: a page, no automatic rollback.
    services.automation_set(environment=env, paused=False, dry_run=True, actor=lead, reason="dry run")
    assert deployment_advance(deployment_id=dep.pk, now=clock.now) == "paused"
    assert not Rollback.objects.exists()
    dep.refresh_from_db()
    assert "not rolled back automatically" in dep.pause_reason
    assert dep.incident is not None


def test_rollback_after_old_colour_scaled_to_zero_scales_up_waits_then_moves_traffic(
        aws_platform, strategies, fake_metrics, fast, clock, responder, monkeypatch):
    env = aws_platform
    dep = start(env, responder)
    assert drive(dep, clock) == "completed"
    assert aws.describe_groups(env)["blue"].desired == 0

    calls = []
    real_set_cap, real_set_w, real_healthy = aws.set_desired_capacity, aws.set_listener_weights, aws.healthy_count
    not_yet = {"n": 2}

    def spy_cap(e, colour, desired):
        calls.append(("capacity", colour, desired))
        return real_set_cap(e, colour, desired)

    def spy_w(e, weights):
        calls.append(("weights", dict(weights)))
        return real_set_w(e, weights)

    def slow_healthy(e, colour):
        # The new blue instances take two polls to pass their health checks.
        if colour == "blue" and any(c[0] == "capacity" for c in calls) and not_yet["n"] > 0:
            not_yet["n"] -= 1
            return 0
        return real_healthy(e, colour)

    monkeypatch.setattr(aws, "set_desired_capacity", spy_cap)
    monkeypatch.setattr(aws, "set_listener_weights", spy_w)
    monkeypatch.setattr(aws, "healthy_count", slow_healthy)

    rb = services.environment_rollback(environment=env, actor=responder, reason="bad release")
    assert rb.to_colour == "blue"
    assert rollback_advance(rollback_id=rb.pk) == "scaling_up"
    assert calls == [("capacity", "blue", 2)]
    assert rollback_advance(rollback_id=rb.pk) == "scaling_up"  # targets not healthy yet: traffic untouched
    assert cloudops.read_weights(env) == {"blue": 0, "green": 100}
    assert rollback_advance(rollback_id=rb.pk) == "completed"
    assert calls == [("capacity", "blue", 2), ("weights", {"blue": 100, "green": 0})]
    rb.refresh_from_db()
    assert rb.scaled_up and rb.capacity_ready_at <= rb.switched_at <= rb.confirmed_at
    assert rb.weights_after == {"blue": 100, "green": 0}
    # The audit tells the same order: request, scale-up, then the switch.
    from portal.audit.models import AuditEvent

    verbs = list(AuditEvent.objects.filter(verb__startswith="environment.").order_by("created_at", "id")
                 .values_list("verb", flat=True))
    tail = verbs[verbs.index("environment.rollback"):]
    assert tail == ["environment.rollback", "environment.scale", "environment.rollback_completed"]
    dep.refresh_from_db()
    assert dep.state == "rolled_back"


def test_rollout_step_run_twice_or_killed_mid_step_still_finishes(aws_platform, strategies, fake_metrics, fast, clock,
                                                                    responder, monkeypatch):
    env = aws_platform
    dep = start(env, responder)
    # A worker dies right after AWS took the 25 % weights but before the step was recorded.
    real_apply = cloudops.apply_weights
    died = {"done": False}

    def apply_then_die(e, weights, **kw):
        result = real_apply(e, weights, **kw)
        if weights.get("green") == 25 and not died["done"]:
            died["done"] = True
            raise SystemExit("worker killed")
        return result

    monkeypatch.setattr(cloudops, "apply_weights", apply_then_die)
    with pytest.raises(SystemExit):
        drive(dep, clock)
    dep.refresh_from_db()
    assert dep.state == "shifting" and dep.step_index == 0  # the half-done step was rolled back in the database
    # Redelivered (twice, even): the step is done once and the rollout finishes.
    deployment_advance(deployment_id=dep.pk, now=clock.now)
    deployment_advance(deployment_id=dep.pk, now=clock.now)
    assert drive(dep, clock) == "completed"
    weights = [e.data["weights"]["green"] for e in DeploymentEvent.objects.filter(deployment=dep, kind="weights").order_by("at", "id")]
    assert weights == [5, 25, 50, 100]


def test_one_deployment_at_a_time_and_bad_input(aws_platform, strategies, fake_metrics, responder):
    env = aws_platform
    start(env, responder)
    with pytest.raises(errors.AlreadyInProgress):
        start(env, responder, version="v3")
    with pytest.raises(errors.InvalidInput):
        services.deployment_create(environment=env, version="v4", strategy="canary", actor=responder)
    with pytest.raises(errors.InvalidInput):
        services.deployment_create(environment=env, version="", strategy="canary", launch_template_version="1", actor=responder)
    with pytest.raises(errors.InvalidInput):
        services.deployment_create(environment=env, version="v5", strategy="nope", launch_template_version="1", actor=responder)
    # The database says it too, whatever the service checks.
    from django.db import IntegrityError, transaction

    first = Deployment.objects.get()
    with pytest.raises(IntegrityError), transaction.atomic():
        Deployment.objects.create(environment=env, release=first.release, strategy=first.strategy, from_colour="blue",
                                  to_colour="green", state="holding")


def test_pause_promote_abort(aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    dep = start(env, responder)
    drive(dep, clock, until=("holding",))
    services.deployment_pause(deployment=dep, actor=responder, reason="look")
    services.deployment_pause(deployment=dep, actor=responder)  # second click: no error
    clock.advance(100)
    assert deployment_advance(deployment_id=dep.pk, now=clock.now) == "paused"
    services.deployment_promote(deployment=dep, actor=responder, reason="urgent fix")
    assert drive(dep, clock, until=("watching", "completed")) in ("watching", "completed")
    assert cloudops.read_weights(env) == {"blue": 0, "green": 100}
    dep.refresh_from_db()
    services.deployment_abort(deployment=dep, actor=responder, reason="changed my mind")
    dep.refresh_from_db()
    assert dep.state == "rolling_back"
    rb = Rollback.objects.get(deployment=dep)
    assert rollback_advance(rollback_id=rb.pk) == "completed"
    assert cloudops.read_weights(env) == {"blue": 100, "green": 0}


def test_release_by_image_pins_the_old_colour_so_a_rollback_launches_the_old_release(
        aws_platform, strategies, fake_metrics, fast, clock, responder):
    from portal.cloud.clients import client

    env = aws_platform
    ami = client(env, "ec2").describe_images()["Images"][0]["ImageId"]
    dep = services.deployment_create(environment=env, version="v-img", strategy="canary-quick", image_id=ami, actor=responder)
    drive(dep, clock, until=("holding",))
    groups = {g["AutoScalingGroupName"]: g["LaunchTemplate"]["Version"] for g in
              client(env, "autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]}
    blue_version, green_version = groups[env.blue_asg], groups[env.green_asg]
    assert blue_version != "$Latest" and green_version != "$Latest"
    assert int(green_version) == int(blue_version) + 1  # green runs the new version, blue is pinned to the old one
    # Aborting before traffic moved puts the idle colour's capacity back.
    dep2 = Deployment.objects.get(pk=dep.pk)
    assert dep2.baseline["to_desired_before"] == 0


def test_abort_before_traffic_moved_ends_it_and_scales_the_idle_colour_back(aws_platform, strategies, fake_metrics, fast,
                                                                           clock, responder, monkeypatch):
    env = aws_platform
    monkeypatch.setattr(cloudops, "healthy_count", lambda e, colour: 0)  # green's targets never get healthy
    dep = start(env, responder)
    assert deployment_advance(deployment_id=dep.pk, now=clock.advance(1)) == "preparing"
    assert aws.describe_groups(env)["green"].desired == 2
    services.deployment_abort(deployment=dep, actor=responder, reason="wrong build")
    dep.refresh_from_db()
    assert dep.state == "aborted" and not Rollback.objects.exists()
    assert aws.describe_groups(env)["green"].desired == 0
    assert cloudops.read_weights(env) == {"blue": 100, "green": 0}
