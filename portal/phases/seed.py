"""Loads the plan's growth phases and their focus items; registers the user-sampling beat row."""

from __future__ import annotations

from decimal import Decimal

from portal.phases.models import GrowthPhase, PhaseFocusItem
from portal.plan.loader import SeedStats, periodic_task_ensure, upsert_seeded

SAMPLE_TASK = "portal.phases.tasks.phases_sample_users"
SAMPLE_EVERY_SECONDS = 300
BUDGET_TASK = "portal.phases.tasks.phases_budget_evaluate"
BUDGET_EVERY_SECONDS = 900


def seed_phases(plan: dict, *, reset: bool, stats: SeedStats) -> None:
    for row in plan.get("phases") or []:
        values = {
            "slug": row["slug"],
            "name": row["name"],
            "users_min": int(row["users_min"]),
            "users_max": int(row["users_max"]),
            "months": str(row.get("months", "")),
            "month_start": int(row.get("month_start", 1)),
            "month_end": int(row.get("month_end", row.get("month_start", 1))),
            "instances_min": int(row["instances_min"]),
            "instances_max": int(row["instances_max"]),
            "monthly_cost": Decimal(str(row["monthly_cost"])).quantize(Decimal("0.01")),
            "infrastructure": row.get("infrastructure", ""),
        }
        phase = upsert_seeded(GrowthPhase, {"number": int(row["number"])}, values, reset=reset, stats=stats)
        for position, text in enumerate(row.get("focus") or [], start=1):
            # Only the text is seeded: done/by/at belong to the people ticking the items.
            upsert_seeded(PhaseFocusItem, {"phase": phase, "position": position}, {"text": text}, reset=reset, stats=stats)


def register_beat(stats: SeedStats) -> None:
    periodic_task_ensure(name="phases: sample the user count", task=SAMPLE_TASK,
                         every_seconds=SAMPLE_EVERY_SECONDS, queue="polling", stats=stats)
    periodic_task_ensure(name="phases: budget and growth alerts", task=BUDGET_TASK,
                         every_seconds=BUDGET_EVERY_SECONDS, queue="polling", stats=stats)


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    seed_phases(plan, reset=reset, stats=stats)
    register_beat(stats)
    return stats
