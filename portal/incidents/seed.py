"""Seeds escalation policies per severity, notification channels, runbook mappings and the periodic tasks.

Runbook slugs come from the plan's troubleshooting section; rows an operator edited are kept unless reset.
"""

from __future__ import annotations

from portal.incidents.models import (
    AlertSourceConfig,
    EscalationLevel,
    EscalationPolicy,
    NotificationChannel,
    RunbookMapping,
    Source,
)
from portal.oncall.models import Schedule
from portal.plan.loader import SeedStats, periodic_task_ensure, upsert_seeded

# Alert-name patterns per troubleshooting runbook; lower priority is tried first (database before errors).
RUNBOOK_PATTERNS = {
    "database-issues": (10, r"database|\bdb|rds|postgres|connection|replica|deadlock|slow.?query"),
    "high-error-rate": (20, r"error|5xx|fail|exception|outage|unhealthy"),
    "slow-performance": (30, r"latency|slow|response.?time|cpu|memory|cache|saturation"),
}

CHANNELS = [
    {"name": "on-call email", "kind": "email", "target": "oncall@localhost", "enabled": True},
    {"name": "leads email", "kind": "email", "target": "leads@localhost", "enabled": True},
    {"name": "ops chat webhook", "kind": "slack", "target": "", "enabled": False},
    {"name": "on-call SMS", "kind": "sms", "target": "", "enabled": False},
]

# The schedule whose on-call person level 1 pages (by their own rules), besides level 1's channels: the
# demo rotation's primary (manage.py demo_users) or an operator's schedule of that slug.
PAGED_SCHEDULE = "primary"

# severity -> (repeat_after_minutes, [(level number, delay minutes, channel names)])
POLICIES = {
    "critical": (30, [(1, 0, ["on-call email", "ops chat webhook", "on-call SMS"]), (2, 5, ["leads email", "on-call SMS"])]),
    "warning": (120, [(1, 0, ["on-call email", "ops chat webhook"]), (2, 30, ["leads email"])]),
}

PERIODIC = [
    ("incidents: escalation check", "portal.incidents.tasks.check_escalations", 30),
    ("incidents: delivery outbox sweep", "portal.incidents.tasks.sweep_deliveries", 30),
    ("incidents: prune rejected deliveries", "portal.incidents.tasks.prune_rejected_deliveries", 3600),
    ("incidents: personal pages sweep", "portal.incidents.tasks.sweep_personal_pages", 15),
]


def seed_runbook_mappings(plan: dict, *, reset: bool, stats: SeedStats) -> None:
    for runbook in plan.get("runbooks") or []:
        slug = runbook["slug"]
        priority, pattern = RUNBOOK_PATTERNS.get(slug, (100, slug.replace("-", ".?")))
        upsert_seeded(RunbookMapping, {"slug": slug}, {"priority": priority, "name_pattern": pattern, "label_matchers": {}, "runbook_slug": slug},
                      reset=reset, stats=stats)


def seed_escalation(*, reset: bool, stats: SeedStats) -> None:
    channels = {}
    for row in CHANNELS:
        values = {k: v for k, v in row.items() if k != "name"}
        channels[row["name"]] = upsert_seeded(NotificationChannel, {"name": row["name"]}, values, reset=reset, stats=stats)
    for severity, (repeat_after, levels) in POLICIES.items():
        values = {"name": f"{severity.capitalize()} incidents", "repeat": True, "repeat_after_minutes": repeat_after}
        policy = upsert_seeded(EscalationPolicy, {"severity": severity}, values, reset=reset, stats=stats)
        if policy.levels.exists() and not reset:
            _link_schedule(policy, stats)
            continue  # an operator's levels are theirs
        policy.levels.all().delete()
        for number, delay, names in levels:
            level = EscalationLevel.objects.create(policy=policy, number=number, delay_minutes=delay)
            level.channels.set([channels[n] for n in names])
            stats.created += 1
        _link_schedule(policy, stats)


def _link_schedule(policy: EscalationPolicy, stats: SeedStats) -> None:
    """Level 1 pages the primary schedule's on-call person once that schedule exists (the demo rotation
    is made after the first seed). A level that already targets a person is left as it is."""
    schedule = Schedule.objects.filter(slug=PAGED_SCHEDULE).first()
    if schedule is None:
        return
    linked = policy.levels.filter(number=1, target_schedule__isnull=True, target_user__isnull=True).update(target_schedule=schedule)
    if linked:
        stats.updated += linked


def register_beat(stats: SeedStats) -> None:
    for name, task, seconds in PERIODIC:
        periodic_task_ensure(name=name, task=task, every_seconds=seconds, queue="default", stats=stats)


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    seed_runbook_mappings(plan, reset=reset, stats=stats)
    seed_escalation(reset=reset, stats=stats)
    for source in Source.values:
        AlertSourceConfig.objects.get_or_create(source=source)
    register_beat(stats)
    return stats
