"""Loads the plan's thresholds, performance targets and external services; registers the beat rows;
creates the sandbox environment's AWS and metric checks when that environment exists."""

from __future__ import annotations

from portal.cloud.models import Environment
from portal.health.models import Check, Slo, ThresholdRule
from portal.health.services import health_checks_ensure_for_environment
from portal.plan.loader import SeedStats, periodic_task_ensure, upsert_seeded

DEFAULT_WINDOW_MINUTES = 5

# How each performance target is measured (the plan names the target, the portal the metric).
SLO_MEASURES = {
    "uptime": (Slo.Kind.AVAILABILITY, "error_rate"),
    "error-rate": (Slo.Kind.ERROR_RATIO, "error_rate"),
    "api-p95": (Slo.Kind.THRESHOLD, "p95_response_time"),
    "api-p50": (Slo.Kind.THRESHOLD, "p50_response_time"),
    "page-load-p95": (Slo.Kind.THRESHOLD, "page_load_p95"),
    "job-posting": (Slo.Kind.THRESHOLD, "job_posting_seconds"),
}

# (name, task, every seconds, expires seconds): expiry drops a backlog of stale beats after an outage.
BEAT_ROWS = [
    ("health: poll due checks", "portal.health.tasks.health_poll", 5, 10),
    ("health: watchdog", "portal.health.tasks.health_watchdog", 30, 60),
    ("health: evaluate SLOs", "portal.health.tasks.health_slo_evaluate", 60, 120),
    ("health: rollups and retention", "portal.health.tasks.health_rollup_and_retention", 600, 1200),
]

SERVICE_INTERVAL_SECONDS = 60


def seed_thresholds(plan: dict, *, reset: bool, stats: SeedStats) -> None:
    for severity, rules in (plan.get("thresholds") or {}).items():
        for row in rules or []:
            upsert_seeded(
                ThresholdRule, {"slug": row["slug"]},
                {"metric": row["metric"], "comparison": row["comparison"], "value": float(row["value"]),
                 "unit": str(row.get("unit", "")), "severity": severity, "summary": row.get("summary", ""),
                 "window_minutes": int(row.get("window_minutes", DEFAULT_WINDOW_MINUTES)),
                 "min_requests": int(row.get("min_requests", 0))},
                reset=reset, stats=stats,
            )


def seed_slos(plan: dict, *, reset: bool, stats: SeedStats) -> None:
    for row in plan.get("performance_targets") or []:
        kind, metric = SLO_MEASURES.get(row["slug"], (Slo.Kind.THRESHOLD, row["slug"].replace("-", "_")))
        name = row["name"] if row.get("statistic") in ("ratio", "max", None) else f"{row['name']} {row['statistic'].upper()}"
        upsert_seeded(
            Slo, {"slug": row["slug"]},
            {"name": name, "kind": kind, "metric": metric, "statistic": row.get("statistic", ""),
             "comparison": row["comparison"], "target": float(row["value"]), "unit": str(row.get("unit", ""))},
            reset=reset, stats=stats,
        )


def seed_services(plan: dict, *, reset: bool, stats: SeedStats) -> None:
    for row in plan.get("services") or []:
        config: dict = {"url": row["url"], "purpose": row.get("purpose", ""), "service": row["slug"]}
        if row["kind"] == "http":
            config["expect_status"] = int(row.get("expect_status", 200))
            config["method"] = "GET"
        upsert_seeded(
            Check, {"slug": f"service-{row['slug']}"},
            {"name": row["name"], "kind": row["kind"], "group": Check.Group.EXTERNAL, "config": config,
             "interval_seconds": SERVICE_INTERVAL_SECONDS, "timeout_seconds": 10.0, "fail_threshold": 3,
             "recover_threshold": 2, "severity": "warning"},
            reset=reset, stats=stats,
        )


def register_beat(stats: SeedStats) -> None:
    for name, task, every, expires in BEAT_ROWS:
        periodic_task_ensure(name=name, task=task, every_seconds=every, queue="polling", stats=stats, expire_seconds=expires)


def seed_environment_checks(stats: SeedStats) -> None:
    for env in Environment.objects.filter(name="sandbox"):
        before = Check.objects.filter(environment=env).count()
        health_checks_ensure_for_environment(environment=env, actor="system:seed")
        stats.created += Check.objects.filter(environment=env).count() - before


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    seed_thresholds(plan, reset=reset, stats=stats)
    seed_slos(plan, reset=reset, stats=stats)
    seed_services(plan, reset=reset, stats=stats)
    register_beat(stats)
    seed_environment_checks(stats)
    return stats
