"""Writes for alerts and incidents: ingestion, dedup, lifecycle, timeline, escalation, notifications.

Dedup rests on the database: a unique (source, fingerprint) per alert, a partial unique index for
one open incident per grouping key, an IntegrityError fallback, row locks (select_for_update) and,
on PostgreSQL, a transaction-scoped advisory lock per grouping key so one key's alerts are applied
one transaction at a time.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from portal.audit.services import actor_fields, audit_record
from portal.incidents import notify
from portal.incidents.models import (
    SEVERITY_RANK,
    Alert,
    AlertDelivery,
    AlertEvent,
    AlertSourceConfig,
    EscalationPolicy,
    Incident,
    Notification,
    RejectedDelivery,
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
from portal.metrics import EVENTS

log = logging.getLogger(__name__)
OPEN = (Incident.Status.TRIGGERED, Incident.Status.ACKNOWLEDGED)
# A fresh firing within this window after the key's incident resolved reopens it instead of opening another.
REOPEN_WINDOW = timedelta(minutes=30)


class InvalidTransition(Exception):
    """The incident is not in a state that allows this action (e.g. acknowledging a resolved incident)."""


class IncidentConflict(Exception):
    """Another open incident holds this grouping key."""


def actor_label(actor) -> str:
    return actor_fields(actor)["actor_label"]


def _enqueue(task, *args) -> None:
    """Publish after commit; a broker failure is logged, never raised: the outbox sweep re-sends."""

    def send():
        try:
            task.delay(*args)
        except Exception:  # noqa: BLE001
            log.warning("could not enqueue %s%r; the sweep will retry", task.name, args, exc_info=True)

    transaction.on_commit(send)


# ----------------------------------------------------------------------------------------------
# Deliveries (the outbox)


def delivery_store(*, source: str, payload, dedup_key: str = "", remote_addr: str = "", alert_count: int = 0) -> tuple[AlertDelivery, bool]:
    """Keep the raw payload durably and queue its processing. Returns (delivery, created); a repeated
    dedup_key (SNS MessageId) returns the first delivery. Database errors propagate (the caller answers 5xx)."""
    from portal.incidents import tasks

    try:
        with transaction.atomic():
            delivery = AlertDelivery.objects.create(
                source=source, payload=payload, dedup_key=dedup_key[:200], remote_addr=remote_addr[:64], alert_count=alert_count
            )
            _enqueue(tasks.process_delivery, delivery.pk)
    except IntegrityError:
        if not dedup_key:
            raise
        EVENTS.labels("delivery_duplicate", source).inc()
        return AlertDelivery.objects.get(source=source, dedup_key=dedup_key[:200]), False
    EVENTS.labels("delivery_received", source).inc()
    return delivery, True


# Rejections kept: the first REJECT_SAMPLE_FIRST per source and reason each minute (per process), then
# one row per REJECT_SAMPLE_EVERY standing for them all; rows older than REJECT_RETENTION are pruned.
REJECT_SAMPLE_FIRST = 20
REJECT_SAMPLE_EVERY = 100
REJECT_RETENTION = timedelta(days=7)
REJECT_KEEP_MAX = 20_000


class RejectSampler:
    def __init__(self, *, first: int, every: int, window: float = 60.0):
        self.first, self.every, self.window = first, every, window
        self._state: dict[tuple[str, str], list] = {}  # key -> [window start, stored in window, skipped]
        self._lock = threading.Lock()

    def admit(self, key: tuple[str, str]) -> int:
        """The weight of the row to store for this rejection, or 0 to store nothing."""
        now = time.monotonic()
        with self._lock:
            if len(self._state) > 256:  # reasons are a fixed set; this only bounds junk keys
                self._state.clear()
            state = self._state.setdefault(key, [now, 0, 0])
            if now - state[0] >= self.window:
                state[0], state[1] = now, 0
            if state[1] < self.first:
                state[1] += 1
                weight, state[2] = 1 + state[2], 0
                return weight
            state[2] += 1
            if state[2] >= self.every:
                weight, state[2] = state[2], 0
                return weight
            return 0

    def reset(self) -> None:
        with self._lock:
            self._state.clear()


REJECT_SAMPLER = RejectSampler(first=REJECT_SAMPLE_FIRST, every=REJECT_SAMPLE_EVERY)


def _printable(text: str, limit: int) -> str:
    """Stored text without NULs (PostgreSQL refuses them) or lone surrogates, cut to the column."""
    return text.encode("utf-8", "replace").decode().replace("\x00", "\\x00")[:limit]


def delivery_reject(*, source: str, reason: str, detail: str, status_code: int = 400, remote_addr: str = "", user_agent: str = "", body: bytes | str = b"") -> RejectedDelivery | None:
    EVENTS.labels("delivery_rejected", source).inc()
    weight = REJECT_SAMPLER.admit((source, reason))
    if not weight:
        return None
    excerpt = body[:8000].decode("utf-8", "replace") if isinstance(body, bytes) else body[:8000]
    try:
        return RejectedDelivery.objects.create(
            source=source, reason=_printable(reason, 40), detail=_printable(detail, 500), status_code=status_code,
            remote_addr=_printable(remote_addr, 64), user_agent=_printable(user_agent, 200), excerpt=_printable(excerpt, 2000),
            weight=weight,
        )
    except Exception:  # noqa: BLE001 - the 4xx answer matters more than its log row
        log.warning("could not record a rejected %s delivery", source, exc_info=True)
        return None


def rejected_deliveries_prune(*, now=None) -> int:
    """Delete rejections older than REJECT_RETENTION, and the oldest beyond REJECT_KEEP_MAX rows."""
    now = now or timezone.now()
    deleted, _ = RejectedDelivery.objects.filter(received_at__lt=now - REJECT_RETENTION).delete()
    beyond = list(RejectedDelivery.objects.order_by("-pk").values_list("pk", flat=True)[REJECT_KEEP_MAX : REJECT_KEEP_MAX + 1])
    if beyond:
        more, _ = RejectedDelivery.objects.filter(pk__lte=beyond[0]).delete()
        deleted += more
    return deleted


def delivery_process(*, delivery_id: int) -> str:
    """Apply a stored delivery's alerts. Idempotent: only a pending delivery is processed, once."""
    with transaction.atomic():
        claimed = AlertDelivery.objects.filter(pk=delivery_id, status=AlertDelivery.Status.PENDING).update(
            attempts=F("attempts") + 1
        )
        if not claimed:
            return "skipped"
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    try:
        with transaction.atomic():
            # Lock the delivery: a sweep and the first task racing for it process it once.
            locked = AlertDelivery.objects.select_for_update().get(pk=delivery_id)
            if locked.status != AlertDelivery.Status.PENDING:
                return "skipped"
            note = _process_payload(delivery)
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
    from portal.incidents import sns

    message = delivery.payload
    kind = message.get("Type")
    if kind == "SubscriptionConfirmation":
        sns.confirm_subscription(message)
        audit_record(actor="system:sns", verb="incidents.sns_subscription_confirmed", target=("sns_topic", message["TopicArn"]))
        return "subscription confirmed"
    if kind == "UnsubscribeConfirmation":
        audit_record(actor="system:sns", verb="incidents.sns_unsubscribed", target=("sns_topic", message["TopicArn"]))
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


