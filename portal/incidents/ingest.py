"""Alert intake: the delivery outbox (store, then process), alerts and their grouping into incidents.

Dedup rests on the database: a unique (source, fingerprint) per alert, a partial unique index for
one open incident per grouping key, an IntegrityError fallback, row locks (select_for_update) and,
on PostgreSQL, a transaction-scoped advisory lock per grouping key so one key's alerts are applied
one transaction at a time.
"""

from __future__ import annotations

import hashlib
import logging
import re
from datetime import timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from portal.actors import Actor
from portal.audit.services import audit_event, audit_events_write, audit_record
from portal.cloud.models import Environment
from portal.env import env_int
from portal.events import emit, incident_payload
from portal.incidents import silences, sns
from portal.incidents.models import (
    SEVERITY_RANK,
    Alert,
    AlertDelivery,
    AlertEvent,
    AlertSourceConfig,
    GroupingRule,
    Incident,
    RunbookMapping,
    Source,
    TimelineEntry,
)
from portal.incidents.parsing import (
    AlertIn,
    PayloadError,
    cloudwatch_alert,
    parse_alertmanager,
    parse_cloudwatch_message,
)
from portal.incidents.services import OPEN, incident_resolve_locked, timeline_write
from portal.metrics import EVENTS
from portal.tasking import enqueue

log = logging.getLogger(__name__)
# A fresh firing within this window after the key's incident resolved reopens it instead of opening another.
REOPEN_WINDOW = timedelta(minutes=30)
# A worker that takes an Alertmanager delivery takes the other pending ones with it, up to this many
# in one transaction: under a storm the backlog is applied in batches (the config read once, one
# commit), and each of their own tasks then finds its delivery done. 1 turns batching off.
BATCH_DELIVERIES = env_int("INTAKE_BATCH_DELIVERIES", 50, minimum=1)


def delivery_store(*, source: str, payload, dedup_key: str = "", remote_addr: str = "", alert_count: int = 0) -> tuple[AlertDelivery, bool]:
    """Keep the raw payload durably and queue its processing. Returns (delivery, created); a repeated
    dedup_key (SNS MessageId) returns the first delivery. Database errors propagate (the caller answers 5xx)."""
    try:
        with transaction.atomic():
            delivery = AlertDelivery.objects.create(
                source=source, payload=payload, dedup_key=dedup_key[:200], remote_addr=remote_addr[:64], alert_count=alert_count
            )
            enqueue("portal.incidents.tasks.process_delivery", delivery.pk)
    except IntegrityError:
        if not dedup_key:
            raise
        EVENTS.labels("delivery_duplicate", source).inc()
        return AlertDelivery.objects.get(source=source, dedup_key=dedup_key[:200]), False
    EVENTS.labels("delivery_received", source).inc()
    return delivery, True


def delivery_process(*, delivery_id: int) -> str:
    """Apply a stored delivery's alerts. Idempotent: only a pending delivery is processed, once.

    An Alertmanager delivery takes up to BATCH_DELIVERIES - 1 other pending Alertmanager deliveries
    with it (rows another worker holds are skipped), applied in one transaction, and a task whose
    delivery is done already takes up to BATCH_DELIVERIES pending ones; should a batch fail as a whole,
    each of its deliveries is applied alone."""
    if BATCH_DELIVERIES > 1:
        batch: list[int] = []
        try:
            outcome = _process_batch(delivery_id, batch)
        except Exception:  # noqa: BLE001 - the batch rolled back whole: each of its deliveries alone
            log.warning("batch of delivery %s (%d deliveries) failed; applying each alone", delivery_id, len(batch), exc_info=True)
            for pk in batch:
                if pk != delivery_id:
                    try:
                        _process_one(pk)
                    except Exception:  # noqa: BLE001 - left pending: its own task or the sweep retries it
                        log.warning("delivery %s failed alone; left pending", pk, exc_info=True)
            outcome = None
        if outcome is not None:
            return outcome
    return _process_one(delivery_id)


