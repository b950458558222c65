"""Turn each source's payload into AlertIn records; raise PayloadError (reason, detail) on bad input."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from portal.incidents.models import Severity


class PayloadError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class AlertIn:
    fingerprint: str
    name: str
    status: str  # firing | resolved
    severity: str
    summary: str = ""
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)
    generator_url: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    grouping_key: str = ""
    title: str = ""


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(value) -> datetime | None:
    """RFC 3339 from Alertmanager/CloudWatch; Go's zero time (0001-01-01) means unset."""
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    text = _FRACTION.sub(r"\1", value.strip())
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # CloudWatch writes "+0000"; fromisoformat wants "+00:00".
    text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    if timezone.is_naive(dt):
        dt = timezone.make_aware(dt, timezone.utc)
    return dt


def severity_of(labels: dict) -> str:
    value = str(labels.get("severity", "")).lower()
    return Severity.CRITICAL if value in ("critical", "page", "error") else Severity.WARNING


def _str_dict(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError("wrong_type", f"{where} must be an object")
    for k, v in value.items():
        if not isinstance(v, str):
            raise PayloadError("wrong_type", f"{where}.{k} must be a string")
    return value


def decode_json(body: bytes):
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError("malformed_json", f"the body is not valid JSON: {exc}") from exc


def parse_alertmanager(payload) -> list[AlertIn]:
    """Alertmanager webhook version 4 (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""
    if not isinstance(payload, dict):
        raise PayloadError("wrong_type", "the body must be a JSON object")
    version = payload.get("version")
    if version is not None and str(version) != "4":
        raise PayloadError("unsupported_version", f"webhook version {version!r} is not supported (expected 4)")
    alerts = payload.get("alerts")
    if alerts is None:
        raise PayloadError("missing_field", "alerts is required")
    if not isinstance(alerts, list):
        raise PayloadError("wrong_type", "alerts must be a list")
    group_key = payload.get("groupKey", "")
    if not isinstance(group_key, str):
        raise PayloadError("wrong_type", "groupKey must be a string")
    truncated = payload.get("truncatedAlerts", 0)
    if not isinstance(truncated, int):
        raise PayloadError("wrong_type", "truncatedAlerts must be an integer")
    common_annotations = _str_dict(payload.get("commonAnnotations"), "commonAnnotations")
    group_labels = _str_dict(payload.get("groupLabels"), "groupLabels")
    out = []
    for i, a in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(a, dict):
            raise PayloadError("wrong_type", f"{where} must be an object")
        status = a.get("status")
        if status not in ("firing", "resolved"):
            raise PayloadError("missing_field" if status is None else "wrong_type", f"{where}.status must be 'firing' or 'resolved'")
        if "labels" not in a:
            raise PayloadError("missing_field", f"{where}.labels is required")
        labels = _str_dict(a.get("labels"), f"{where}.labels")
        annotations = _str_dict(a.get("annotations"), f"{where}.annotations")
        for key in ("startsAt", "endsAt", "generatorURL", "fingerprint"):
            if a.get(key) is not None and not isinstance(a[key], str):
                raise PayloadError("wrong_type", f"{where}.{key} must be a string")
        fingerprint = a.get("fingerprint") or hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
        name = labels.get("alertname", "") or "alert"
        summary = annotations.get("summary") or annotations.get("description") or common_annotations.get("summary", "")
        # One title for the group: the common summary, or this alert's when Alertmanager sent it alone.
        title = group_labels.get("alertname") or name
        title_summary = common_annotations.get("summary") or (summary if len(alerts) == 1 else "")
        if title_summary:
            title = f"{title}: {title_summary}"
        out.append(
            AlertIn(
                fingerprint=fingerprint[:200], name=name[:200], status=status, severity=severity_of(labels),
                summary=summary[:500], labels=labels, annotations=annotations,
                generator_url=(a.get("generatorURL") or "")[:1000],
                starts_at=parse_time(a.get("startsAt")), ends_at=parse_time(a.get("endsAt")),
                grouping_key=f"alertmanager:{group_key}" if group_key else f"alertmanager:{name}",
                title=title[:300],
            )
        )
    return out


CLOUDWATCH_STATES = ("ALARM", "OK", "INSUFFICIENT_DATA")


def parse_cloudwatch_message(message: str) -> dict:
    """The CloudWatch alarm notification inside an SNS Notification's Message string."""
    try:
        alarm = json.loads(message)
    except (TypeError, json.JSONDecodeError) as exc:
        raise PayloadError("not_cloudwatch", "the SNS Message is not a CloudWatch alarm (not JSON)") from exc
    if not isinstance(alarm, dict) or not isinstance(alarm.get("AlarmName"), str):
        raise PayloadError("not_cloudwatch", "the SNS Message has no AlarmName")
    if alarm.get("NewStateValue") not in CLOUDWATCH_STATES:
        raise PayloadError("not_cloudwatch", f"NewStateValue must be one of {', '.join(CLOUDWATCH_STATES)}")
    return alarm


def cloudwatch_alert(alarm: dict) -> AlertIn | None:
    """ALARM -> firing, OK -> resolved; INSUFFICIENT_DATA changes nothing (None)."""
    state = alarm["NewStateValue"]
    if state == "INSUFFICIENT_DATA":
        return None
    name = alarm["AlarmName"][:200]
    description = alarm.get("AlarmDescription") or ""
    text = f"{name} {description}".lower()
    severity = Severity.CRITICAL if "critical" in text else Severity.WARNING
    changed = parse_time(alarm.get("StateChangeTime")) or timezone.now()
    trigger = alarm.get("Trigger") or {}
    labels = {"alertname": name, "severity": str(severity), "region": str(alarm.get("Region", ""))}
    if isinstance(trigger, dict):
        labels["metric"] = str(trigger.get("MetricName", ""))
        labels["namespace"] = str(trigger.get("Namespace", ""))
    summary = (description or alarm.get("NewStateReason") or "")[:500]
    region_code = _region_code(alarm)
    url = f"https://console.aws.amazon.com/cloudwatch/home?region={region_code}#alarmsV2:alarm/{name}" if region_code else ""
    return AlertIn(
        fingerprint=(alarm.get("AlarmArn") or f"cloudwatch:{name}")[:200], name=name,
        status="firing" if state == "ALARM" else "resolved", severity=severity, summary=summary,
        labels=labels, annotations={"reason": str(alarm.get("NewStateReason", ""))[:1000]},
        generator_url=url, starts_at=changed if state == "ALARM" else None, ends_at=changed if state == "OK" else None,
        grouping_key=f"cloudwatch:{name}", title=f"{name}: {summary}"[:300] if summary else name,
    )


def _region_code(alarm: dict) -> str:
    arn = alarm.get("AlarmArn") or ""
    parts = arn.split(":")
    return parts[3] if len(parts) > 4 else ""