def _grouping_key(config: AlertSourceConfig, alert: AlertIn) -> str:
    if config.grouping_labels:
        parts = [f"{name}={alert.labels.get(name, '')}" for name in config.grouping_labels]
        return f"{config.source}:labels:" + ",".join(parts)
    return alert.grouping_key


def _advisory_lock(key: str) -> None:
    if connection.vendor == "postgresql":
        digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [digest])


def _apply_alerts(*, source: str, alerts: list[AlertIn], delivery: AlertDelivery | None) -> list[Alert]:
    config = _source_config(source)
    groups: dict[str, list[AlertIn]] = {}
    for a in alerts:
        groups.setdefault(_grouping_key(config, a)[:500], []).append(a)
    result = []
    for key in sorted(groups):
        with transaction.atomic():
            _advisory_lock(key)
            result.extend(_apply_group(source=source, key=key, items=groups[key], config=config, delivery=delivery))
    return result


def _environment_for(labels: dict):
    from portal.cloud.models import Environment

    name = labels.get("environment") or labels.get("env")
    if not name:
        return None
    return Environment.objects.filter(name=str(name)[:50]).first()


def runbook_for(name: str, labels: dict) -> str:
    """The runbook slug of the first mapping (by priority) whose name pattern and labels match."""
    for mapping in RunbookMapping.objects.all():
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


