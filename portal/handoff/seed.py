"""Registers the handoff check's beat row (every minute)."""

from __future__ import annotations

from portal.plan.loader import SeedStats, periodic_task_ensure

CHECK_TASK = "portal.handoff.tasks.check_shift_changes"
CHECK_EVERY_SECONDS = 60


def register_beat(stats: SeedStats) -> None:
    periodic_task_ensure(name="handoff: shift changes", task=CHECK_TASK, every_seconds=CHECK_EVERY_SECONDS,
                         queue="default", stats=stats)


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    register_beat(stats)
    return stats
