"""Metric sources: CloudWatch (GetMetricData) and Prometheus (HTTP API), chosen per environment.

Every reading is over the last `minutes`; percentages are 0-100; None means no data (for error
rate: no traffic). The error rate counts what users see: the targets' 5xx and, for the whole load
balancer, the 5xx the load balancer answers itself (no healthy target, a target that reset). `value(metric, ...)` and `series(metric, ...)` take one of METRICS.
Page load (`page_load_p95`, seconds) is what browsers measure: CloudWatch RUM's
PerformanceNavigationDuration (milliseconds) of the environment's app monitor, extended statistic p95.
"""

from __future__ import annotations

import datetime as dt
import math
from string import Template
from typing import Any

import requests
from django.conf import settings
from django.utils import timezone

from portal import outbound
from portal.cloud.errors import CloudError

COLOURS = ("blue", "green")
METRICS = ("error_rate", "p95_response_time", "cpu", "db_connections", "cache_hit_ratio", "disk", "requests", "users",
           "active_users", "requests_per_second", "job_posting_seconds", "memory", "p50_response_time", "page_load_p95")
# Measured in the users' browsers for the whole site: no colour.
SITE_METRICS = ("page_load_p95",)
RUM_NAMESPACE = "AWS/RUM"
RUM_PAGE_LOAD = "PerformanceNavigationDuration"  # milliseconds, one value per page navigation
Point = tuple[dt.datetime, float]

DEFAULT_PROMQL: dict[str, str] = {
    "error_rate": '100 * sum(rate(http_requests_total{colour=~"$colour",status=~"5.."}[$window])) '
                  '/ sum(rate(http_requests_total{colour=~"$colour"}[$window]))',
    "p95_response_time": 'histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{colour=~"$colour"}[$window])))',
    "p50_response_time": 'histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{colour=~"$colour"}[$window])))',
    "requests": 'sum(increase(http_requests_total{colour=~"$colour"}[$window]))',
    "cpu": '100 * (1 - avg(rate(node_cpu_seconds_total{mode="idle",colour=~"$colour"}[$window])))',
    "db_connections": "100 * sum(pg_stat_activity_count) / max(pg_settings_max_connections)",
    "cache_hit_ratio": "100 * sum(rate(redis_keyspace_hits_total[$window])) / (sum(rate(redis_keyspace_hits_total[$window])) "
                       "+ sum(rate(redis_keyspace_misses_total[$window])))",
    "disk": '100 * max(1 - node_filesystem_avail_bytes{mountpoint="/"} / node_filesystem_size_bytes{mountpoint="/"})',
    # node exporter's memory gauges: the busiest instance of the colour
    "memory": '100 * max(1 - node_memory_MemAvailable_bytes{colour=~"$colour"} / node_memory_MemTotal_bytes{colour=~"$colour"})',
    "users": "max(ftw_registered_users)",
    "active_users": "max(ftw_active_users)",
    "requests_per_second": 'sum(rate(http_requests_total{colour=~"$colour"}[$window]))',
    "job_posting_seconds": "max(ftw_job_posting_seconds)",
}


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


def _check_colour(colour: str | None, metric: str = "") -> None:
    if colour is not None and colour not in COLOURS:
        raise ValueError(f"colour must be blue, green or None, not {colour!r}")
    if colour is not None and metric in SITE_METRICS:
        raise ValueError(f"{metric} is measured in the browsers for the whole site, not per colour")


def rum_app_monitor(env) -> str:
    """The CloudWatch RUM app monitor of the environment's web front end (RUM_APP_MONITORS, else ftw-<name>)."""
    return (getattr(settings, "RUM_APP_MONITORS", None) or {}).get(env.name) or f"ftw-{env.name}"


class MetricsSource:
    """The interface. Subclasses implement `value` and `series`; the named readers call `value`."""

    def __init__(self, env, clock=None):
        self.env = env
        self.clock = clock or timezone.now

    def value(self, metric: str, colour: str | None = None, minutes: int = 5) -> float | None:
        raise NotImplementedError

    def series(self, metric: str, colour: str | None, minutes: int, period_seconds: int) -> list[Point]:
        raise NotImplementedError

    def error_rate(self, colour: str | None, minutes: int) -> float | None:
        return self.value("error_rate", colour, minutes)

    def p95_latency(self, colour: str | None, minutes: int) -> float | None:
        return self.value("p95_response_time", colour, minutes)

    def request_count(self, colour: str | None, minutes: int) -> float:
        return self.value("requests", colour, minutes) or 0.0

    def cpu(self, colour: str | None, minutes: int) -> float | None:
        return self.value("cpu", colour, minutes)

    def cache_hit_ratio(self, minutes: int) -> float | None:
        return self.value("cache_hit_ratio", None, minutes)

    def db_connections_pct(self, minutes: int) -> float | None:
        return self.value("db_connections", None, minutes)

    def disk_pct(self, minutes: int) -> float | None:
        return self.value("disk", None, minutes)

    def users(self) -> int | None:
        v = self.value("users", None, 24 * 60)
        return int(v) if v is not None else None