def _process_one(delivery_id: int) -> str:
    with transaction.atomic():
        claimed = AlertDelivery.objects.filter(pk=delivery_id, status=AlertDelivery.Status.PENDING).update(
            attempts=F("attempts") + 1
        )
        if not claimed:
            return "skipped"
    try:
        with transaction.atomic():
            # Lock the delivery: a sweep and the first task racing for it process it once.
            locked = AlertDelivery.objects.select_for_update().get(pk=delivery_id)
            if locked.status != AlertDelivery.Status.PENDING:
                return "skipped"
            note = _process_payload(locked)
            locked.status = AlertDelivery.Status.PROCESSED
            locked.processed_at = timezone.now()
            locked.error = note
            locked.save(update_fields=["status", "processed_at", "error"])
    except PayloadError as exc:
        AlertDelivery.objects.filter(pk=delivery_id).update(
            status=AlertDelivery.Status.REJECTED, processed_at=timezone.now(), error=f"{exc.reason}: {exc.detail}"[:2000]
        )
        return "rejected"
    return "processed"


def _process_batch(delivery_id: int, batch_ids: list[int]) -> str | None:
    """This Alertmanager delivery and pending others in one transaction: "skipped" when it is no longer
    pending or another worker's batch holds it (that batch applies it, or applies each of its deliveries
    alone should it fail), None when it is not an Alertmanager delivery (the single path applies it),
    else its outcome. `batch_ids` is filled with the batch's deliveries."""
    with transaction.atomic():
        # Not waiting on a row another batch holds: four workers waiting on one batch is one worker.
        own = AlertDelivery.objects.select_for_update(skip_locked=True).filter(pk=delivery_id).first()
        if own is not None and own.status == AlertDelivery.Status.PENDING and own.source != Source.ALERTMANAGER:
            return None
        if own is not None and own.status != AlertDelivery.Status.PENDING:
            own = None
        # A task whose delivery a batch already applied still takes what is pending now: under a storm
        # the queue holds one task per delivery, and a worker that only skipped would fall behind it.
        others = list(
            AlertDelivery.objects.select_for_update(skip_locked=True)
            .filter(status=AlertDelivery.Status.PENDING, source=Source.ALERTMANAGER)
            .exclude(pk=delivery_id).order_by("pk")[: BATCH_DELIVERIES - (1 if own else 0)]
        )
        if own is None and not others:
            return "skipped"
        batch = sorted([d for d in (own, *others) if d is not None], key=lambda d: d.pk)
        batch_ids.extend(d.pk for d in batch)
        now = timezone.now()
        parsed: list[tuple[AlertDelivery, list[AlertIn]]] = []
        for d in batch:
            d.attempts += 1
            d.processed_at = now
            try:
                alerts = parse_alertmanager(d.payload)
            except PayloadError as exc:
                d.status, d.error = AlertDelivery.Status.REJECTED, f"{exc.reason}: {exc.detail}"[:2000]
                continue
            truncated = d.payload.get("truncatedAlerts") or 0
            d.status, d.error = AlertDelivery.Status.PROCESSED, f"{truncated} alerts truncated by Alertmanager" if truncated else ""
            parsed.append((d, alerts))
        _apply_alerts_of(Source.ALERTMANAGER, parsed)
        AlertDelivery.objects.bulk_update(batch, ["status", "processed_at", "error", "attempts"])
    if len(batch) > 1 or own is None:
        EVENTS.labels("delivery_batched", Source.ALERTMANAGER).inc(len(batch) - (1 if own else 0))
    if own is None:
        return "skipped"
    return "rejected" if own.status == AlertDelivery.Status.REJECTED else "processed"


def delivery_mark_failed(*, delivery_id: int, error: str) -> None:
    AlertDelivery.objects.filter(pk=delivery_id, status=AlertDelivery.Status.PENDING).update(
        status=AlertDelivery.Status.FAILED, processed_at=timezone.now(), error=error[:2000]
    )


def _process_payload(delivery: AlertDelivery) -> str:
    if delivery.source == Source.ALERTMANAGER:
        alerts = parse_alertmanager(delivery.payload)
        _apply_alerts(source=Source.ALERTMANAGER, alerts=alerts, delivery=delivery)
        truncated = delivery.payload.get("truncatedAlerts") or 0
        return f"{truncated} alerts truncated by Alertmanager" if truncated else ""
    if delivery.source == Source.SNS:
        return _process_sns(delivery)
    raise PayloadError("unknown_source", f"no processor for source {delivery.source}")


