"""The automatic scaler: one step after the set time, within the phase, cooldown, a lead paged beyond the maximum."""

from __future__ import annotations

from deployments import autoscale, services
from deployments.models import AutoscaleDecision, ScaleAction
from portal.cloud import aws


def test_cpu_high_scales_out_one_step_after_the_set_time_not_within_cooldown_not_past_phase_max(
        aws_platform, strategies, fake_metrics, settings, clock, django_capture_on_commit_callbacks):
    settings.DEPLOYMENTS_AUTOSCALE_HIGH_SECONDS = 120
    settings.DEPLOYMENTS_AUTOSCALE_COOLDOWN_SECONDS = 300
    env = aws_platform
    assert aws.describe_groups(env)["blue"].desired == 2  # phase 1: 2-4 per colour
    fake_metrics.values["blue"]["cpu"] = 93.0  # a CPU drill on the live colour

    d = autoscale.evaluate(environment=env, now=clock.now)
    assert d.decision == "hold" and d.cpu == 93.0 and "hot since" in d.reason
    d = autoscale.evaluate(environment=env, now=clock.advance(60))
    assert d.decision == "hold"
    d = autoscale.evaluate(environment=env, now=clock.advance(61))
    assert d.decision == "scale_out" and (d.desired, d.new_desired) == (2, 3)
    assert aws.describe_groups(env)["blue"].desired == 3
    assert d.scale_action.read_back["desired"] == 3 and d.numbers["cpu_warning"] == 80.0

    # Still hot: not again within the cooldown.
    for _ in range(2):  # 242 s after the scale out, hot for 121 s again
        d = autoscale.evaluate(environment=env, now=clock.advance(121))
    assert d.decision == "cooldown"
    assert aws.describe_groups(env)["blue"].desired == 3
    # After the cooldown: one more step, to the phase maximum (4).
    d = autoscale.evaluate(environment=env, now=clock.advance(300))
    assert d.decision == "scale_out" and d.new_desired == 4
    # Past the maximum never automatically: a lead is paged with an approval waiting.
    clock.advance(400)
    autoscale.evaluate(environment=env, now=clock.now)
    with django_capture_on_commit_callbacks(execute=True):
        d = autoscale.evaluate(environment=env, now=clock.advance(121))
    assert d.decision == "at_max"
    assert aws.describe_groups(env)["blue"].desired == 4
    pending = ScaleAction.objects.get(state="awaiting_approval")
    assert pending.to_desired == 5
    from portal.incidents.models import Alert

    alert = Alert.objects.get(name="ScaleBeyondPhaseNeedsApproval")
    assert alert.severity == "critical" and "approve" in alert.summary
    # Asking again does not pile up requests.
    autoscale.evaluate(environment=env, now=clock.advance(200))
    assert ScaleAction.objects.filter(state="awaiting_approval").count() == 1


def test_autoscaler_stays_out_of_a_rollout_and_records_when_paused(aws_platform, strategies, fake_metrics, settings, clock,
                                                                    responder, lead):
    settings.DEPLOYMENTS_AUTOSCALE_HIGH_SECONDS = 0
    env = aws_platform
    fake_metrics.values["blue"]["cpu"] = 95.0
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    assert autoscale.evaluate(environment=env, now=clock.now).decision == "rollout"
    services.deployment_abort(deployment=dep, actor=responder)
    services.automation_set(environment=env, paused=True, actor=lead, reason="maintenance")
    env.refresh_from_db()
    d = autoscale.evaluate(environment=env, now=clock.advance(10))
    assert d.decision == "paused" and aws.describe_groups(env)["blue"].desired == 2
    services.automation_set(environment=env, paused=False, dry_run=True, actor=lead, reason="try it")
    env.refresh_from_db()
    d = autoscale.evaluate(environment=env, now=clock.advance(10))
    assert d.decision == "dry_run" and d.scale_action.state == "dry_run"
    assert aws.describe_groups(env)["blue"].desired == 2


def test_quiet_for_longer_scales_in_to_the_phase_minimum(aws_platform, strategies, fake_metrics, settings, clock):
    settings.DEPLOYMENTS_AUTOSCALE_LOW_SECONDS = 600
    settings.DEPLOYMENTS_AUTOSCALE_COOLDOWN_SECONDS = 0
    env = aws_platform
    aws.set_desired_capacity(env, "blue", 4)
    fake_metrics.values["blue"].update(cpu=10.0, requests=60.0)
    autoscale.evaluate(environment=env, now=clock.now)
    assert autoscale.evaluate(environment=env, now=clock.advance(300)).decision == "hold"
    d = autoscale.evaluate(environment=env, now=clock.advance(301))
    assert d.decision == "scale_in" and d.new_desired == 3
    clock.advance(700)
    autoscale.evaluate(environment=env, now=clock.now)
    assert autoscale.evaluate(environment=env, now=clock.advance(601)).new_desired == 2
    clock.advance(700)
    autoscale.evaluate(environment=env, now=clock.now)
    d = autoscale.evaluate(environment=env, now=clock.advance(601))
    assert d.decision == "hold" and "minimum" in d.reason
    assert AutoscaleDecision.objects.filter(decision="scale_in").count() == 2
