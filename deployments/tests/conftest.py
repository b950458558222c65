"""Fixtures for the deployments tests: seeded strategies, a scripted metrics source, a rollout driver."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.utils import timezone


@pytest.fixture
def strategies(db):
    from deployments.seed import seed_strategies
    from portal.plan.loader import SeedStats, load_plan

    seed_strategies(load_plan(), reset=True, stats=SeedStats())
    from deployments.models import Strategy

    return {s.slug: s for s in Strategy.objects.all()}


@dataclass
class FakeMetrics:
    """Per colour numbers; a colour's numbers apply only while it has traffic (or `always`)."""

    env: object = None
    values: dict = field(default_factory=lambda: {
        "blue": {"error_rate": 0.5, "p95": 0.30, "requests": 3000.0, "cpu": 45.0},
        "green": {"error_rate": 0.5, "p95": 0.30, "requests": 3000.0, "cpu": 45.0},
    })
    follow_weights: bool = True
    calls: list = field(default_factory=list)

    def _share(self, colour):
        if not self.follow_weights:
            return 1.0
        from deployments import cloudops

        return cloudops.read_weights(self.env).get(colour, 0) / 100.0

    def request_count(self, colour, minutes):
        self.calls.append(("requests", colour))
        return self.values[colour]["requests"] * self._share(colour)

    def error_rate(self, colour, minutes):
        return self.values[colour]["error_rate"] if self.request_count(colour, minutes) else None

    def p95_latency(self, colour, minutes):
        return self.values[colour]["p95"] if self.request_count(colour, minutes) else None

    def cpu(self, colour, minutes):
        return self.values[colour]["cpu"]

    def series(self, metric, colour, minutes, period_seconds):
        return []


@pytest.fixture
def fake_metrics(monkeypatch, aws_platform):
    from deployments import cloudops

    fake = FakeMetrics(env=aws_platform)
    monkeypatch.setattr(cloudops, "metrics", lambda env: fake)
    return fake


@pytest.fixture
def fast(settings):
    settings.DEPLOYMENTS_WEIGHT_READBACK_DELAY = 0.0
    settings.DEPLOYMENTS_ROLLBACK_POLL_SECONDS = 0.01
    settings.DEPLOYMENTS_ROLLBACK_TASK_BUDGET_SECONDS = 0.5
    settings.DEPLOYMENTS_POLL_SECONDS = 1.0
    return settings


class Clock:
    def __init__(self):
        self.now = timezone.now()

    def advance(self, seconds: float):
        # Never behind the wall clock: rows created during the test (a deployment's wake time) carry
        # real time, and a slow first AWS call must not leave the virtual clock before them.
        self.now = max(self.now, timezone.now()) + timedelta(seconds=seconds)
        return self.now


def drive(deployment, clock: Clock, *, until=("completed", "rolled_back", "failed", "aborted", "paused", "rolling_back"),
          max_passes: int = 400, on_pass=None) -> str:
    """Run the rollout pass by pass, jumping the clock to each wake time (no sleeping)."""
    from deployments.models import Deployment
    from deployments.rollout import deployment_advance

    state = ""
    for _ in range(max_passes):
        state = deployment_advance(deployment_id=deployment.pk, now=clock.now)
        if on_pass:
            on_pass(state)
        if state in until:
            return state
        dep = Deployment.objects.get(pk=deployment.pk)
        if dep.wake_at and dep.wake_at > clock.now:
            clock.now = dep.wake_at
        else:
            clock.advance(1)
    raise AssertionError(f"rollout did not reach {until}; last state {state}")


@pytest.fixture
def clock():
    return Clock()
