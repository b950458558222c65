"""Prometheus metrics: request counts and latencies here; queue depth and task outcomes at scrape time.

Counters live in the web process; gunicorn workers each keep their own (set
PROMETHEUS_MULTIPROC_DIR for aggregated counts across workers).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "portal_http_requests_total", "HTTP requests handled", ["method", "route", "status"], registry=REGISTRY
)
LATENCY = Histogram(
    "portal_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
EVENTS = Counter("portal_events_total", "Named portal events (rejected deliveries, alerts received...)", ["event", "source"], registry=REGISTRY)

# Extra collectors registered by apps (e.g. the health watchdog heartbeat): callables yielding metric families.
_scrape_hooks: list = []


def register_scrape_hook(fn) -> None:
    if fn not in _scrape_hooks:
        _scrape_hooks.append(fn)


class _ScrapeCollector:
    def describe(self):
        # Without describe(), registering calls collect() at import, which read the database and the broker
        # while apps were still loading (Django's "Accessing the database during app initialization" warning
        # on every process start).
        return []

    def collect(self):
        from django.db.models import Count

        from portal.ops import queue_depths

        depth = GaugeMetricFamily("portal_celery_queue_depth", "Messages waiting in each Celery queue", labels=["queue"])
        for queue, n in queue_depths().items():
            depth.add_metric([queue], n)
        yield depth
        outcomes = GaugeMetricFamily(
            "portal_celery_task_results", "Stored Celery task results by state (kept 7 days)", labels=["state"]
        )
        try:
            from django_celery_results.models import TaskResult

            for row in TaskResult.objects.values("status").annotate(n=Count("id")):
                outcomes.add_metric([row["status"]], row["n"])
        except Exception:  # noqa: BLE001,S110 - a scrape must not fail because the DB is down
            pass
        yield outcomes
        for hook in list(_scrape_hooks):
            try:
                yield from hook()
            except Exception:  # noqa: BLE001,S112
                continue


REGISTRY.register(_ScrapeCollector())


def render() -> bytes:
    return generate_latest(REGISTRY)


# Label values come from a fixed set: a client choosing the method (PROPFIND, random junk) or the
# status must never create a new time series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str | None) -> str:
    return method if method in METHODS else "other"


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else "other"


class MetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        start = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = match.view_name if match and match.view_name else ("unmatched" if response.status_code == 404 else "other")
        method = method_label(request.method)
        LATENCY.labels(method, route).observe(time.perf_counter() - start)
        REQUESTS.labels(method, route, status_label(response.status_code)).inc()
        return response
