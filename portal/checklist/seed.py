"""Loads the plan's checklist items; registers the scheduled verification."""

from __future__ import annotations

from portal.checklist.models import ChecklistItem
from portal.plan.loader import SeedStats, upsert_seeded

VERIFY_TASK = "portal.checklist.tasks.checklist_verify"
VERIFY_EVERY_SECONDS = 900


def seed_items(plan: dict, *, reset: bool, stats: SeedStats) -> None:
    for i, row in enumerate(plan.get("checklist") or [], start=1):
        values = {
            "position": int(row.get("position", i)),
            "title": row["title"],
            "description": row.get("description", ""),
            "owner_role": row.get("owner_role", "lead"),
            "verifiable": bool(row.get("verifiable", False)),
        }
        upsert_seeded(ChecklistItem, {"slug": row["slug"]}, values, reset=reset, stats=stats)


def register_beat(stats: SeedStats) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every, _ = IntervalSchedule.objects.get_or_create(every=VERIFY_EVERY_SECONDS, period=IntervalSchedule.SECONDS)
    _, created = PeriodicTask.objects.get_or_create(
        name="checklist: automated verifications",
        defaults={"task": VERIFY_TASK, "interval": every, "queue": "polling"},
    )
    if created:
        stats.created += 1
    else:
        stats.unchanged += 1


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    seed_items(plan, reset=reset, stats=stats)
    register_beat(stats)
    return stats
