"""Periodic sampling of the platform's user count (beat row registered by phases/seed.py)."""

from __future__ import annotations

from celery import shared_task


@shared_task(bind=True, queue="polling", acks_late=True, soft_time_limit=60, time_limit=90)
def phases_sample_users(self, environment_name: str | None = None) -> int | None:
    from portal.phases.services import user_count_sample_from_metrics

    sample = user_count_sample_from_metrics(environment_name=environment_name)
    return sample.users if sample else None
