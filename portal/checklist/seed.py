"""Loads the plan's checklist items; registers the scheduled verification."""

from __future__ import annotations

from portal.checklist.models import ChecklistItem
from portal.plan.loader import SeedStats, periodic_task_ensure, upsert_seeded

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
    periodic_task_ensure(name="checklist: automated verifications", task=VERIFY_TASK,
                         every_seconds=VERIFY_EVERY_SECONDS, queue="polling", stats=stats)


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    seed_items(plan, reset=reset, stats=stats)
    register_beat(stats)
    return stats
