"""The rollout through a real Celery worker (a thread on the embedded filesystem broker, as `make run`), driven by the beat task."""

from __future__ import annotations

import time

import pytest

from deployments import cloudops, services, tasks
from deployments.models import Deployment, Strategy

pytestmark = [pytest.mark.real_broker, pytest.mark.slow]


def test_canary_through_a_worker_and_the_driver(transactional_db, aws_platform, strategies, fake_metrics, fast, responder):
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    Strategy.objects.create(slug="canary-test", name="Canary (test)", kind="canary", weights=[5, 25, 50, 100],
                            hold_seconds=[1, 1, 1, 1], watch_seconds=1, min_requests=10)
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
        dep = services.deployment_create(environment=aws_platform, version="v2", strategy="canary-test",
                                         launch_template_version="$Latest", actor=responder)
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks.deployments_drive.delay()  # what beat does every 2 s
            time.sleep(0.3)
            d = Deployment.objects.get(pk=dep.pk)
            w = cloudops.read_weights(aws_platform)["green"]
            if not seen or seen[-1] != w:
                seen.append(w)
            if d.state in ("completed", "failed", "rolled_back", "paused"):
                break
    assert Deployment.objects.get(pk=dep.pk).state == "completed"
    assert [w for w in seen if w] == [5, 25, 50, 100]
