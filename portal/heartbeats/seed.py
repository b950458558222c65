"""Seeds the heartbeats every deployment has (no ping token: a lead issues one on /heartbeats/) and
registers the beat rows of the missed-ping check and of the portal's own ping."""

from __future__ import annotations

from portal.heartbeats.models import BACKUP_SLUG, PORTAL_BEAT_SLUG, WATCHDOG_SLUG, Heartbeat
from portal.plan.loader import SeedStats, periodic_task_ensure, upsert_seeded

CHECK_TASK = "portal.heartbeats.tasks.check_heartbeats"
PING_TASK = "portal.heartbeats.tasks.ping_portal_beat"
EVERY_SECONDS = 60

SEEDED = [
    # Alertmanager's always-firing Watchdog alert, routed to the ping URL (docs/operating.md, repeat_interval 1m).
    {"slug": WATCHDOG_SLUG, "name": "Alertmanager Watchdog", "period_seconds": 300, "grace_seconds": 300},
    # The nightly backup job pings when it has finished.
    {"slug": BACKUP_SLUG, "name": "Database backup job", "period_seconds": 86400, "grace_seconds": 7200},
    # The portal's beat pings it every minute (ping_portal_beat).
    {"slug": PORTAL_BEAT_SLUG, "name": "Portal beat (Celery beat and worker)", "period_seconds": 60, "grace_seconds": 240},
]


def register_beat(stats: SeedStats) -> None:
    periodic_task_ensure(name="heartbeats: missed pings", task=CHECK_TASK, every_seconds=EVERY_SECONDS,
                         queue="default", stats=stats)
    periodic_task_ensure(name="heartbeats: portal beat ping", task=PING_TASK, every_seconds=EVERY_SECONDS,
                         queue="default", stats=stats)


def seed(plan: dict, *, reset: bool) -> SeedStats:
    stats = SeedStats()
    for row in SEEDED:
        upsert_seeded(Heartbeat, {"slug": row["slug"]},
                      {k: row[k] for k in ("name", "period_seconds", "grace_seconds")}, reset=reset, stats=stats)
    register_beat(stats)
    return stats
