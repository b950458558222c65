"""Heartbeat reads: the page's rows, the API's JSON and the backup heartbeat's state for the checklist."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from portal.heartbeats.errors import HeartbeatNotFound
from portal.heartbeats.models import BACKUP_SLUG, Heartbeat


def find_heartbeat(slug: str) -> Heartbeat:
    heartbeat = Heartbeat.objects.select_related("environment").filter(slug=str(slug)[:60]).first()
    if heartbeat is None:
        raise HeartbeatNotFound(f"no heartbeat {slug!r}")
    return heartbeat


def overdue_by(heartbeat: Heartbeat, now: datetime | None = None) -> timedelta | None:
    """How late an up heartbeat's ping is (None if not late): shown even before the check flips it,
    so a stopped beat (which runs that check) still shows on the page."""
    now = now or timezone.now()
    if heartbeat.status == Heartbeat.Status.UP and heartbeat.alert_after and heartbeat.alert_after < now:
        return now - heartbeat.alert_after
    return None


def heartbeat_json(heartbeat: Heartbeat, now: datetime | None = None) -> dict:
    late = overdue_by(heartbeat, now)
    return {
        "slug": heartbeat.slug, "name": heartbeat.name, "status": heartbeat.status,
        "period_seconds": heartbeat.period_seconds, "grace_seconds": heartbeat.grace_seconds,
        "last_ping_at": heartbeat.last_ping_at.isoformat() if heartbeat.last_ping_at else None,
        "alert_after": heartbeat.alert_after.isoformat() if heartbeat.alert_after else None,
        "late_seconds": int(late.total_seconds()) if late else 0,
        "ping_count": heartbeat.ping_count, "ping_url": heartbeat.ping_url(),
        "environment": heartbeat.environment.name if heartbeat.environment_id and heartbeat.environment else None,
    }


def heartbeats_for_page(now: datetime | None = None) -> list[dict]:
    now = now or timezone.now()
    return [{"heartbeat": h, "late": overdue_by(h, now)} for h in Heartbeat.objects.select_related("environment")]


def backup_heartbeat_state(now: datetime | None = None) -> dict | None:
    """The backup job's heartbeat as checklist evidence (None when there is no such heartbeat)."""
    heartbeat = Heartbeat.objects.filter(slug=BACKUP_SLUG).first()
    if heartbeat is None:
        return None
    data = heartbeat_json(heartbeat, now)
    return {k: data[k] for k in ("slug", "status", "last_ping_at", "alert_after", "late_seconds",
                                  "period_seconds", "grace_seconds")}