def _process_sns(delivery: AlertDelivery) -> str:
    message = delivery.payload
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        sns.confirm_subscription(message)
        audit_record(actor=Actor.system("sns"), verb="incidents.sns_subscription_confirmed", target=("sns_topic", message["TopicArn"]))
        return "subscription confirmed"
    if kind == "UnsubscribeConfirmation":
        audit_record(actor=Actor.system("sns"), verb="incidents.sns_unsubscribed", target=("sns_topic", message["TopicArn"]))
        return "unsubscribe noted"
    alarm = parse_cloudwatch_message(message.get("Message"))
    alert = cloudwatch_alert(alarm)
    if alert is None:
        return f"{alarm['AlarmName']}: INSUFFICIENT_DATA (no change)"
    _apply_alerts(source=Source.SNS, alerts=[alert], delivery=delivery)
    return ""


# ----------------------------------------------------------------------------------------------
# Alerts -> incidents


def _source_config(source: str) -> AlertSourceConfig:
    config = AlertSourceConfig.objects.filter(source=source).first()
    return config or AlertSourceConfig(source=source)


# The portal's metric names for CloudWatch's (an SNS alarm) and the Prometheus rules' alert name stems
# (FtwErrorRateCritical), so an alarm and an alert about one breach carry the same `metric` label.
AWS_METRICS = {
    "HTTPCode_Target_5XX_Count": "error_rate", "HTTPCode_ELB_5XX_Count": "error_rate", "error_rate": "error_rate",
    "TargetResponseTime": "p95_response_time", "CPUUtilization": "cpu", "DatabaseConnections": "db_connections",
    "CacheHitRate": "cache_hit_ratio", "disk_used_percent": "disk", "mem_used_percent": "memory",
}
PROMETHEUS_STEMS = {
    "ErrorRate": "error_rate", "ResponseTimeP95": "p95_response_time", "CpuUsage": "cpu",
    "DatabaseConnections": "db_connections", "CacheHitRatio": "cache_hit_ratio", "DiskSaturation": "disk",
}
_FTW_ALERT = re.compile(r"^Ftw([A-Za-z0-9]+?)(Critical|Warning)$")


class Resources:
    """Environment names and colours by the AWS resource names alarms carry as dimensions (read once per batch)."""

    def __init__(self) -> None:
        self._index: dict[tuple[str, str], tuple[str, str]] | None = None

    def lookup(self, dimension: str, value: str) -> tuple[str, str] | None:
        if self._index is None:
            self._index = {}
            for env in Environment.objects.all():
                for dim, val, colour in (
                    ("LoadBalancer", env.alb_dimension, ""), ("TargetGroup", env.blue_tg_dimension, "blue"),
                    ("TargetGroup", env.green_tg_dimension, "green"), ("AutoScalingGroupName", env.blue_asg, "blue"),
                    ("AutoScalingGroupName", env.green_asg, "green"), ("DBInstanceIdentifier", env.rds_instance_id, ""),
                    ("ReplicationGroupId", env.cache_replication_group_id, ""),
                ):
                    if val:
                        self._index.setdefault((dim, val), (env.name, colour))
        return self._index.get((dimension, value))


def correlation_labels(labels: dict, name: str, resources: Resources) -> dict:
    """The alert's labels with `environment`, `metric` and `colour` filled in where the source says
    them another way: CloudWatch dimensions and metric names, the Prometheus rules' alert names."""
    out = dict(labels)
    if not out.get("environment") and out.get("env"):
        out["environment"] = out["env"]
    if not out.get("colour") and out.get("color"):
        out["colour"] = out["color"]
    metric = out.get("metric", "")
    if metric in AWS_METRICS and AWS_METRICS[metric] != metric:
        out["aws_metric"], out["metric"] = metric, AWS_METRICS[metric]
    if not out.get("metric"):
        match = _FTW_ALERT.match(out.get("alertname") or name)
        if match and match.group(1) in PROMETHEUS_STEMS:
            out["metric"] = PROMETHEUS_STEMS[match.group(1)]
    dims = [(k.removeprefix("dimension_"), v) for k, v in labels.items() if k.startswith("dimension_")]
    # A target group names the colour; a load balancer only the environment: the most specific wins.
    for dim, value in sorted(dims, key=lambda d: d[0] != "TargetGroup"):
        found = resources.lookup(dim, value)
        if found is None:
            continue
        out.setdefault("environment", found[0])
        if found[1]:
            out.setdefault("colour", found[1])
    return out


