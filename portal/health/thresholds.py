"""The one place every part of the portal reads a threshold from: `threshold(metric, severity)`.

The values are the ThresholdRule rows (seeded from plan.yaml, edited on /health/thresholds/ or with
`PUT /api/v1/thresholds/{metric}/{severity}`). Health checks, rollout analysis, the autoscaler, the
runbooks' check levels, the checklist's verification and the Prometheus export read them here, so a
change shows up in all of them; READERS below says who reads what (the thresholds page shows it).

A percentage of requests carries its minimum evidence (`min_requests`): with fewer requests in the
window the share is noise and breaches nothing.

Reads are cached for the length of a `cached()` block (a request, a runbook step, an alarm sync);
outside one, each read is one query of a handful of rows. A change clears the block's copy and, after
commit, enqueues by name the tasks that listen for changes (the sandbox registers its alarm update
with `listen` from its app config: this module never imports it).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

from portal.health.models import ThresholdRule, compare
from portal.plan.loader import load_plan
from portal.tasking import enqueue

# Metrics that are a share of requests: their evidence is the request count over the same window.
SHARE_OF_REQUESTS = frozenset({"error_rate", "cache_hit_ratio"})


@dataclass(frozen=True)
class Threshold:
    slug: str
    metric: str
    severity: str
    comparison: str
    value: float
    unit: str = ""
    window_minutes: int = 5
    min_requests: int = 0
    summary: str = ""

    @property
    def needs_evidence(self) -> bool:
        return self.min_requests > 0

    def has_evidence(self, requests: float | None) -> bool:
        """Enough requests behind the percentage. An unknown count (a source without one) leaves the
        percentage alone to decide."""
        return not self.min_requests or requests is None or requests >= self.min_requests

    def crossed(self, value: float | None) -> bool:
        return value is not None and compare(value, self.comparison, self.value)

    def breached(self, value: float | None, *, requests: float | None = None) -> bool:
        return self.crossed(value) and self.has_evidence(requests)

    def words(self) -> str:
        sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}.get(self.comparison, self.comparison)
        text = f"{sign} {self.value:g}{self.unit}"
        if self.min_requests:
            text += f" (with at least {self.min_requests} requests)"
        return text


def of_rule(rule: ThresholdRule) -> Threshold:
    return Threshold(slug=rule.slug, metric=rule.metric, severity=rule.severity, comparison=rule.comparison,
                     value=float(rule.value), unit=rule.unit, window_minutes=int(rule.window_minutes),
                     min_requests=int(rule.min_requests), summary=rule.summary)


def _of_plan_row(severity: str, row: dict) -> Threshold:
    return Threshold(slug=row["slug"], metric=row["metric"], severity=severity, comparison=row.get("comparison", "gt"),
                     value=float(row["value"]), unit=str(row.get("unit", "")),
                     window_minutes=int(row.get("window_minutes", 5)), min_requests=int(row.get("min_requests", 0)),
                     summary=row.get("summary", ""))


def _load() -> list[Threshold]:
    rows = list(ThresholdRule.objects.order_by("severity", "metric", "slug"))
    if rows:
        return [of_rule(r) for r in rows if r.enabled]
    # Before seed_defaults has stored the rows (a fresh database): the values it would store.
    return [_of_plan_row(severity, row) for severity, items in (load_plan().get("thresholds") or {}).items()
            for row in items or []]


_scope: contextvars.ContextVar[list[Threshold] | None] = contextvars.ContextVar("thresholds_scope", default=None)


@contextlib.contextmanager
def cached() -> Iterator[None]:
    """Read the rows once for the whole block (nested blocks share the outer one's copy)."""
    if _scope.get() is not None:
        yield
        return
    token = _scope.set(_load())
    try:
        yield
    finally:
        _scope.reset(token)


def invalidate() -> None:
    """Drop the current block's copy: the next read inside it sees the change."""
    if _scope.get() is not None:
        _scope.set(_load())


def all_thresholds() -> list[Threshold]:
    """Every enabled threshold, critical first."""
    scoped = _scope.get()
    return list(scoped) if scoped is not None else _load()


def threshold(metric: str, severity: str) -> Threshold | None:
    """The enabled threshold of `metric` at `severity` (None when there is none)."""
    for t in all_thresholds():
        if t.metric == metric and t.severity == severity:
            return t
    return None


def for_metric(metric: str) -> dict[str, Threshold]:
    """{"critical": ..., "warning": ...} of a metric (the severities it has)."""
    return {t.severity: t for t in all_thresholds() if t.metric == metric}


def level(metric: str, value: float | None, *, requests: float | None = None) -> str:
    """critical, warning or ok for a reading (unknown without one)."""
    if value is None:
        return "unknown"
    marks = for_metric(metric)
    for severity in ("critical", "warning"):
        t = marks.get(severity)
        if t is not None and t.breached(value, requests=requests):
            return severity
    return "ok"


# ---------------------------------------------------------------------------------------------- readers


@dataclass(frozen=True)
class Reader:
    name: str
    where: str  # the module that reads
    reads: str  # which values, in words
    metrics: frozenset[str] = field(default_factory=frozenset)  # empty: every metric

    def reads_metric(self, metric: str) -> bool:
        return not self.metrics or metric in self.metrics


READERS: list[Reader] = [
    Reader("Health checks", "portal.health.runners", "each environment's metric check, per rule"),
    Reader("Rollout analysis", "deployments.rollout", "critical error rate and P95: absolute limits of a canary step",
           frozenset({"error_rate", "p95_response_time"})),
    Reader("Autoscaler", "deployments.autoscale", "warning CPU: hot above it", frozenset({"cpu"})),
    Reader("Runbook check levels", "runbooks.checks", "the level (critical, warning, ok) of a check step's reading",
           frozenset({"error_rate", "p95_response_time", "cpu", "cache_hit_ratio", "db_connections"})),
    Reader("Checklist verification", "portal.checklist.verify",
           "“Alert rules configured”: an alarm at each critical threshold's value"),
    Reader("Prometheus rules export", "portal.health.management.commands.export_alert_rules",
           "one alerting rule per enabled threshold"),
]

# Task names enqueued (metric, severity) after a change commits: registered by apps above the product.
_LISTENERS: list[str] = []


def listen(task_name: str, reader: Reader) -> None:
    """An app above the product (the sandbox's alarms) hears every change and is listed as a reader."""
    if task_name not in _LISTENERS:
        _LISTENERS.append(task_name)
    if reader not in READERS:
        READERS.append(reader)


def readers_of(metric: str) -> list[Reader]:
    return [r for r in READERS if r.reads_metric(metric)]


def changed(*, metric: str, severity: str) -> None:
    """Called by the service that changed a threshold (inside its transaction)."""
    invalidate()
    for name in _LISTENERS:
        enqueue(name, metric, severity)
