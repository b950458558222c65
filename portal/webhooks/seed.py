"""The beat row of the webhook retry sweep (idempotent)."""

from __future__ import annotations

from portal.plan.loader import SeedStats, periodic_task_ensure


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    periodic_task_ensure(name="webhooks: retry due deliveries", task="portal.webhooks.tasks.sweep", every_seconds=15,
                         queue="default", stats=stats)
    return stats
