"""Reads for the health pages, panels, API and other apps."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.db.models import Case, Count, F, IntegerField, Max, Q, Sum, Value, When, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from portal.health.models import Check, CheckResult, CheckRollup, Heartbeat, Slo
from portal.outbound import MASK, redact_url

SPARK_POINTS = 30


def service_statuses(*, limit: int | None = None) -> list[dict]:
    """The external services (status pages, HTTP checks) with their status and the reason in words.

    With `limit`, failing ones come first so a short list never hides an outage."""
    qs = Check.objects.filter(group=Check.Group.EXTERNAL)
    if limit is not None:
        qs = qs.annotate(
            failing_first=Case(When(status="failing", then=Value(0)), default=Value(1), output_field=IntegerField())
        ).order_by("failing_first", "name")[:limit]
    else:
        qs = qs.order_by("name")
    out = []
    for c in qs:
        out.append(
            {
                "slug": c.slug,
                "name": c.name,
                "kind": c.kind,
                "status": c.status,
                "ok": c.status == Check.Status.OK,
                "reason": c.last_reason,
                "last_result_at": c.last_result_at,
                "url": redact_url(c.config.get("url", "")),
                "enabled": c.enabled,
            }
        )
    return out


def _uptime_since(hours: int, now=None):
    now = now or timezone.now()
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)


def _percent(ok, n) -> float | None:
    return (100.0 * ok / n) if n else None


def uptime_by_check(*, hours: int, now=None, check_ids: list[int] | None = None) -> dict[int, float | None]:
    """Percent of ok results per check over the last `hours` hours, from the hourly rollups.

    With `check_ids`, only those checks (a page of the grid or one check's page) are summed."""
    qs = CheckRollup.objects.filter(hour__gte=_uptime_since(hours, now))
    if check_ids is not None:
        qs = qs.filter(check_obj_id__in=check_ids)
    rows = qs.values("check_obj_id").annotate(n=Sum("count"), ok=Sum("ok_count")).order_by()
    return {r["check_obj_id"]: _percent(r["ok"], r["n"]) for r in rows}


def uptime_24h_30d(check_ids: list[int], *, now=None) -> dict[int, tuple[float | None, float | None]]:
    """(uptime 24 h, uptime 30 days) per check, both windows summed in one pass over the rollups."""
    day = Q(hour__gte=_uptime_since(24, now))
    rows = (
        CheckRollup.objects.filter(check_obj_id__in=check_ids, hour__gte=_uptime_since(24 * 30, now))
        .values("check_obj_id")
        .annotate(n30=Sum("count"), ok30=Sum("ok_count"), n24=Sum("count", filter=day), ok24=Sum("ok_count", filter=day))
        .order_by()
    )
    return {r["check_obj_id"]: (_percent(r["ok24"], r["n24"]), _percent(r["ok30"], r["n30"])) for r in rows}


def recent_results(check_ids: list[int], *, points: int = SPARK_POINTS, within_hours: int = 24) -> dict[int, list[dict]]:
    """The last `points` results of each check (oldest first), in one query.

    On PostgreSQL each check's newest results are read from its (check, -created_at) index with a
    LATERAL join: a few rows per check whatever the history holds (a check every 60 s keeps 1,440
    results a day, which the window function elsewhere numbers in full before keeping 30)."""
    since = timezone.now() - timedelta(hours=within_hours)
    out: dict[int, list[dict]] = {cid: [] for cid in check_ids}
    if not check_ids:
        return out
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(CheckResult._meta.db_table)
        column = connection.ops.quote_name(CheckResult._meta.get_field("check_obj").column)
        sql = (
            "SELECT c.id, r.ok, r.latency_ms, r.created_at FROM unnest(%s::bigint[]) AS c(id) "  # noqa: S608 - names from the model
            f"CROSS JOIN LATERAL (SELECT ok, latency_ms, created_at FROM {table} WHERE {column} = c.id "
            "AND created_at >= %s ORDER BY created_at DESC LIMIT %s) AS r"
        )
        with connection.cursor() as cur:
            cur.execute(sql, [list(check_ids), since, points])
            rows = cur.fetchall()
    else:
        rows = (
            CheckResult.objects.filter(check_obj_id__in=check_ids, created_at__gte=since)
            .annotate(rn=Window(RowNumber(), partition_by=[F("check_obj_id")], order_by=F("created_at").desc()))
            .filter(rn__lte=points)
            .values_list("check_obj_id", "ok", "latency_ms", "created_at")
        )
    for check_id, ok, latency_ms, created_at in rows:
        out[check_id].append({"ok": ok, "latency_ms": latency_ms, "created_at": created_at})
    for results in out.values():
        results.sort(key=lambda r: r["created_at"])
    return out


def sparkline_svg_points(results: list[dict], *, width: int = 120, height: int = 24) -> dict:
    """Polyline points (latency) and failure marks for a server-rendered SVG sparkline."""
    if not results:
        return {"points": "", "fails": [], "width": width, "height": height}
    lat = [r["latency_ms"] or 0.0 for r in results]
    top = max(lat) or 1.0
    n = len(results)
    step = width / max(n - 1, 1)
    pts = []
    fails = []
    for i, r in enumerate(results):
        x = round(i * step, 1)
        y = round(height - 2 - (lat[i] / top) * (height - 4), 1)
        pts.append(f"{x},{y}")
        if not r["ok"]:
            fails.append({"x": x, "y": y})
    return {"points": " ".join(pts), "fails": fails, "width": width, "height": height}


# What a grid row shows (templates/health/_grid.html): loading only these keeps the sort of every
# check narrow and skips building the environment and rule of each row in full.
GRID_FIELDS = ("slug", "name", "group", "status", "enabled", "last_result_at", "last_reason", "last_latency_ms",
               "environment__name")


def grid_checks():
    """Checks in grid order: failing first, then by group, environment and name."""
    return (
        Check.objects.select_related("environment")
        .only(*GRID_FIELDS)
        .annotate(failing_first=Case(When(status="failing", then=Value(0)), default=Value(1), output_field=IntegerField()))
        .order_by("failing_first", "group", "environment__name", "name")
    )


def grid_rows(*, environment=None, checks=None) -> list[dict]:
    """Checks (default: all) with status, last result, uptime 24 h / 30 days and a sparkline: a fixed number of queries."""
    if checks is None:
        checks = list(Check.objects.select_related("environment", "rule").order_by("group", "environment__name", "name"))
    if environment is not None:
        checks = [c for c in checks if c.environment_id in (None, environment.pk)]
    ids = [c.pk for c in checks]
    uptime = uptime_24h_30d(ids) if ids else {}
    recent = recent_results(ids) if ids else {}
    rows = []
    for c in checks:
        up24, up30 = uptime.get(c.pk, (None, None))
        rows.append(
            {
                "check": c,
                "uptime_24h": up24,
                "uptime_30d": up30,
                "spark": sparkline_svg_points(recent.get(c.pk, [])),
            }
        )
    return rows


def status_counts() -> dict[str, int]:
    """Checks per status (disabled ones counted apart), counted by the database."""
    counts = {"ok": 0, "failing": 0, "unknown": 0, "disabled": 0}
    for row in Check.objects.values("enabled", "status").annotate(n=Count("id")).order_by():
        key = row["status"] if row["enabled"] else "disabled"
        counts[key] = counts.get(key, 0) + row["n"]
    return counts


def failing_checks(limit: int = 10) -> list[Check]:
    return list(
        Check.objects.filter(enabled=True, status=Check.Status.FAILING)
        .select_related("environment")
        .order_by("-severity", "status_changed_at")[:limit]
    )


def last_result_at():
    return CheckResult.objects.aggregate(m=Max("created_at"))["m"]


def heartbeats() -> dict[str, Heartbeat]:
    return {h.name: h for h in Heartbeat.objects.all()}


def slos() -> list[Slo]:
    return list(Slo.objects.order_by("slug"))


def check_history(check: Check, *, limit: int = 200):
    return CheckResult.objects.filter(check_obj=check).order_by("-created_at")[:limit]


def check_rollups(check: Check, *, days: int = 30):
    since = timezone.now() - timedelta(days=days)
    return CheckRollup.objects.filter(check_obj=check, hour__gte=since).order_by("-hour")


def check_config_for_display(check: Check) -> dict:
    """A check's config as pages and the API show it: URLs redacted, header values never shown."""
    cfg = {k: v for k, v in (check.config or {}).items() if k != "headers"}
    for key in ("url", "public_url"):
        if isinstance(cfg.get(key), str):
            cfg[key] = redact_url(cfg[key])
    names = check.header_names()
    if names:
        cfg["headers"] = dict.fromkeys(names, MASK)
    return cfg
