"""Loads the plan's deployment strategies and registers the periodic tasks (django_celery_beat rows)."""

from __future__ import annotations

from deployments import conf
from deployments.models import AnalysisTemplate, Strategy
from portal.plan.loader import SeedStats, periodic_task_ensure, upsert_seeded
from portal.tasking import enqueue

PERIODIC = [
    # (name, task, knob with the interval in seconds, queue); the watchdog sits on `default` so a dead
    # actions worker cannot silence it
    ("deployments: drive rollouts and rollbacks", "deployments.tasks.deployments_drive", "DRIVE_EVERY_SECONDS", "actions"),
    ("deployments: watchdog for stalled rollouts", "deployments.tasks.deployments_watchdog", "WATCHDOG_EVERY_SECONDS", "default"),
    ("deployments: automatic scaling", "deployments.tasks.autoscale_evaluate", "AUTOSCALE_EVERY_SECONDS", "actions"),
]


TEMPLATE_KEYS = ("name", "description", "interval_seconds", "failure_limit", "min_requests", "alpha", "pass_error_rate_pct",
                 "error_margin_pct", "latency_margin_pct", "max_extension_seconds", "metrics", "rollback_alarms", "pass_confidence")


def seed_templates(plan: dict, *, reset: bool, stats: SeedStats) -> dict[str, AnalysisTemplate]:
    out = {}
    for row in plan.get("analysis_templates") or []:
        values = {k: row[k] for k in TEMPLATE_KEYS if k in row}
        values.setdefault("name", row["slug"])
        t = upsert_seeded(AnalysisTemplate, {"slug": row["slug"]}, values, reset=reset, stats=stats)
        if t.false_alarm_rate is None:
            enqueue("deployments.tasks.template_false_alarms", t.pk)
        out[row["slug"]] = t
    return out


def seed_strategies(plan: dict, *, reset: bool, stats: SeedStats) -> None:
    templates = seed_templates(plan, reset=reset, stats=stats)
    for row in plan.get("deployment_strategies") or []:
        weights = [int(w) for w in row.get("weights") or []]
        holds = [int(h) for h in row.get("hold_seconds") or [0] * len(weights)]
        template = templates.get(row.get("template", "seed")) or AnalysisTemplate.objects.get(slug=row.get("template", "seed"))
        values = {
            "name": row.get("name", row["slug"]),
            "kind": row.get("kind", "canary"),
            "description": "\n".join(row.get("steps") or []),
            "weights": weights,
            "hold_seconds": holds,
            "watch_seconds": int(row.get("watch_seconds", 600)),
            "template_id": template.pk,
        }
        if "prepare_timeout_seconds" in row:
            values["prepare_timeout_seconds"] = row["prepare_timeout_seconds"]
        upsert_seeded(Strategy, {"slug": row["slug"]}, values, reset=reset, stats=stats)


def register_beat(stats: SeedStats) -> None:
    for name, task, knob, queue in PERIODIC:
        periodic_task_ensure(name=name, task=task, every_seconds=int(conf.get(knob)), queue=queue, stats=stats)


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    seed_strategies(plan, reset=reset, stats=stats)
    register_beat(stats)
    return stats