def rule_key(rule: GroupingRule, labels: dict) -> str | None:
    """The rule's grouping key for these labels, or None when a required label is missing."""
    parts = []
    for name in rule.labels or []:
        value = str(labels.get(name, "") or "")
        if not value and name not in (rule.optional_labels or []):
            return None
        parts.append(f"{name}={value}")
    return f"group:{rule.slug}:" + ",".join(parts) if parts else None


def grouping_for(config: AlertSourceConfig, alert: AlertIn, rules: list[GroupingRule]) -> tuple[str, timedelta]:
    """(grouping key, reopen window): the first enabled grouping rule that applies, across sources,
    else the source's own labels, else the source's key."""
    for rule in rules:
        key = rule_key(rule, alert.labels)
        if key is not None:
            return key[:500], timedelta(minutes=rule.window_minutes)
    return _grouping_key(config, alert)[:500], REOPEN_WINDOW


def _grouping_key(config: AlertSourceConfig, alert: AlertIn) -> str:
    if config.grouping_labels:
        parts = [f"{name}={alert.labels.get(name, '')}" for name in config.grouping_labels]
        return f"{config.source}:labels:" + ",".join(parts)
    return alert.grouping_key


def _advisory_locks(keys: list[str]) -> None:
    """PostgreSQL's transaction-scoped advisory lock of each grouping key, taken in the order given
    (sorted, as every transaction takes them), in one statement."""
    if connection.vendor == "postgresql":
        digests = [int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True) for key in keys]
        with connection.cursor() as cursor:
            if len(digests) == 1:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", digests)
            else:
                cursor.execute("SELECT count(pg_advisory_xact_lock(k.d)) FROM (SELECT d FROM unnest(%s::bigint[]) "
                               "WITH ORDINALITY AS t(d, n) ORDER BY n) AS k", [digests])


class _Reads:
    """What applying a batch reads once: the source's config, grouping rules, resources, holds,
    environments by name and the runbook mappings."""

    def __init__(self, source: str) -> None:
        self.config = _source_config(source)
        self.rules = list(GroupingRule.objects.filter(enabled=True))
        self.resources = Resources()
        self.holds = silences.Holds()
        self._environments: dict[str, Environment | None] = {}
        self._mappings: list[RunbookMapping] | None = None
        # The keys' rows, read (locked) for all of them at once by prefetch().
        self.open: dict[str, Incident] = {}
        self.resolved: dict[str, list[Incident]] = {}
        self.alerts: dict[str, Alert] = {}
        self.audits: list = []  # the batch's audit rows, written in one statement at its end
        self.opened_entry: TimelineEntry | None = None  # the group's "opened" row, written with its others
        # Rows written in a few statements when the batch ends, or before something reads them (flush()).
        self._new_alerts: list[Alert] = []
        self._changed_alerts: dict[int, Alert] = {}
        self._events: list[AlertEvent] = []
        self._timeline: list[TimelineEntry] = []

    def write(self, *, new: list[Alert] = (), changed: list[Alert] = (), events: list[AlertEvent] = (),
              timeline: list[TimelineEntry] = ()) -> None:
        self._new_alerts.extend(new)
        self._changed_alerts.update((id(al), al) for al in changed)
        self._events.extend(events)
        self._timeline.extend(timeline)

    def note(self, incident: Incident, kind: str, actor, text: str, data: dict | None = None) -> None:
        self._timeline.append(TimelineEntry(incident=incident, kind=kind, actor_label=Actor.of(actor).label, text=text, data=data or {}))

    def flush(self) -> None:
        """Write what is pending: new alerts, then changed ones, their reports, timeline rows, audit rows."""
        if self._new_alerts:
            Alert.objects.bulk_create(self._new_alerts)
            for al in self._new_alerts:  # written with their latest state: no update needed
                self._changed_alerts.pop(id(al), None)
        if self._changed_alerts:
            Alert.objects.bulk_update(list(self._changed_alerts.values()), [*_ALERT_FIELDS, "silenced_reason"])
        if self._events:
            AlertEvent.objects.bulk_create(self._events)
        if self._timeline:
            TimelineEntry.objects.bulk_create(self._timeline)
        if self.audits:
            audit_events_write(self.audits)
        self._new_alerts, self._changed_alerts, self._events, self._timeline, self.audits = [], {}, [], [], []

    def prefetch(self, source: str, keys: list[str], fingerprints: list[str], oldest_resolved) -> None:
        """Lock and read the keys' open incidents, their incidents resolved since `oldest_resolved`
        (the widest reopen window) and the known alerts: three statements for the whole batch."""
        self.open = {i.grouping_key: i for i in Incident.objects.select_for_update().filter(grouping_key__in=keys, status__in=OPEN)}
        self.resolved = {}
        for i in (Incident.objects.select_for_update().filter(grouping_key__in=keys, status=Incident.Status.RESOLVED,
                                                              resolved_at__gte=oldest_resolved).order_by("-resolved_at")):
            self.resolved.setdefault(i.grouping_key, []).append(i)
        self.alerts = {al.fingerprint: al for al in Alert.objects.select_for_update().filter(
            source=source, fingerprint__in=sorted(set(fingerprints))).order_by("fingerprint")}

    def resolved_since(self, key: str, since) -> Incident | None:
        return next((i for i in self.resolved.get(key, []) if i.resolved_at >= since), None)

    def environment(self, labels: dict):
        name = labels.get("environment") or labels.get("env")
        if not name:
            return None
        name = str(name)[:50]
        if name not in self._environments:
            self._environments[name] = Environment.objects.filter(name=name).first()
        return self._environments[name]

    def mappings(self) -> list[RunbookMapping]:
        if self._mappings is None:
            self._mappings = list(RunbookMapping.objects.all())
        return self._mappings


