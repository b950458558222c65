"""Health housekeeping: hourly rollups, retention of raw results, and the watchdog that raises an
alert when polling stalls."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Avg, Count, Max, Min, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from portal.health.models import Check, CheckResult, CheckRollup, Heartbeat, SloSample
from portal.health.services import ALERT_SOURCE, POLL_EVERY_SECONDS, heartbeat
from portal.incidents import ingest

log = logging.getLogger(__name__)

RAW_RETENTION_DAYS = 7
ROLLUP_RETENTION_DAYS = 400
SLO_SAMPLE_RETENTION_DAYS = 35


def rollups_refresh(*, hours: int = 3, now: datetime | None = None) -> int:
    """Recompute the hourly rollups of the last `hours` hours (the current one included) from raw results."""
    now = now or timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    rows = (
        CheckResult.objects.filter(created_at__gte=since)
        .annotate(h=TruncHour("created_at"))
        .values("check_obj_id", "h")
        .annotate(n=Count("id"), ok=Count("id", filter=Q(ok=True)), avg=Avg("latency_ms"), mx=Max("latency_ms"))
    )
    n = 0
    for r in rows:
        CheckRollup.objects.update_or_create(
            check_obj_id=r["check_obj_id"], hour=r["h"],
            defaults={"count": r["n"], "ok_count": r["ok"], "latency_avg_ms": r["avg"], "latency_max_ms": r["mx"]},
        )
        n += 1
    return n


def retention_sweep(*, now: datetime | None = None, batch: int = 5000) -> dict:
    """Refresh the recent hourly rollups, then drop raw results older than 7 days, rollups older than
    400 days and SLO samples older than 35 days (in batches, so no long lock)."""
    now = now or timezone.now()
    deleted = {"results": 0, "rollups": 0, "slo_samples": 0, "rollup_hours": rollups_refresh(hours=3, now=now)}
    for key, model, field, days in (
        ("results", CheckResult, "created_at", RAW_RETENTION_DAYS),
        ("rollups", CheckRollup, "hour", ROLLUP_RETENTION_DAYS),
        ("slo_samples", SloSample, "at", SLO_SAMPLE_RETENTION_DAYS),
    ):
        cutoff = now - timedelta(days=days)
        while True:
            ids = list(model.objects.filter(**{f"{field}__lt": cutoff}).values_list("pk", flat=True)[:batch])
            if not ids:
                break
            deleted[key] += model.objects.filter(pk__in=ids).delete()[0]
    return deleted


def watchdog_run(*, now: datetime | None = None) -> dict:
    """Raise a critical alert when no check result was stored for 3 polling intervals; resolve it after."""
    now = now or timezone.now()
    enabled = Check.objects.filter(enabled=True)
    agg = enabled.aggregate(min_interval=Min("interval_seconds"), first=Min("created_at"))
    last = CheckResult.objects.aggregate(m=Max("created_at"))["m"]
    stalled = False
    allowed = None
    if agg["min_interval"] is not None:
        allowed = 3 * max(int(agg["min_interval"]), POLL_EVERY_SECONDS)
        reference = last or agg["first"]
        stalled = reference is not None and (now - reference).total_seconds() > allowed
    hb = Heartbeat.objects.filter(name="watchdog").first()
    raised = bool(hb and hb.detail.get("alert_raised"))
    if stalled != raised:
        try:
            silent = f"{(now - (last or agg['first'])).total_seconds():.0f} s" if (last or agg["first"]) else "ever"
            ingest.alert_ingest_internal(
                source=ALERT_SOURCE, fingerprint="watchdog:polling-stalled", name="Health polling stalled",
                severity="critical", firing=stalled,
                summary=(f"no check result stored for {silent} (limit {allowed} s): is the polling worker or beat down?"
                         if stalled else "check results are being stored again"),
                labels={"component": "health-poller"}, grouping_key="watchdog:polling-stalled",
            )
            raised = stalled
        except Exception:
            log.exception("the health watchdog could not %s its alert", "raise" if stalled else "resolve")
    detail = {"stalled": stalled, "alert_raised": raised, "allowed_seconds": allowed,
              "last_result_at": last.isoformat() if last else None}
    heartbeat("watchdog", now=now, **detail)
    return detail
