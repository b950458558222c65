"""Ten people (or a person and the automatic rollback) press rollback at once: one rollback happens."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from deployments import cloudops, errors, services
from deployments.models import Deployment, Rollback
from deployments.tests.conftest import drive
from portal.audit.models import AuditEvent
from portal.cloud import aws


@pytest.mark.postgres
def test_ten_concurrent_rollbacks_make_one_weight_change_and_one_audit_event(
        require_postgres, transactional_db, aws_platform, strategies, fake_metrics, fast, clock, responder, monkeypatch):
    env = aws_platform
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    drive(dep, clock, until=("holding",))
    drive(dep, clock, until=("holding",), on_pass=None)
    assert cloudops.read_weights(env)["green"] in (5, 25)

    changes = []
    real = aws.set_listener_weights

    def spy(e, weights):
        changes.append(dict(weights))
        return real(e, weights)

    monkeypatch.setattr(aws, "set_listener_weights", spy)
    barrier = threading.Barrier(10)
    outcomes: list = []
    lock = threading.Lock()

    def press(i):
        try:
            barrier.wait(timeout=10)
            actor = "system:rollout" if i == 0 else responder  # one of them is the automatic rollback
            rb = services.environment_rollback(environment=env, actor=actor, reason=f"click {i}", automatic=(i == 0))
            with lock:
                outcomes.append(("started", rb.pk))
        except errors.AlreadyInProgress as exc:
            with lock:
                outcomes.append(("already", exc.detail))
        except Exception as exc:  # noqa: BLE001
            with lock:
                outcomes.append(("error", repr(exc)))
        finally:
            connection.close()

    threads = [threading.Thread(target=press, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [o for o in outcomes if o[0] == "error"] == []
    assert len([o for o in outcomes if o[0] == "started"]) == 1, outcomes
    assert len([o for o in outcomes if o[0] == "already"]) == 9
    assert Rollback.objects.count() == 1
    assert AuditEvent.objects.filter(verb="environment.rollback").count() == 1
    # The winner's task ran (eagerly, after commit): one weight change, read back at 100 % blue.
    assert changes == [{"blue": 100, "green": 0}]
    assert cloudops.read_weights(env) == {"blue": 100, "green": 0}
    assert Deployment.objects.get(pk=dep.pk).state == "rolled_back"
