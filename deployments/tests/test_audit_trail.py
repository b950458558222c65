"""A failed or refused cloud action leaves its audit row; automatic changes are audited as the system."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from deployments import cloudops, errors, services
from deployments.models import Rollback
from deployments.rollback import rollback_advance
from deployments.tests.conftest import drive
from portal.audit.models import AuditEvent
from portal.cloud import aws
from portal.cloud.clients import client


def _split(env, responder, clock, strategies, fake_metrics, fast):
    """A rollout holding at its first step: traffic split, a rollback has something to do."""
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    assert drive(dep, clock, until=("holding",)) == "holding"
    assert cloudops.read_weights(env)["green"] > 0
    return dep


def _access_denied(*args, **kwargs):
    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not authorized to perform elasticloadbalancing:ModifyListener"}},
                      "ModifyListener")


def test_rollback_that_aws_refuses_leaves_an_error_row(aws_platform, strategies, fake_metrics, fast, clock, responder,
                                                        monkeypatch):
    env = aws_platform
    _split(env, responder, clock, strategies, fake_metrics, fast)
    monkeypatch.setattr(aws, "set_listener_weights", _access_denied)
    rb = services.environment_rollback(environment=env, actor=responder, reason="bad release")
    rollback_advance(rollback_id=rb.pk)
    row = AuditEvent.objects.get(verb="environment.weights", result="error")
    assert row.actor_label == "system:rollback" and row.target_type == "cloud.environment"
    assert "AccessDenied" in row.extra["error"] and "ModifyListener" in row.extra["error"]
    assert row.after == {"weights": {"blue": 100, "green": 0}}


def test_rollback_refused_before_anything_changed_is_audited_outside_its_rolled_back_transaction(
        aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    _split(env, responder, clock, strategies, fake_metrics, fast)
    client(env, "elbv2").delete_listener(ListenerArn=env.listener_arn)  # AWS now refuses every listener call
    with pytest.raises(Exception) as raised:
        services.environment_rollback(environment=env, actor=responder, reason="bad release")
    assert not Rollback.objects.filter(environment=env).exists()  # the transaction rolled back
    row = AuditEvent.objects.get(verb="environment.rollback")
    assert row.result == "error" and row.actor == responder
    assert type(raised.value).__name__ in row.extra["error"] and "Listener" in row.extra["error"]


def test_failed_scale_keeps_its_error_row(aws_platform, responder, monkeypatch):
    env = aws_platform

    def refuse(*a, **k):
        _access_denied()

    monkeypatch.setattr(aws, "set_desired_capacity", refuse)
    with pytest.raises(Exception, match="AccessDenied"):
        services.environment_scale(environment=env, colour="green", desired=1, actor=responder, reason="warm up")
    row = AuditEvent.objects.get(verb="environment.scale")
    assert row.result == "error" and row.extra["colour"] == "green" and "AccessDenied" in row.extra["error"]


def test_refusal_by_the_portal_itself_writes_no_error_row(aws_platform, responder):
    with pytest.raises(errors.InvalidInput):
        services.environment_scale(environment=aws_platform, colour="green", desired=1, actor=responder, reason="")
    assert not AuditEvent.objects.filter(verb="environment.scale").exists()


def test_automatic_weight_and_launch_template_changes_are_audited_as_the_system(
        aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    assert drive(dep, clock) == "completed"
    weights = list(AuditEvent.objects.filter(verb="environment.weights").order_by("created_at", "id"))
    assert [e.after["weights"]["green"] for e in weights] == [5, 25, 50, 100]
    assert {e.actor_label for e in weights} == {"system:rollout"} and all(e.result == "ok" for e in weights)
    assert weights[0].before == {"weights": {"blue": 100, "green": 0}}
    template = AuditEvent.objects.get(verb="environment.launch_template")
    assert template.actor_label == "system:rollout" and template.extra["colour"] == "green"


def test_widened_group_bounds_are_audited(aws_platform, responder, lead):
    env = aws_platform
    group = aws.describe_groups(env)["green"]
    desired = int(group.max_size) + 1
    services.environment_scale(environment=env, colour="green", desired=desired, actor=responder, reason="load test",
                               approved_by=lead)
    row = AuditEvent.objects.get(verb="environment.group_bounds")
    assert row.actor == responder and row.after["max_size"] == desired
    assert row.before["max_size"] == int(group.max_size) and row.extra["widened"] == {"MaxSize": desired}
