"""The signal behind an incident, as a picture: the metric that fired, per colour, over the last hour.

`what_fired` reads the incident's alerts (their `metric` and `colour` labels, which ingest fills in
for CloudWatch alarms and the Prometheus rules' alert names); `source_for` picks the series the
alert's rule reads (Prometheus for an Alertmanager alert when the environment has a Prometheus URL,
CloudWatch for an SNS alarm, else the environment's own source); `signal_chart` is the chart's JSON:
the series, the threshold lines (portal.health.thresholds), the moment the incident opened, and the
deployment and weight-change marks of its environment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from deployments.models import Deployment, DeploymentEvent, Rollback
from portal.cloud import metrics as cloud_metrics
from portal.health import thresholds
from portal.incidents.models import Alert, Incident, Source

WINDOW = timedelta(hours=1)
PERIOD_SECONDS = 60
UNITS = {"error_rate": "%", "cpu": "%", "db_connections": "%", "cache_hit_ratio": "%", "disk": "%", "memory": "%",
         "p95_response_time": "s", "p50_response_time": "s", "page_load_p95": "s"}


@dataclass(frozen=True)
class Fired:
    metric: str
    colour: str
    alert: Alert | None

    @property
    def unit(self) -> str:
        return UNITS.get(self.metric, "")


def what_fired(incident: Incident) -> Fired:
    """The metric (and colour) the incident is about: its firing alerts first, the first that names one."""
    alerts = sorted(incident.alerts.all(), key=lambda a: (a.status != Alert.Status.FIRING, a.first_seen_at))
    for alert in alerts:
        metric = str((alert.labels or {}).get("metric") or "")
        if metric in cloud_metrics.METRICS:
            colour = str((alert.labels or {}).get("colour") or "")
            return Fired(metric=metric, colour=colour if colour in cloud_metrics.COLOURS else "", alert=alert)
    return Fired(metric="", colour="", alert=alerts[0] if alerts else None)


def source_for(incident: Incident, fired: Fired | None = None):
    """The metrics source whose series the alert's rule reads."""
    env = incident.environment
    alert = (fired or what_fired(incident)).alert
    if alert is not None and alert.source == Source.ALERTMANAGER and env.prometheus_url:
        return cloud_metrics.PrometheusSource(env)
    if alert is not None and alert.source == Source.SNS:
        return cloud_metrics.CloudWatchSource(env)
    return cloud_metrics.metrics_source(env)


def query_words(source, fired: Fired) -> str:
    """What the chart reads, in the source's own terms (the PromQL, or the CloudWatch metric)."""
    if not fired.metric:
        return ""
    if isinstance(source, cloud_metrics.PrometheusSource):
        try:
            return "PromQL: " + source.promql(fired.metric, fired.colour or None, PERIOD_SECONDS // 60)
        except ValueError:
            return ""
    if isinstance(source, cloud_metrics.CloudWatchSource):
        aws_metric = (fired.alert.labels or {}).get("aws_metric", "") if fired.alert else ""
        return f"CloudWatch: {aws_metric or fired.metric}, {PERIOD_SECONDS} s periods"
    return ""


def window(incident: Incident, now: datetime) -> tuple[datetime, datetime]:
    """The last hour while open; the hour around its end once resolved."""
    end = now if incident.is_open or incident.resolved_at is None else min(now, incident.resolved_at + timedelta(minutes=10))
    return end - WINDOW, end


def current_value(source, metric: str, colour: str | None, minutes: int = 5) -> float | None:
    """The metric now, through the source's named readers where it has them; None when it cannot say."""
    readers = {"error_rate": "error_rate", "p95_response_time": "p95_latency", "cpu": "cpu"}
    try:
        if metric in readers:
            return getattr(source, readers[metric])(colour, minutes)
        if metric == "db_connections" and hasattr(source, "db_connections_pct"):
            return source.db_connections_pct(minutes)
        return source.value(metric, colour, minutes)
    except Exception:  # noqa: BLE001 - a reading that cannot be made is "unknown", never a broken page
        return None


def colours_of(fired: Fired) -> list[str | None]:
    if fired.metric in cloud_metrics.SITE_METRICS or fired.metric in ("db_connections", "cache_hit_ratio", "disk",
                                                                        "users", "active_users", "job_posting_seconds"):
        return [None]
    return list(cloud_metrics.COLOURS)


def marks(environment, start: datetime, end: datetime) -> list[dict]:
    """Deployment starts, weight read-backs and rollback switches of the environment in the window."""
    out = []
    for dep in Deployment.objects.select_related("release").filter(environment=environment, started_at__gte=start,
                                                                   started_at__lte=end):
        out.append({"t": int(dep.started_at.timestamp()), "kind": "deployment", "deployment": str(dep.public_id),
                    "label": f"deploy {dep.release.version} to {dep.to_colour}"})
    for e in DeploymentEvent.objects.filter(environment=environment, kind=DeploymentEvent.Kind.WEIGHTS, at__gte=start,
                                            at__lte=end).order_by("at", "id"):
        weights = (e.data or {}).get("weights") or {}
        out.append({"t": int(e.at.timestamp()), "kind": "weights",
                    "label": " / ".join(f"{c} {w}" for c, w in weights.items()) or e.message[:40]})
    for r in Rollback.objects.filter(environment=environment, switched_at__gte=start, switched_at__lte=end):
        out.append({"t": int(r.switched_at.timestamp()), "kind": "rollback", "label": f"rollback: {r.to_colour} 100"})
    return sorted(out, key=lambda m: m["t"])


def signal_chart(incident: Incident, *, now: datetime | None = None) -> dict:
    """The chart's JSON (static/js/incidents.js draws it with uPlot)."""
    now = now or timezone.now()
    fired = what_fired(incident)
    start, end = window(incident, now)
    body: dict = {"metric": fired.metric, "colour": fired.colour, "unit": fired.unit, "series": {}, "thresholds": [],
                  "opened": int(incident.opened_at.timestamp()), "start": int(start.timestamp()), "end": int(end.timestamp()),
                  "marks": [], "error": "", "query": "", "live": incident.is_open}
    if incident.environment_id is None:
        body["error"] = "the alerts name no environment"
        return body
    body["marks"] = marks(incident.environment, start, end)
    if not fired.metric:
        body["error"] = "the alerts name no metric the portal reads"
        return body
    for severity in ("critical", "warning"):
        t = thresholds.threshold(fired.metric, severity)
        if t is not None:
            body["thresholds"].append({"severity": severity, "value": t.value, "words": t.words()})
    try:
        source = source_for(incident, fired)
        body["query"] = query_words(source, fired)
        minutes = max(5, int((now - start).total_seconds() // 60) + 1)
        for colour in colours_of(fired):
            points = source.series(fired.metric, colour, minutes, PERIOD_SECONDS)
            body["series"][colour or "all"] = [[int(t.timestamp()), v] for t, v in points
                                               if start - timedelta(seconds=PERIOD_SECONDS) <= t <= end + timedelta(seconds=PERIOD_SECONDS)]
    except Exception as exc:  # noqa: BLE001 - the chart says why it is empty
        body["error"] = f"metrics unavailable: {exc}"
    return body


def sparkline(points: list, width: int = 120, height: int = 28) -> str:
    """SVG polyline points for a small chart (no script, no inline style: the CSP allows it)."""
    values = [p[1] for p in points if p[1] is not None]
    if len(values) < 2:
        return ""
    lo, hi = min(values), max(values)
    span = (hi - lo) or 1.0
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}" for i, v in enumerate(values))
