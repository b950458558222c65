"""The rollout through a real Celery worker (a thread on an in-memory broker), driven by the beat task.

(Not the embedded filesystem broker: kombu's filesystem transport can hand a consumer a message file
before its writer has filled it, which kills the worker with a JSONDecodeError under this test's load.)
"""

from __future__ import annotations

import time

import pytest

from deployments import cloudops, services, tasks
from deployments.models import AnalysisTemplate, Deployment, Strategy

pytestmark = [pytest.mark.real_broker, pytest.mark.slow]


def test_canary_through_a_worker_and_the_driver(transactional_db, aws_platform, strategies, fake_metrics, fast, responder):
    from celery.contrib.testing.worker import start_worker

    from portal.celery import app

    template = AnalysisTemplate.objects.create(slug="test-worker", name="Worker test", interval_seconds=1, min_requests=10,
                                               pass_error_rate_pct=100)
    Strategy.objects.create(slug="canary-test", name="Canary (test)", kind="canary", weights=[5, 25, 50, 100],
                            hold_seconds=[1, 1, 1, 1], watch_seconds=1, template=template)
    old = (app.conf.broker_url, app.conf.result_backend, app.conf.broker_transport_options)

    def use(broker, backend, options):
        app.conf.broker_url, app.conf.result_backend, app.conf.broker_transport_options = broker, backend, options
        app._pool = None  # connections made for the previous broker
        app.amqp._producer_pool = None

    use("memory://", "cache+memory://", {"polling_interval": 0.05})
    try:
        _run(app, start_worker, aws_platform, responder)
    finally:
        use(*old)


def _run(app, start_worker, env, responder):
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
        dep = services.deployment_create(environment=env, version="v2", strategy="canary-test",
                                         launch_template_version="$Latest", actor=responder)
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            tasks.deployments_drive.delay()  # what beat does every 2 s
            time.sleep(0.3)
            d = Deployment.objects.get(pk=dep.pk)
            w = cloudops.read_weights(env)["green"]
            if not seen or seen[-1] != w:
                seen.append(w)
            if d.state in ("completed", "failed", "rolled_back", "paused"):
                break
    assert Deployment.objects.get(pk=dep.pk).state == "completed"
    assert [w for w in seen if w] == [5, 25, 50, 100]