def _apply_alerts(*, source: str, alerts: list[AlertIn], delivery: AlertDelivery | None) -> list[Alert]:
    return _apply_alerts_of(source, [(delivery, alerts)])


def _apply_alerts_of(source: str, deliveries: list[tuple[AlertDelivery | None, list[AlertIn]]]) -> list[Alert]:
    """Apply the alerts of one or more deliveries: grouped by key across them, each key's reports in
    delivery order, the keys in sorted order (the order every transaction takes their locks in)."""
    reads = _Reads(source)
    groups: dict[str, list[tuple[AlertIn, AlertDelivery | None]]] = {}
    windows: dict[str, timedelta] = {}
    for delivery, alerts in deliveries:
        for a in alerts:
            a.labels = correlation_labels(a.labels, a.name, reads.resources)
            key, window = grouping_for(reads.config, a, reads.rules)
            groups.setdefault(key, []).append((a, delivery))
            windows[key] = window
    result = []
    keys = sorted(groups)
    if not keys:
        return result
    # No savepoint per group: a failure in one rolls the whole batch back (it is retried whole).
    with transaction.atomic(savepoint=False):
        # Every key's lock first, in sorted order, then their rows in three reads.
        _advisory_locks(keys)
        reads.prefetch(source, keys, [a.fingerprint for key in keys for a, _ in groups[key]], timezone.now() - max(windows.values()))
        for key in keys:
            result.extend(_apply_group(source=source, key=key, items=groups[key], reads=reads, window=windows[key]))
        reads.flush()
    return result


def runbook_for(name: str, labels: dict, mappings: list[RunbookMapping] | None = None) -> str:
    """The runbook slug of the first mapping (by priority) whose name pattern and labels match."""
    for mapping in (RunbookMapping.objects.all() if mappings is None else mappings):
        if mapping.name_pattern:
            try:
                if not re.search(mapping.name_pattern, name, re.IGNORECASE):
                    continue
            except re.error:
                continue
        matchers = mapping.label_matchers or {}
        if any(str(labels.get(k, "")).lower() != str(v).lower() for k, v in matchers.items()):
            continue
        if not mapping.name_pattern and not matchers:
            continue
        return mapping.runbook_slug
    return ""


def _new_alert(source: str, a: AlertIn, now, reads: _Reads) -> Alert:
    return Alert(
        source=source, fingerprint=a.fingerprint, name=a.name, status=a.status, severity=a.severity,
        summary=a.summary, labels=a.labels, annotations=a.annotations, generator_url=a.generator_url,
        starts_at=a.starts_at or (now if a.status == "firing" else None),
        ends_at=(a.ends_at or now) if a.status == "resolved" else None,
        last_received_at=now, environment=reads.environment(a.labels),
    )