def _new_alert(source: str, a: AlertIn, now) -> Alert:
    return Alert(
        source=source, fingerprint=a.fingerprint, name=a.name, status=a.status, severity=a.severity,
        summary=a.summary, labels=a.labels, annotations=a.annotations, generator_url=a.generator_url,
        starts_at=a.starts_at or (now if a.status == "firing" else None),
        ends_at=(a.ends_at or now) if a.status == "resolved" else None,
        last_received_at=now, environment=_environment_for(a.labels),
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


def _open_incident_for(*, source: str, key: str, a: AlertIn, config: AlertSourceConfig, now) -> tuple[Incident, bool]:
    """The key's open incident: a recently resolved one reopened, or a new one."""
    recent = (
        Incident.objects.select_for_update()
        .filter(grouping_key=key, status=Incident.Status.RESOLVED, resolved_at__gte=now - REOPEN_WINDOW)
        .order_by("-resolved_at")
        .first()
    )
    try:
        with transaction.atomic():
            if recent is not None:
                recent.status = Incident.Status.TRIGGERED
                recent.reopened_count += 1
                recent.acknowledged_at = recent.resolved_at = None
                recent.acknowledged_by = recent.resolved_by = recent.resolve_reason = ""
                recent.escalation_level = recent.escalation_round = 0
                recent.next_escalation_at = now
                recent.save()
                _timeline(recent, TimelineEntry.Kind.REOPENED, f"system:{source}", f"Reopened: {a.name} fired again")
                audit_record(actor=f"system:{source}", verb="incident.reopen", target=recent, after={"status": recent.status})
                return recent, True
            incident = Incident.objects.create(
                grouping_key=key, source=source, status=Incident.Status.TRIGGERED, severity=a.severity,
                environment=_environment_for(a.labels), title=a.title or a.name, service=a.labels.get("service", "")[:100],
                runbook_slug=runbook_for(a.name, a.labels), auto_resolve=config.auto_resolve, opened_at=now,
                next_escalation_at=now,
            )
            _timeline(incident, TimelineEntry.Kind.OPENED, f"system:{source}", f"Opened by {a.name}", {"grouping_key": key})
            audit_record(actor=f"system:{source}", verb="incident.open", target=incident, after={"severity": incident.severity, "grouping_key": key})
    except IntegrityError:
        # Another transaction opened it first (possible where advisory locks do not exist).
        return Incident.objects.select_for_update().get(grouping_key=key, status__in=OPEN), False
    EVENTS.labels("incident_opened", source).inc()
    return incident, True


def _apply_group(*, source: str, key: str, items: list[AlertIn], config: AlertSourceConfig, delivery) -> list[Alert]:
    """Apply one grouping key's reports in one transaction: known alerts locked in one query, new ones
    inserted in one statement (a unique violation rolls the group back; the task retries)."""
    from portal.incidents import tasks

    now = timezone.now()
    incident = Incident.objects.select_for_update().filter(grouping_key=key, status__in=OPEN).first()
    items = sorted(items, key=lambda x: x.fingerprint)
    known = {
        al.fingerprint: al
        for al in Alert.objects.select_for_update().filter(source=source, fingerprint__in=[a.fingerprint for a in items]).order_by("fingerprint")
    }
    new: dict[str, Alert] = {}
    applied: list[tuple[Alert, AlertIn, str]] = []
    for a in items:
        alert = known.get(a.fingerprint) or new.get(a.fingerprint)
        if alert is None:
            alert = new[a.fingerprint] = _new_alert(source, a, now)
            effect = "fired" if a.status == "firing" else "resolved_first"
        else:
            effect = _update_alert(alert, a, now)
        applied.append((alert, a, effect))

    opened = False
    for alert, a, effect in applied:
        wants_incident = effect == "fired" or (effect == "repeat" and alert.incident_id is None and incident is None)
        if wants_incident and incident is None:
            incident, opened = _open_incident_for(source=source, key=key, a=a, config=config, now=now)
        if incident is not None and effect in ("fired", "repeat") and alert.incident_id != incident.pk:
            alert.incident = incident
            if SEVERITY_RANK.get(a.severity, 0) > SEVERITY_RANK.get(incident.severity, 0):
                incident.severity = a.severity
                incident.save(update_fields=["severity", "updated_at"])

    if new:
        with transaction.atomic():
            Alert.objects.bulk_create(list(new.values()))
    changed = [al for al in known.values()]
    if changed:
        Alert.objects.bulk_update(changed, _ALERT_FIELDS)

    events, timeline, resolved_any = [], [], False
    for alert, a, effect in applied:
        events.append(AlertEvent(alert=alert, status=a.status, starts_at=a.starts_at, ends_at=a.ends_at, delivery=delivery, effect=effect))
        if incident is None or alert.incident_id != incident.pk:
            continue
        if effect == "fired":
            timeline.append(TimelineEntry(incident=incident, kind=TimelineEntry.Kind.ALERT_FIRING, actor_label=f"system:{source}",
                                          text=f"{a.name} firing" + (f": {a.summary}" if a.summary else ""),
                                          data={"fingerprint": a.fingerprint, "generator_url": a.generator_url}))
        elif effect == "resolved":
            resolved_any = True
            timeline.append(TimelineEntry(incident=incident, kind=TimelineEntry.Kind.ALERT_RESOLVED, actor_label=f"system:{source}",
                                          text=f"{a.name} resolved", data={"fingerprint": a.fingerprint}))
    AlertEvent.objects.bulk_create(events)
    TimelineEntry.objects.bulk_create(timeline)
    if incident is not None and opened:
        _enqueue(tasks.escalate_incident, incident.pk)
    if (
        incident is not None and resolved_any and incident.auto_resolve
        and not incident.alerts.filter(status=Alert.Status.FIRING).exists()
    ):
        _resolve_locked(incident, actor=f"system:{source}", reason="all alerts resolved")
    return [alert for alert, _, _ in applied]


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


# ----------------------------------------------------------------------------------------------
# Incident lifecycle


def _timeline(incident: Incident, kind: str, actor, text: str = "", data: dict | None = None) -> TimelineEntry:
    label = actor if isinstance(actor, str) else actor_label(actor)
    return TimelineEntry.objects.create(incident=incident, kind=kind, actor_label=label, text=text, data=data or {})


def incident_timeline_add(*, incident: Incident, kind: str, actor, text: str = "", data: dict | None = None) -> TimelineEntry:
    """Append to an incident's timeline (runbook steps, cloud actions, deployments, notes, notifications)."""
    with transaction.atomic():
        entry = _timeline(incident, kind, actor, text, data)
        audit_record(actor=actor, verb=f"incident.timeline.{kind}"[:100], target=incident, extra={"text": text[:500]})
    return entry


def _lock(incident: Incident) -> Incident:
    return Incident.objects.select_for_update().get(pk=incident.pk)


def _cancel_pending_notifications(incident: Incident, *, keep_manual: bool = False) -> None:
    qs = Notification.objects.filter(incident=incident, status=Notification.Status.PENDING)
    if keep_manual:
        qs = qs.exclude(manual=True)
    qs.update(
        status=Notification.Status.CANCELLED, error="incident acknowledged or resolved"
    )


def incident_acknowledge(*, incident: Incident, actor) -> Incident:
    """Stop escalation and record who took it. Acknowledging twice is a no-op; a resolved incident cannot be."""
    with transaction.atomic():
        inc = _lock(incident)
        if inc.status == Incident.Status.ACKNOWLEDGED:
            return inc
        if inc.status == Incident.Status.RESOLVED:
            raise InvalidTransition("the incident is resolved; reopen it first")
        inc.status = Incident.Status.ACKNOWLEDGED
        inc.acknowledged_at = timezone.now()
        inc.acknowledged_by = actor_label(actor)
        inc.next_escalation_at = None
        inc.save(update_fields=["status", "acknowledged_at", "acknowledged_by", "next_escalation_at", "updated_at"])
        _cancel_pending_notifications(inc, keep_manual=True)
        _timeline(inc, TimelineEntry.Kind.ACKNOWLEDGED, actor, "Acknowledged")
        audit_record(actor=actor, verb="incident.acknowledge", target=inc, before={"status": "triggered"}, after={"status": inc.status})
    return inc


def _resolve_locked(inc: Incident, *, actor, reason: str) -> Incident:
    before = inc.status
    inc.status = Incident.Status.RESOLVED
    inc.resolved_at = timezone.now()
    inc.resolved_by = actor if isinstance(actor, str) else actor_label(actor)
    inc.resolve_reason = reason[:500]
    inc.next_escalation_at = None
    inc.save(update_fields=["status", "resolved_at", "resolved_by", "resolve_reason", "next_escalation_at", "updated_at"])
    _cancel_pending_notifications(inc)
    _timeline(inc, TimelineEntry.Kind.RESOLVED, actor, f"Resolved: {reason}" if reason else "Resolved")
    audit_record(actor=actor, verb="incident.resolve", target=inc, before={"status": before}, after={"status": inc.status, "reason": reason})
    EVENTS.labels("incident_resolved", inc.source).inc()
    return inc


def incident_resolve(*, incident: Incident, actor, reason: str = "") -> Incident:
    with transaction.atomic():
        inc = _lock(incident)
        if inc.status == Incident.Status.RESOLVED:
            return inc
        return _resolve_locked(inc, actor=actor, reason=reason)


def incident_reopen(*, incident: Incident, actor, reason: str = "") -> Incident:
    try:
        with transaction.atomic():
            inc = _lock(incident)
            if inc.status != Incident.Status.RESOLVED:
                return inc
            inc.status = Incident.Status.TRIGGERED
            inc.reopened_count += 1
            inc.resolved_at = inc.acknowledged_at = None
            inc.resolved_by = inc.acknowledged_by = inc.resolve_reason = ""
            inc.escalation_level = inc.escalation_round = 0
            inc.next_escalation_at = timezone.now()
            inc.save()
            _timeline(inc, TimelineEntry.Kind.REOPENED, actor, f"Reopened: {reason}" if reason else "Reopened")
            audit_record(actor=actor, verb="incident.reopen", target=inc, after={"status": inc.status, "reason": reason})
            from portal.incidents import tasks

            _enqueue(tasks.escalate_incident, inc.pk)
    except IntegrityError as exc:
        raise IncidentConflict("another open incident already holds this grouping key") from exc
    return inc


def incident_assign(*, incident: Incident, assignee, actor) -> Incident:
    with transaction.atomic():
        inc = _lock(incident)
        before = inc.assignee.get_username() if inc.assignee else None
        inc.assignee = assignee
        inc.save(update_fields=["assignee", "updated_at"])
        who = assignee.get_username() if assignee else "nobody"
        _timeline(inc, TimelineEntry.Kind.ASSIGNED, actor, f"Assigned to {who}", {"assignee": who})
        audit_record(actor=actor, verb="incident.assign", target=inc, before={"assignee": before}, after={"assignee": who})
    return inc


def incident_note_add(*, incident: Incident, actor, text: str) -> TimelineEntry:
    text = (text or "").strip()
    if not text:
        raise ValueError("a note needs text")
    return incident_timeline_add(incident=incident, kind=TimelineEntry.Kind.NOTE, actor=actor, text=text[:20000])


POSTMORTEM_FIELDS = ("postmortem_summary", "postmortem_impact", "postmortem_root_cause", "postmortem_actions")


def incident_postmortem_update(*, incident: Incident, actor, summary: str, impact: str, root_cause: str, actions: str) -> Incident:
    with transaction.atomic():
        inc = _lock(incident)
        before = {f: getattr(inc, f) for f in POSTMORTEM_FIELDS}
        inc.postmortem_summary, inc.postmortem_impact = summary.strip(), impact.strip()
        inc.postmortem_root_cause, inc.postmortem_actions = root_cause.strip(), actions.strip()
        inc.save(update_fields=[*POSTMORTEM_FIELDS, "updated_at"])
        _timeline(inc, TimelineEntry.Kind.POSTMORTEM, actor, "Postmortem updated")
        audit_record(actor=actor, verb="incident.postmortem", target=inc, before=before, after={f: getattr(inc, f) for f in POSTMORTEM_FIELDS})
    return inc


def incident_export_markdown(incident: Incident) -> str:
    """The incident, its postmortem and its timeline as a Markdown document."""
    def fmt(dt):
        return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else "-"

    lines = [
        f"# Incident: {incident.title}", "",
        f"- Status: {incident.get_status_display()}",
        f"- Severity: {incident.severity}",
        f"- Environment: {incident.environment.name if incident.environment else '-'}",
        f"- Service: {incident.service or '-'}",
        f"- Opened: {fmt(incident.opened_at)}",
        f"- Acknowledged: {fmt(incident.acknowledged_at)} {('by ' + incident.acknowledged_by) if incident.acknowledged_by else ''}".rstrip(),
        f"- Resolved: {fmt(incident.resolved_at)} {('by ' + incident.resolved_by) if incident.resolved_by else ''}".rstrip(),
        f"- Runbook: {incident.runbook_slug or '-'}", "",
        "## Postmortem", "",
        "### Summary", "", incident.postmortem_summary or "_(not written)_", "",
        "### Impact", "", incident.postmortem_impact or "_(not written)_", "",
        "### Root cause", "", incident.postmortem_root_cause or "_(not written)_", "",
        "### Actions", "", incident.postmortem_actions or "_(not written)_", "",
        "## Alerts", "",
    ]
    for alert in incident.alerts.all():
        lines.append(f"- `{alert.fingerprint}` {alert.name} ({alert.status})" + (f" <{alert.generator_url}>" if alert.generator_url else ""))
    lines += ["", "## Timeline", ""]
    for entry in incident.timeline.all():
        text = entry.text.replace("\n", "\n  ")
        lines.append(f"- {fmt(entry.at)} **{entry.kind}** ({entry.actor_label}): {text}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Escalation and notifications


@dataclass
class EscalationResult:
    level: int = 0
    notifications: tuple[int, ...] = ()


def _page_next_level(inc: Incident, *, now, actor, manual: bool = False, reason: str = "") -> EscalationResult:
    """Page the level after the last one paged (level 1 of the next round after the last level);
    the caller holds the incident's row lock."""
    from portal.incidents import tasks

    policy = EscalationPolicy.objects.filter(severity=inc.severity).first()
    levels = list(policy.levels.prefetch_related("channels").order_by("number")) if policy else []
    if not levels:
        inc.next_escalation_at = None
        inc.save(update_fields=["next_escalation_at"])
        return EscalationResult()
    index, round_ = inc.escalation_level, inc.escalation_round  # index = levels already paged this round
    if index >= len(levels):
        if not policy.repeat and not manual:
            inc.next_escalation_at = None
            inc.save(update_fields=["next_escalation_at"])
            return EscalationResult()
        index, round_ = 0, round_ + 1
    level = levels[index]
    created = []
    for channel in level.channels.all():
        if not channel.enabled:
            continue
        n, made = Notification.objects.get_or_create(incident=inc, channel=channel, level=level.number, round=round_,
                                                     defaults={"manual": manual})
        if made:
            created.append(n.pk)
    inc.escalation_level, inc.escalation_round = index + 1, round_
    if inc.status != Incident.Status.TRIGGERED:
        inc.next_escalation_at = None
    elif index + 1 < len(levels):
        inc.next_escalation_at = now + timedelta(minutes=levels[index + 1].delay_minutes)
    elif policy.repeat:
        inc.next_escalation_at = now + timedelta(minutes=policy.repeat_after_minutes)
    else:
        inc.next_escalation_at = None
    inc.save(update_fields=["escalation_level", "escalation_round", "next_escalation_at"])
    names = ", ".join(c.name for c in level.channels.all() if c.enabled) or "no enabled channels"
    text = f"Level {level.number} paged ({names})" + (f": {reason}" if reason else "")
    _timeline(inc, TimelineEntry.Kind.ESCALATION, actor, text, {"level": level.number, "round": round_, "manual": manual})
    for pk in created:
        _enqueue(tasks.send_notification, pk)
    return EscalationResult(level=level.number, notifications=tuple(created))


def incident_escalate(*, incident_id: int, now=None) -> EscalationResult:
    """Page the next level when it is due. The incident row is locked, so an acknowledgement racing
    this either lands first (nothing is paged) or waits until the page is recorded."""
    now = now or timezone.now()
    with transaction.atomic():
        inc = Incident.objects.select_for_update().filter(pk=incident_id).first()
        if inc is None or inc.status != Incident.Status.TRIGGERED or inc.next_escalation_at is None or inc.next_escalation_at > now:
            return EscalationResult()
        return _page_next_level(inc, now=now, actor="system:escalation")


def incident_escalate_now(*, incident: Incident, actor, reason: str = "") -> EscalationResult:
    """A person asks for the next level now (e.g. a runbook step). Only a triggered incident pages:
    an acknowledged one has an owner and its policy pages no one (level 0 comes back)."""
    with transaction.atomic():
        inc = _lock(incident)
        if inc.status == Incident.Status.RESOLVED:
            raise InvalidTransition("the incident is resolved")
        if inc.status != Incident.Status.TRIGGERED:
            return EscalationResult()
        result = _page_next_level(inc, now=timezone.now(), actor=actor, manual=True, reason=reason)
        audit_record(actor=actor, verb="incident.escalate", target=inc, after={"level": result.level}, extra={"reason": reason})
    return result


def escalations_due(*, now=None) -> list[int]:
    now = now or timezone.now()
    ids = list(Incident.objects.filter(status=Incident.Status.TRIGGERED, next_escalation_at__lte=now).values_list("pk", flat=True)[:500])
    for pk in ids:
        incident_escalate(incident_id=pk, now=now)
    return ids


NotificationError = notify.NotificationError


def _message(incident: Incident) -> tuple[str, str]:
    url = settings.PORTAL_BASE_URL.rstrip("/") + incident.get_absolute_url()
    subject = f"[{incident.severity.upper()}] {incident.title}"
    body = f"{subject}\nStatus: {incident.status}\nOpened: {incident.opened_at:%Y-%m-%d %H:%M UTC}\n{url}"
    return subject, body


def _deliver(notification: Notification) -> None:
    subject, body = _message(notification.incident)
    notify.deliver(channel=notification.channel, incident=notification.incident, subject=subject, body=body)


def notification_send(*, notification_id: int, final_attempt: bool = True) -> str:
    """Send one page, holding the incident's row lock so an acknowledgement cannot slip in between
    the status check and the send. Raises NotificationError (for the task to retry) unless final."""
    incident_id = Notification.objects.filter(pk=notification_id).values_list("incident_id", flat=True).first()
    if incident_id is None:
        return "skipped"
    with transaction.atomic():
        # Incident first, then the notification: the order acknowledge and escalate use (no deadlock).
        inc = Incident.objects.select_for_update().get(pk=incident_id)
        n = Notification.objects.select_for_update(of=("self",)).select_related("channel").filter(pk=notification_id).first()
        if n is None or n.status in (Notification.Status.SENT, Notification.Status.CANCELLED, Notification.Status.FAILED):
            return "skipped"
        n.incident = inc
        if inc.status == Incident.Status.RESOLVED or (inc.status != Incident.Status.TRIGGERED and not n.manual):
            n.status = Notification.Status.CANCELLED
            n.error = f"incident {inc.status} before the page went out"
            n.save(update_fields=["status", "error"])
            return "cancelled"
        n.attempts += 1
        try:
            _deliver(n)
        except Exception as exc:  # noqa: BLE001 - any channel failure is retried, then recorded
            if not isinstance(exc, NotificationError):
                log.warning("notification %s to %s raised %s", n.pk, n.channel.name, type(exc).__name__, exc_info=True)
            n.error = notify.error_text(exc)
            if final_attempt:
                n.status = Notification.Status.FAILED
                _timeline(inc, TimelineEntry.Kind.NOTIFICATION, "system:notifications",
                          f"Failed to notify {n.channel.name} after {n.attempts} attempts: {n.error}", {"notification": n.pk, "status": "failed"})
            n.save(update_fields=["status", "error", "attempts"])
            if final_attempt:
                return "failed"
            # Commit the attempt count and error, then raise for the task to retry with backoff.
            raise_later = NotificationError(n.error)
        else:
            n.status = Notification.Status.SENT
            n.sent_at = timezone.now()
            n.error = ""
            n.save(update_fields=["status", "sent_at", "error", "attempts"])
            _timeline(inc, TimelineEntry.Kind.NOTIFICATION, "system:notifications",
                      f"Notified {n.channel.name} ({n.channel.get_kind_display()}), level {n.level}", {"notification": n.pk, "status": "sent"})
            return "sent"
    raise raise_later


def notification_test_send(notification: Notification) -> None:  # pragma: no cover - admin helper
    _deliver(notification)


__all__ = [
    "alert_ingest_internal", "incident_timeline_add", "incident_acknowledge", "incident_resolve", "incident_reopen",
    "incident_assign", "incident_note_add", "incident_postmortem_update", "incident_export_markdown",
    "delivery_store", "delivery_reject", "delivery_process", "incident_escalate", "incident_escalate_now", "escalations_due", "notification_send",
]
