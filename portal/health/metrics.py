"""What the health app adds to /metrics: heartbeats for an outside dead-man's switch, check counts."""

from __future__ import annotations

from django.db.models import Count, Max
from prometheus_client.core import GaugeMetricFamily

from portal.health.models import Check, CheckResult, Heartbeat


def scrape():
    beats = GaugeMetricFamily(
        "portal_health_heartbeat_timestamp_seconds",
        "Unix time of the last beat of the health poller and watchdog (alert when it stops moving)",
        labels=["component"],
    )
    stalled = GaugeMetricFamily("portal_health_polling_stalled", "1 when the watchdog finds polling stalled")
    is_stalled = 0
    for hb in Heartbeat.objects.all():
        beats.add_metric([hb.name], hb.beat_at.timestamp())
        if hb.name == "watchdog" and hb.detail.get("stalled"):
            is_stalled = 1
    yield beats
    stalled.add_metric([], is_stalled)
    yield stalled
    last = CheckResult.objects.aggregate(m=Max("created_at"))["m"]
    last_result = GaugeMetricFamily("portal_health_last_result_timestamp_seconds", "Unix time of the newest check result")
    last_result.add_metric([], last.timestamp() if last else 0)
    yield last_result
    checks = GaugeMetricFamily("portal_health_checks", "Enabled health checks by status", labels=["status"])
    counts = {s: 0 for s in Check.Status.values}
    for row in Check.objects.filter(enabled=True).values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    for status, n in counts.items():
        checks.add_metric([status], n)
    yield checks
