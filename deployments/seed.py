"""Loads the plan's deployment strategies and registers the periodic tasks (django_celery_beat rows)."""

from __future__ import annotations

from deployments import conf
from deployments.models import Strategy
from portal.plan.loader import SeedStats, periodic_task_ensure, upsert_seeded

PERIODIC = [
    # (name, task, knob with the interval in seconds, queue); the watchdog sits on `default` so a dead
    # actions worker cannot silence it
    ("deployments: drive rollouts and rollbacks", "deployments.tasks.deployments_drive", "DRIVE_EVERY_SECONDS", "actions"),
    ("deployments: watchdog for stalled rollouts", "deployments.tasks.deployments_watchdog", "WATCHDOG_EVERY_SECONDS", "default"),
    ("deployments: automatic scaling", "deployments.tasks.autoscale_evaluate", "AUTOSCALE_EVERY_SECONDS", "actions"),
]


def seed_strategies(plan: dict, *, reset: bool, stats: SeedStats) -> None:
    for row in plan.get("deployment_strategies") or []:
        weights = [int(w) for w in row.get("weights") or []]
        holds = [int(h) for h in row.get("hold_seconds") or [0] * len(weights)]
        values = {
            "name": row.get("name", row["slug"]),
            "kind": row.get("kind", "canary"),
            "description": "\n".join(row.get("steps") or []),
            "weights": weights,
            "hold_seconds": holds,
            "watch_seconds": int(row.get("watch_seconds", 600)),
        }
        # A conclusive analysis needs roughly a request per 3 s of the shortest hold (3 to 100 requests):
        # the sandbox's 10-second holds see little traffic at 5 %, a 10-minute hold sees plenty.
        shortest = min([h for h in holds if h > 0] or [600])
        values["min_requests"] = max(3, min(100, shortest // 3))
        for key in ("error_margin_pct", "latency_margin_pct", "min_requests", "analysis_minutes", "prepare_timeout_seconds"):
            if key in row:
                values[key] = row[key]
        upsert_seeded(Strategy, {"slug": row["slug"]}, values, reset=reset, stats=stats)


def register_beat(stats: SeedStats) -> None:
    for name, task, knob, queue in PERIODIC:
        periodic_task_ensure(name=name, task=task, every_seconds=int(conf.get(knob)), queue=queue, stats=stats)


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    seed_strategies(plan, reset=reset, stats=stats)
    register_beat(stats)
    return stats
