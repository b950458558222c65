"""Registers incident command's beat rows (called by seed_defaults through PORTAL_SEEDERS)."""

from __future__ import annotations

from portal.plan.loader import SeedStats, periodic_task_ensure

PERIODIC = [
    # (name, task, every seconds, queue)
    ("command: stakeholder update reminders", "portal.command.tasks.update_reminders", 60, "default"),
    ("command: nag owners of overdue action items", "portal.command.tasks.nag_action_items", 3600, "default"),
]


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    for name, task, every, queue in PERIODIC:
        periodic_task_ensure(name=name, task=task, every_seconds=every, queue=queue, stats=stats)
    return stats
