"""How many AWS calls a rollback makes, and whether any read happens under the environment's row lock.

Counted with botocore's own event hooks on the portal's cached clients, so every request the wrapper
sends is seen, whichever function sent it.
"""

from __future__ import annotations

import pytest

from deployments import rollback, services
from deployments.rollback import rollback_advance
from deployments.tests.conftest import drive
from portal.cloud.clients import raw_client

LOCK = "lock environment"


@pytest.fixture
def aws_calls(aws_platform, monkeypatch):
    """Every AWS operation sent for the environment, in order, with LOCK where the rollback takes its row lock."""
    calls: list[str] = []

    def seen(model=None, **kwargs):
        calls.append(model.name)

    for service in ("elbv2", "autoscaling", "ec2"):
        raw_client(aws_platform, service).meta.events.register("before-call.*", seen, unique_id="test-aws-calls")
    real_lock = rollback.lock_environment

    def lock(environment):
        calls.append(LOCK)
        return real_lock(environment)

    monkeypatch.setattr(rollback, "lock_environment", lock)
    yield calls
    for service in ("elbv2", "autoscaling", "ec2"):
        raw_client(aws_platform, service).meta.events.unregister("before-call.*", unique_id="test-aws-calls")


def test_one_rollback_pass_makes_one_listener_change_and_reads_it_back_once(
        aws_platform, strategies, fake_metrics, fast, clock, responder, aws_calls):
    env = aws_platform
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    assert drive(dep, clock, until=("holding",)) == "holding"  # 5 % on green, blue still warm

    aws_calls.clear()
    rb = services.environment_rollback(environment=env, actor=responder, reason="bad release")
    # The click reads the listener once, before it takes the lock.
    assert aws_calls == ["DescribeListeners", LOCK]

    aws_calls.clear()
    assert rollback_advance(rollback_id=rb.pk) == "completed"
    assert aws_calls.count("ModifyListener") == 1
    assert aws_calls.count("DescribeListeners") == 1
    # The capacity check reads before the lock; under it only the change and its one read-back.
    first_lock = aws_calls.index(LOCK)
    assert "DescribeAutoScalingGroups" in aws_calls[:first_lock]
    assert [c for c in aws_calls[first_lock:] if c != LOCK] == ["ModifyListener", "DescribeListeners"]
    rb.refresh_from_db()
    assert rb.weights_after == {"blue": 100, "green": 0}
