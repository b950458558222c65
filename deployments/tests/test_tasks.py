"""Seeder (strategies and beat rows), the beat driver and the watchdog."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from deployments import services, tasks
from deployments.models import Deployment, Strategy
from deployments.seed import seed
from portal.plan.loader import load_plan


def test_seed_loads_strategies_and_periodic_tasks_idempotently(db):
    from django_celery_beat.models import PeriodicTask

    first = seed(load_plan(), reset=False)
    again = seed(load_plan(), reset=False)
    assert first.created >= 6 and again.created == 0
    quick = Strategy.objects.get(slug="canary-quick")
    assert quick.weights == [5, 25, 50, 100] and quick.hold_seconds == [10, 10, 10, 10] and quick.watch_seconds == 10
    assert Strategy.objects.get(slug="blue-green").kind == "blue_green"
    rows = {p.task: p for p in PeriodicTask.objects.filter(task__startswith="deployments.")}
    assert set(rows) == {"deployments.tasks.deployments_drive", "deployments.tasks.deployments_watchdog",
                         "deployments.tasks.autoscale_evaluate"}
    assert rows["deployments.tasks.deployments_drive"].queue == "actions"
    assert rows["deployments.tasks.deployments_watchdog"].queue == "default"  # a dead actions worker cannot silence it
    assert rows["deployments.tasks.deployments_drive"].interval.every == 2


def test_drive_moves_due_rollouts_and_the_watchdog_alerts_once_on_a_stall(aws_platform, strategies, fake_metrics, fast,
                                                                         responder, django_capture_on_commit_callbacks):
    env = aws_platform
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    assert tasks.deployments_drive.delay().get() == {"deployments": 1, "rollbacks": 0}
    dep.refresh_from_db()
    assert dep.state == "holding" and dep.step_index == 0  # prepared, smoke-checked, shifted to 5 % in one go
    # Nobody drives it any more (no worker): once it is late by more than the stall time, one alert.
    Deployment.objects.filter(pk=dep.pk).update(wake_at=timezone.now() - timedelta(hours=1))
    assert tasks.deployments_watchdog.delay().get() == 1
    assert tasks.deployments_watchdog.delay().get() == 0
    from portal.incidents.models import Alert

    alert = Alert.objects.get(name="RolloutStalled")
    assert alert.labels["deployment"] == str(dep.public_id) and "actions queue" in alert.summary