def _update_alert(alert: Alert, a: AlertIn, now) -> str:
    """Apply one report to a known alert (in memory); returns its effect: fired, repeat, resolved, stale, ignored."""
    alert.last_received_at = now
    if a.status == "firing":
        if alert.status == Alert.Status.FIRING:
            effect = "repeat"
        elif alert.ends_at and (a.starts_at or now) <= alert.ends_at:
            # The firing twin of an episode whose resolution already arrived: nothing to open.
            return "stale"
        else:
            alert.status = Alert.Status.FIRING
            alert.starts_at = a.starts_at or now
            alert.ends_at = None
            effect = "fired"
        alert.labels, alert.annotations, alert.summary, alert.severity = a.labels, a.annotations, a.summary, a.severity
        alert.generator_url = a.generator_url or alert.generator_url
        return effect
    if alert.status == Alert.Status.RESOLVED:
        return "ignored"
    if a.ends_at and alert.starts_at and a.ends_at < alert.starts_at:
        return "stale"  # a resolution from an earlier episode
    alert.status = Alert.Status.RESOLVED
    alert.ends_at = a.ends_at or now
    return "resolved"


_ALERT_FIELDS = ["last_received_at", "status", "starts_at", "ends_at", "labels", "annotations", "summary", "severity", "generator_url", "incident"]


def _open_incident_for(*, source: str, key: str, a: AlertIn, reads: _Reads, now,
                       window: timedelta = REOPEN_WINDOW) -> tuple[Incident, bool]:
    """The key's open incident: one resolved within the window reopened, or a new one."""
    recent = reads.resolved_since(key, now - window)
    try:
        # On PostgreSQL the key's advisory lock is held: no other transaction can open it meanwhile,
        # so no savepoint is needed to survive a unique violation.
        with transaction.atomic(savepoint=connection.vendor != "postgresql"):
            if recent is not None:
                recent.status = Incident.Status.TRIGGERED
                recent.reopened_count += 1
                recent.acknowledged_at = recent.resolved_at = None
                recent.acknowledged_by = recent.resolved_by = recent.resolve_reason = ""
                recent.escalation_level = recent.escalation_round = 0
                recent.next_escalation_at = now
                recent.severity = a.severity
                recent.silence, recent.silenced_reason, recent.silenced_until = None, "", None
                recent.save()
                timeline_write(recent, TimelineEntry.Kind.REOPENED, Actor.system(source), f"Reopened: {a.name} fired again")
                audit_record(actor=Actor.system(source), verb="incident.reopen", target=recent, after={"status": recent.status})
                return recent, True
            incident = Incident.objects.create(
                grouping_key=key, source=source, status=Incident.Status.TRIGGERED, severity=a.severity,
                environment=reads.environment(a.labels), title=a.title or a.name, service=a.labels.get("service", "")[:100],
                runbook_slug=runbook_for(a.name, a.labels, reads.mappings()), auto_resolve=reads.config.auto_resolve, opened_at=now,
                next_escalation_at=now,
            )
            # Written with the group's other timeline rows, first (see _apply_group).
            reads.opened_entry = TimelineEntry(incident=incident, kind=TimelineEntry.Kind.OPENED, actor_label=Actor.system(source).label,
                                               text=f"Opened by {a.name}", data={"grouping_key": key})
            reads.audits.append(audit_event(actor=Actor.system(source), verb="incident.open", target=incident,
                                            after={"severity": incident.severity, "grouping_key": key}))
            emit("incident.opened", incident_payload(incident))
    except IntegrityError:
        # Another transaction opened it first (possible where advisory locks do not exist).
        return Incident.objects.select_for_update().get(grouping_key=key, status__in=OPEN), False
    EVENTS.labels("incident_opened", source).inc()
    return incident, True