# ------------------------------------------------------------------------------------------- CloudWatch

class CloudWatchSource(MetricsSource):
    """GetMetricData with explicit periods and statistics, on the dimensions AWS publishes."""

    ELB = "AWS/ApplicationELB"

    def __init__(self, env, clock=None):
        super().__init__(env, clock)
        self._max_connections: int | None = None
        self._cache_members: list[str] | None = None

    # -- query building
    def _stat(self, qid: str, namespace: str, name: str, dims: dict[str, str], period: int, stat: str) -> dict:
        return {"Id": qid, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
            "Period": period, "Stat": stat}}

    def _elb_dims(self, colour: str | None) -> list[dict[str, str]]:
        if colour is None:
            return [{"LoadBalancer": self.env.alb_dimension}] if self.env.alb_dimension else []
        tg = self.env.tg_dimension(colour)
        return [{"TargetGroup": tg, "LoadBalancer": self.env.alb_dimension}] if tg else []

    def _asg_dims(self, colour: str | None) -> list[dict[str, str]]:
        colours = COLOURS if colour is None else (colour,)
        return [{"AutoScalingGroupName": self.env.asg_name(c)} for c in colours if self.env.asg_name(c)]

    def _members(self) -> list[str]:
        if self._cache_members is None:
            from portal.cloud import aws

            self._cache_members = aws.describe_cache(self.env).members if self.env.cache_replication_group_id else []
        return self._cache_members

    def _max_conn(self) -> int | None:
        if self._max_connections is None and self.env.rds_instance_id:
            from portal.cloud import aws

            self._max_connections = aws.describe_rds(self.env).max_connections
        return self._max_connections

    def _window(self, minutes: int) -> tuple[dt.datetime, dt.datetime]:
        if minutes <= 0:
            raise ValueError("minutes must be 1 or more")
        end = self.clock().replace(microsecond=0) + dt.timedelta(seconds=1)
        return end - dt.timedelta(minutes=minutes), end

    def _fetch(self, queries: list[dict], start: dt.datetime, end: dt.datetime) -> dict[str, list[Point]]:
        from portal.cloud import aws

        if not queries:
            return {}
        return aws.metric_data(self.env, queries, start, end)

    # -- per-metric query sets: (queries, combine(results_by_id_per_timestamp) -> value)
    def _queries(self, metric: str, colour: str | None, period: int) -> tuple[list[dict], Any]:
        env = self.env
        if metric in ("error_rate", "requests", "p95_response_time", "p50_response_time", "requests_per_second"):
            dims = self._elb_dims(colour)
            if not dims:
                raise CloudError("NotConfigured", "GetMetricData", env.name, "the environment has no load balancer/target group dimensions")
            if metric == "p95_response_time":
                return [self._stat("p95", self.ELB, "TargetResponseTime", dims[0], period, "p95")], \
                    lambda r: r.get("p95")
            if metric == "p50_response_time":  # the API P50 SLO: ALB TargetResponseTime, extended statistic p50
                return [self._stat("p50", self.ELB, "TargetResponseTime", dims[0], period, "p50")], \
                    lambda r: r.get("p50")
            q = [self._stat("req", self.ELB, "RequestCount", dims[0], period, "Sum")]
            if metric == "requests":
                return q, lambda r: r.get("req", 0.0)
            if metric == "requests_per_second":
                return q, lambda r: r.get("req", 0.0) / period
            q.append(self._stat("err", self.ELB, "HTTPCode_Target_5XX_Count", dims[0], period, "Sum"))
            if colour is None:
                # The load balancer's own 5xx (503 with no healthy target, 502/504 from a target that failed)
                # exist only per load balancer. Requests it rejected before choosing a target are not in
                # RequestCount, so they count on both sides of the ratio.
                q.append(self._stat("err_elb", self.ELB, "HTTPCode_ELB_5XX_Count", dims[0], period, "Sum"))

            def rate(r):
                elb = r.get("err_elb", 0.0)
                total = r.get("req", 0.0) + elb
                return min(100.0, 100.0 * (r.get("err", 0.0) + elb) / total) if total else None
            return q, rate
        if metric == "cpu":
            q = [self._stat(f"cpu{i}", "AWS/EC2", "CPUUtilization", d, period, "Average") for i, d in enumerate(self._asg_dims(colour))]
            return q, lambda r: max((v for k, v in r.items() if k.startswith("cpu")), default=None)
        if metric == "db_connections":
            if not env.rds_instance_id:
                raise CloudError("NotConfigured", "GetMetricData", env.name, "the environment has no RDS instance")
            limit = self._max_conn()
            q = [self._stat("conn", "AWS/RDS", "DatabaseConnections", {"DBInstanceIdentifier": env.rds_instance_id}, period, "Maximum")]
            return q, lambda r: (100.0 * r["conn"] / limit) if r.get("conn") is not None and limit else None
        if metric == "cache_hit_ratio":
            q = []
            for i, m in enumerate(self._members()):
                q.append(self._stat(f"hit{i}", "AWS/ElastiCache", "CacheHits", {"CacheClusterId": m}, period, "Sum"))
                q.append(self._stat(f"miss{i}", "AWS/ElastiCache", "CacheMisses", {"CacheClusterId": m}, period, "Sum"))

            def ratio(r):
                hits = sum(v for k, v in r.items() if k.startswith("hit"))
                misses = sum(v for k, v in r.items() if k.startswith("miss"))
                return 100.0 * hits / (hits + misses) if hits + misses else None
            return q, ratio
        if metric == "disk":
            q = [self._stat(f"disk{i}", "CWAgent", "disk_used_percent", d, period, "Maximum") for i, d in enumerate(self._asg_dims(colour))]
            return q, lambda r: max(r.values(), default=None)
        if metric == "memory":
            # The CloudWatch agent's mem_used_percent, aggregated per Auto Scaling group (append_dimensions).
            q = [self._stat(f"mem{i}", "CWAgent", "mem_used_percent", d, period, "Maximum") for i, d in enumerate(self._asg_dims(colour))]
            return q, lambda r: max(r.values(), default=None)
        if metric == "page_load_p95":
            # CloudWatch RUM publishes every page navigation's duration (ms) per app monitor.
            q = [self._stat("p95nav", RUM_NAMESPACE, RUM_PAGE_LOAD, {"application_name": rum_app_monitor(env)}, period, "p95")]
            return q, lambda r: r["p95nav"] / 1000.0 if r.get("p95nav") is not None else None
        platform = {"users": "RegisteredUsers", "active_users": "ActiveUsers", "job_posting_seconds": "JobPostingSeconds"}
        if metric in platform:
            return [self._stat("p", env.platform_namespace, platform[metric], {"Environment": env.name}, period, "Maximum")], \
                lambda r: r.get("p")
        raise ValueError(f"unknown metric {metric!r}")

    def value(self, metric: str, colour: str | None = None, minutes: int = 5) -> float | None:
        _check_metric(metric)
        _check_colour(colour, metric)
        start, end = self._window(minutes)
        if metric in ("users", "active_users"):
            # A gauge: the latest reading, not the window's maximum.
            points = self.series(metric, colour, minutes, 60 if minutes <= 24 * 60 else 3600)
            return points[-1][1] if points else None
        period = max(60, int(math.ceil(minutes * 60 / 60.0)) * 60)
        queries, combine = self._queries(metric, colour, period)
        results = self._fetch(queries, start, end)
        merged = self._merge_window(metric, results)
        if not merged:
            return None if metric not in ("requests", "requests_per_second") else 0.0
        return _round(combine(merged))

    @staticmethod
    def _merge_window(metric: str, results: dict[str, list[Point]]) -> dict[str, float]:
        """One value per query id for the whole window (CloudWatch may split it into two periods)."""
        merged: dict[str, float] = {}
        for qid, points in results.items():
            if not points:
                continue
            values = [v for _, v in points]
            if qid.startswith(("req", "err", "hit", "miss")):
                merged[qid] = sum(values)
            elif qid.startswith(("p95", "p50", "conn", "disk", "mem")):
                merged[qid] = max(values)
            else:
                merged[qid] = sum(values) / len(values)
        return merged

    def series(self, metric: str, colour: str | None, minutes: int, period_seconds: int) -> list[Point]:
        _check_metric(metric)
        _check_colour(colour, metric)
        period = max(60, int(period_seconds) // 60 * 60)
        start, end = self._window(minutes)
        queries, combine = self._queries(metric, colour, period)
        results = self._fetch(queries, start, end)
        by_time: dict[dt.datetime, dict[str, float]] = {}
        for qid, points in results.items():
            for t, v in points:
                by_time.setdefault(t, {})[qid] = v
        out = []
        for t in sorted(by_time):
            v = combine(by_time[t])
            if metric == "requests_per_second":
                v = by_time[t].get("req", 0.0) / period
            if v is not None:
                out.append((t, round(float(v), 4)))
        return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(float(v), 4)


# ------------------------------------------------------------------------------------------- Prometheus

class PrometheusSource(MetricsSource):
    """Prometheus's HTTP API: /api/v1/query for values, /api/v1/query_range for series."""

    timeout = (3.05, 10)

    def __init__(self, env, clock=None):
        super().__init__(env, clock)
        if not env.prometheus_url:
            raise CloudError("NotConfigured", "Prometheus query", env.name, "the environment's metrics source is Prometheus but no Prometheus URL is set")
        self.base = env.prometheus_url.rstrip("/")
        # Through portal.outbound: the Prometheus URL may reach private addresses only if the
        # environment's outbound policy says so; redirects are not followed.
        self.allow_private = outbound.allows_private_targets(env)

    def promql(self, metric: str, colour: str | None, minutes: int) -> str:
        _check_metric(metric)
        _check_colour(colour, metric)
        queries = dict(DEFAULT_PROMQL)
        queries.update({k: v for k, v in (self.env.prometheus_queries or {}).items() if v})
        if metric not in queries:
            raise ValueError(f"no PromQL configured for {metric!r}")
        return Template(queries[metric]).safe_substitute(colour=colour or ".+", window=f"{max(int(minutes), 1)}m")

    def _get(self, path: str, params: dict) -> Any:
        op = f"Prometheus {path.rsplit('/', 1)[-1]}"
        try:
            resp = outbound.request("GET", f"{self.base}{path}", allow_private=self.allow_private, params=params,
                                    timeout=self.timeout, max_redirects=0,
                                    headers={"User-Agent": "fairtradeworker-ops-portal/0.1"})
        except outbound.OutboundRefused as exc:
            raise CloudError("PrometheusRefused", op, self.env.name, f"refused to connect to {exc.host}: {exc.reason}") from exc
        except requests.RequestException as exc:
            raise CloudError("PrometheusUnreachable", op, self.env.name, outbound.error_words(exc, self.base)) from exc
        try:
            body = resp.json()
        except ValueError as exc:
            raise CloudError(f"HTTP{resp.status_code}", op, self.env.name, "the answer is not Prometheus JSON") from exc
        if resp.status_code >= 400 or body.get("status") != "success":
            raise CloudError(str(body.get("errorType") or f"HTTP{resp.status_code}"), op, self.env.name,
                             str(body.get("error") or resp.reason))
        return body.get("data") or {}

    def rules(self) -> list[dict]:
        """The alerting rules Prometheus has loaded (`/api/v1/rules?type=alert`), each with its group's name."""
        data = self._get("/api/v1/rules", {"type": "alert"})
        return [{**rule, "group": group.get("name", "")} for group in data.get("groups") or []
                for rule in group.get("rules") or [] if rule.get("type", "alerting") == "alerting"]

    def query(self, promql: str) -> Any:
        """The `data` of an instant query for any PromQL (runbook checks ask for what the portal does not chart)."""
        return self._get("/api/v1/query", {"query": promql})

    def scalar(self, promql: str) -> float | None:
        """The first number an instant query answers (a scalar or a vector's first sample), or None."""
        data = self.query(promql)
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            return _round(self._num(result[1])) if result else None
        if kind == "vector":
            return _round(self._num(result[0]["value"][1])) if result else None
        raise CloudError("UnexpectedResult", "Prometheus query", self.env.name, f"expected a vector or scalar, got {kind}")

    @staticmethod
    def _num(raw) -> float | None:
        try:
            v = float(raw)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(v) or math.isinf(v) else v

    def value(self, metric: str, colour: str | None = None, minutes: int = 5) -> float | None:
        query = self.promql(metric, colour, minutes)
        data = self._get("/api/v1/query", {"query": query, "time": f"{self.clock().timestamp():.3f}"})
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar":
            v = self._num(result[1]) if result else None
        elif kind == "vector":
            v = self._num(result[0]["value"][1]) if result else None
        else:
            raise CloudError("UnexpectedResult", "Prometheus query", self.env.name, f"expected a vector or scalar, got {kind}")
        if v is None and metric in ("requests", "requests_per_second"):
            return 0.0
        return _round(v)

    def series(self, metric: str, colour: str | None, minutes: int, period_seconds: int) -> list[Point]:
        query = self.promql(metric, colour, max(int(period_seconds) // 60, 1))
        end = self.clock()
        start = end - dt.timedelta(minutes=minutes)
        data = self._get("/api/v1/query_range", {"query": query, "start": f"{start.timestamp():.3f}",
                                                 "end": f"{end.timestamp():.3f}", "step": f"{max(int(period_seconds), 1)}s"})
        result = data.get("result") or []
        if not result:
            return []
        out = []
        for ts, raw in result[0].get("values", []):
            v = self._num(raw)
            if v is not None:
                out.append((dt.datetime.fromtimestamp(float(ts), tz=dt.UTC), round(v, 4)))
        return out


def metrics_source(env, clock=None) -> MetricsSource:
    if env.metrics_source == "prometheus":
        return PrometheusSource(env, clock)
    return CloudWatchSource(env, clock)
