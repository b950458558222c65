"""Periodic sampling of the platform (beat row registered by phases/seed.py): users, instances, cost."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from portal.cloud.models import Environment
from portal.phases.budget import budget_evaluate
from portal.phases.services import (
    capacity_sample_record,
    cost_snapshot_record,
    user_count_sample_from_metrics,
)

log = logging.getLogger(__name__)


@shared_task(bind=True, queue="polling", acks_late=True, soft_time_limit=60, time_limit=90)
def phases_sample_users(self, environment_name: str | None = None) -> dict:
    """One sample of users, instances and cost; each part is independent (a failing one is skipped)."""
    out: dict = {}
    sample = user_count_sample_from_metrics(environment_name=environment_name)
    out["users"] = sample.users if sample else None
    env = Environment.objects.filter(name=environment_name).first() if environment_name else Environment.objects.filter(
        name=_default()).first()
    if env is not None:
        cap = capacity_sample_record(environment=env)
        out["instances"] = None if cap is None else {"blue": cap.blue_in_service, "green": cap.green_in_service}
        cost = cost_snapshot_record(environment=env)
        out["cost"] = None if cost is None else float(cost.total)
    return out


@shared_task(bind=True, queue="polling", acks_late=True, soft_time_limit=60, time_limit=90)
def phases_budget_evaluate(self, environment_name: str | None = None) -> dict:
    """Budget and growth alerts for the environment (beat row registered by phases/seed.py); safe to redeliver:
    a standing finding repeats its alert, which opens no second incident."""
    env = Environment.objects.filter(name=environment_name or _default()).first()
    if env is None:
        return {"skipped": "no environment"}
    return budget_evaluate(environment=env)


def _default() -> str:
    return settings.DEFAULT_ENVIRONMENT