def _apply_group(*, source: str, key: str, items: list[tuple[AlertIn, AlertDelivery | None]], reads: _Reads,
                 window: timedelta) -> list[Alert]:
    """Apply one grouping key's reports (each with its delivery, in delivery order) in one transaction:
    known alerts locked in one query, new ones inserted in one statement (a unique violation rolls the
    group back; the task retries)."""
    now = timezone.now()
    holds = reads.holds
    incident = reads.open.get(key)
    items = sorted(items, key=lambda x: x[0].fingerprint)  # stable: one alert's reports keep their order
    known = {fp: reads.alerts[fp] for fp in sorted({a.fingerprint for a, _ in items}) if fp in reads.alerts}
    new: dict[str, Alert] = {}
    applied: list[tuple[Alert, AlertIn, str]] = []
    delivered: list[AlertDelivery | None] = []
    for a, delivery in items:
        alert = known.get(a.fingerprint) or new.get(a.fingerprint)
        if alert is None:
            alert = new[a.fingerprint] = _new_alert(source, a, now, reads)
            effect = "fired" if a.status == "firing" else "resolved_first"
        else:
            effect = _update_alert(alert, a, now)
        applied.append((alert, a, effect))
        delivered.append(delivery)

    opened = False
    held: dict[str, silences.Hold | None] = {}
    for alert, a, effect in applied:
        wants_incident = effect == "fired" or (effect == "repeat" and alert.incident_id is None and incident is None)
        if wants_incident and incident is None:
            incident, opened = _open_incident_for(source=source, key=key, a=a, reads=reads, now=now, window=window)
        if effect in ("fired", "repeat"):
            hold = held[a.fingerprint] = holds.for_labels(alert.labels)
            alert.silenced_reason = hold.reason[:500] if hold else ""
        if incident is not None and effect in ("fired", "repeat") and alert.incident_id != incident.pk:
            alert.incident = incident

    reads.alerts.update(new)  # the same alert reported under another key later in the batch

    events, timeline, resolved_any = [], [], False
    if reads.opened_entry is not None:
        timeline.append(reads.opened_entry)
        reads.opened_entry = None
    for (alert, a, effect), delivery in zip(applied, delivered, strict=True):
        events.append(AlertEvent(alert=alert, status=a.status, starts_at=a.starts_at, ends_at=a.ends_at, delivery=delivery, effect=effect))
        if incident is None or alert.incident_id != incident.pk:
            continue
        if effect == "fired":
            hold = held.get(a.fingerprint)
            timeline.append(TimelineEntry(incident=incident, kind=TimelineEntry.Kind.ALERT_FIRING, actor_label=Actor.system(source).label,
                                          text=f"{a.name} firing" + (f": {a.summary}" if a.summary else "")
                                          + (f" (silenced: {hold.reason})" if hold else ""),
                                          data={"fingerprint": a.fingerprint, "generator_url": a.generator_url,
                                                "silenced": hold.reason if hold else ""}))
        elif effect == "resolved":
            resolved_any = True
            timeline.append(TimelineEntry(incident=incident, kind=TimelineEntry.Kind.ALERT_RESOLVED, actor_label=Actor.system(source).label,
                                          text=f"{a.name} resolved", data={"fingerprint": a.fingerprint}))
    # Written with the batch's other rows at its end (or before a read below needs them).
    reads.write(new=list(new.values()), changed=list(known.values()), events=events, timeline=timeline)
    if incident is not None:
        firing_reports = [(a, held.get(a.fingerprint)) for alert, a, effect in applied
                          if effect in ("fired", "repeat") and alert.incident_id == incident.pk]
        # A brand-new incident's alerts are all in this delivery: their severities need no query.
        brand_new = opened and incident.reopened_count == 0
        firing_now = ([alert.severity for alert, _, _ in applied
                       if alert.incident_id == incident.pk and alert.status == Alert.Status.FIRING] if brand_new else None)
        if firing_now is None:
            reads.flush()
        page = _incident_follow(incident, source=source, reports=firing_reports, opened=opened, now=now, firing=firing_now, reads=reads)
        if page:
            enqueue("portal.incidents.tasks.escalate_incident", incident.pk)
    if incident is not None and resolved_any and incident.auto_resolve:
        reads.flush()
        if not incident.alerts.filter(status=Alert.Status.FIRING).exists():
            incident_resolve_locked(incident, actor=Actor.system(source), reason="all alerts resolved")
    return [alert for alert, _, _ in applied]


def _incident_follow(incident: Incident, *, source: str, reports: list[tuple[AlertIn, silences.Hold | None]], opened: bool, now,
                     reads: _Reads, firing: list[str] | None = None) -> bool:
    """Bring the (locked) incident in line with its alerts: its severity is its firing alerts' highest
    (rising to critical pages again by the critical policy, falling pages no one), and a silence
    holds its pages while every alert that fires into it is silenced. True when a page is due now.
    `firing`: the severities of its firing alerts, when the caller knows them all."""
    actor = Actor.system(source)
    fields: set[str] = set()
    page = opened
    if firing is None:
        firing = list(incident.alerts.filter(status=Alert.Status.FIRING).values_list("severity", flat=True))
    if firing:
        severity = max(firing, key=lambda v: SEVERITY_RANK.get(v, 0))
        if severity != incident.severity:
            rising = SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK.get(incident.severity, 0)
            before = incident.severity
            incident.severity = severity
            fields.add("severity")
            text = f"Severity {'rose' if rising else 'fell'} from {before} to {severity}"
            if rising and not opened and incident.status == Incident.Status.TRIGGERED:
                # A new policy: its levels start again from the first.
                incident.escalation_level = incident.escalation_round = 0
                incident.next_escalation_at = now
                fields |= {"escalation_level", "escalation_round", "next_escalation_at"}
                page = True
                text += f": paging by the {severity} policy"
            reads.note(incident, TimelineEntry.Kind.NOTE, actor, text, {"severity": {"from": before, "to": severity}})
            reads.audits.append(audit_event(actor=actor, verb="incident.severity", target=incident, before={"severity": before},
                                            after={"severity": severity}))
    if reports:
        loud = [a for a, hold in reports if hold is None]
        held = [hold for _, hold in reports if hold is not None]
        if loud and incident.silenced_until is not None:
            # An alert no silence covers (or one after the silence ended): the incident pages now.
            reads.note(incident, TimelineEntry.Kind.NOTE, actor, f"No longer silenced: {loud[0].name} fired outside the silence")
            incident.silence, incident.silenced_reason, incident.silenced_until = None, "", None
            fields |= {"silence", "silenced_reason", "silenced_until"}
            if incident.status == Incident.Status.TRIGGERED:
                incident.escalation_level = incident.escalation_round = 0
                incident.next_escalation_at = now
                fields |= {"escalation_level", "escalation_round", "next_escalation_at"}
                page = True
        elif not loud and held and (opened or incident.silenced_until is not None):
            hold = max(held, key=lambda h: h.until)
            if incident.silenced_until is None:
                reads.note(incident, TimelineEntry.Kind.NOTE, actor, f"Silenced: {hold.reason} (pages nobody until {hold.until:%H:%M UTC})",
                               {"silence": str(hold.silence.public_id) if hold.silence else "", "until": hold.until.isoformat()})
            if incident.silenced_until is None or hold.until > incident.silenced_until:
                incident.silence, incident.silenced_reason, incident.silenced_until = hold.silence, hold.reason[:500], hold.until
                fields |= {"silence", "silenced_reason", "silenced_until"}
    if incident.silenced_until is not None and incident.silenced_until > now:
        incident.next_escalation_at = None
        fields.add("next_escalation_at")
        page = False
    if fields:
        incident.save(update_fields=[*sorted(fields), "updated_at"])
    return page


def alert_ingest_internal(
    *, source: str, fingerprint: str, name: str, severity: str, firing: bool, summary: str, labels: dict,
    annotations: dict | None = None, environment=None, grouping_key: str | None = None,
) -> Alert:
    """Raise or resolve an alert from the portal itself (health checks, deployments): same pipeline and dedup."""
    labels = {str(k): str(v) for k, v in (labels or {}).items()}
    labels.setdefault("alertname", name)
    labels.setdefault("severity", severity)
    if environment is not None:
        labels.setdefault("environment", environment.name)
    now = timezone.now()
    a = AlertIn(
        fingerprint=f"{source}:{fingerprint}"[:200], name=name[:200], status="firing" if firing else "resolved",
        severity=severity if severity in SEVERITY_RANK else "warning", summary=(summary or "")[:500], labels=labels,
        annotations=dict(annotations or {}), starts_at=now if firing else None, ends_at=None if firing else now,
        grouping_key=f"internal:{grouping_key or source + ':' + name}",
        title=f"{name}: {summary}"[:300] if summary else name[:300],
    )
    payload = {"source": source, "fingerprint": fingerprint, "name": name, "severity": severity, "firing": firing,
               "summary": summary, "labels": labels, "annotations": annotations or {}, "grouping_key": grouping_key}
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                delivery = AlertDelivery.objects.create(source=Source.INTERNAL, payload=payload, alert_count=1,
                                                        status=AlertDelivery.Status.PROCESSED, processed_at=now, attempts=attempt)
                alert = _apply_alerts(source=Source.INTERNAL, alerts=[a], delivery=delivery)[0]
            break
        except IntegrityError:
            # The same alert was created concurrently (under another grouping key): once more finds it.
            if attempt == 2:
                raise
    if environment is not None and alert.environment_id is None:
        Alert.objects.filter(pk=alert.pk).update(environment=environment)
        alert.environment = environment
    return alert
