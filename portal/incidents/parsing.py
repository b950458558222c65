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


# Alertmanager's body is 4 levels deep (body > alerts > alert > labels), a CloudWatch alarm about 5.
MAX_DEPTH = 16


def json_depth(value) -> int:
    """Nesting depth of decoded JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            depth += 1
            deepest = max(deepest, depth)
            stack.extend((child, depth) for child in item if isinstance(child, (dict, list)))
    return deepest


def decode_json(body: bytes | str, *, what: str = "the body"):
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError("malformed_json", f"{what} is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise PayloadError("too_deep", f"{what} is nested deeper than {MAX_DEPTH} levels") from exc
    if json_depth(value) > MAX_DEPTH:
        raise PayloadError("too_deep", f"{what} is nested deeper than {MAX_DEPTH} levels")
    return value


_LINE_BREAKS = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Annotations are prose: newlines and tabs are fine there, other control characters are not.
_CONTROL_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def one_line(text: str) -> str:
    """Titles and summaries are one line: every run of whitespace (newlines included) is one space."""
    return _LINE_BREAKS.sub(" ", _CONTROL.sub(" ", text)).strip()


def _encodable(text: str) -> str:
    """The text with lone surrogates (valid JSON escapes, invalid UTF-8) replaced."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode()
    return text


def _screen(labels: dict, annotations: dict, where: str) -> None:
    """A NUL, newline or other control character in a label (name or value) or a control character
    other than a line break in an annotation refuses the alert (it could forge lines in a page or a
    log, and PostgreSQL cannot store a NUL)."""
    for name, value in [*labels.items(), *annotations.items()]:
        if _encodable(name) != name or _encodable(value) != value:
            raise PayloadError("bad_characters", f"{where} holds text that is not valid UTF-8 (a lone surrogate)")
    for name, value in labels.items():
        if _CONTROL.search(name) or _CONTROL.search(value):
            raise PayloadError("bad_label", f"{where}.labels.{one_line(name)[:100]} holds a NUL, newline or control character")
    for name, value in annotations.items():
        if _CONTROL.search(name) or _CONTROL_IN_TEXT.search(value):
            raise PayloadError("bad_annotation", f"{where}.annotations.{one_line(name)[:100]} holds a NUL or control character")


def _scrub(value):
    """Body-level fields (commonLabels, externalURL...) are kept with NULs replaced, so the stored
    body never fails to save; the alerts themselves are screened one by one."""
    if isinstance(value, str):
        return _encodable(value).replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


@dataclass
class Rejected:
    index: int
    reason: str
    detail: str
    alert: object = None  # as received, for the rejection record


@dataclass
class Screened:
    """An Alertmanager body split: the alerts taken, the ones refused, and the body to store (without
    the refused alerts)."""

    alerts: list[AlertIn]
    rejected: list[Rejected]
    payload: dict


def parse_alertmanager(payload) -> list[AlertIn]:
    """The alerts of an Alertmanager body that pass screening (see screen_alertmanager)."""
    return screen_alertmanager(payload).alerts


def screen_alertmanager(payload) -> Screened:
    """Alertmanager webhook version 4 (https://prometheus.io/docs/alerting/latest/configuration/#webhook_config).

    A body-level problem raises PayloadError; a problem in one alert refuses that alert only, so one
    poisoned alert never costs the batch its other alerts."""
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
    common_annotations = _str_dict(_scrub(payload.get("commonAnnotations")), "commonAnnotations")
    group_labels = _str_dict(_scrub(payload.get("groupLabels")), "groupLabels")
    checked: list[tuple[dict, dict, dict]] = []
    rejected: list[Rejected] = []
    for i, a in enumerate(alerts):
        try:
            checked.append((a, *_check_alert(a, f"alerts[{i}]")))
        except PayloadError as exc:
            rejected.append(Rejected(i, exc.reason, exc.detail, a))
    out = []
    for a, labels, notes in checked:
        status = a["status"]
        fingerprint = a.get("fingerprint") or hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
        name = one_line(labels.get("alertname", "")) or "alert"
        summary = one_line(notes.get("summary") or notes.get("description") or common_annotations.get("summary", ""))
        # One title for the group: the common summary, or this alert's when Alertmanager sent it alone.
        title = one_line(group_labels.get("alertname", "")) or name
        title_summary = one_line(common_annotations.get("summary", "")) or (summary if len(checked) == 1 else "")
        if title_summary:
            title = f"{title}: {title_summary}"
        out.append(
            AlertIn(
                fingerprint=fingerprint[:200], name=name[:200], status=status, severity=severity_of(labels),
                summary=summary[:500], labels=labels, annotations=notes,
                generator_url=(a.get("generatorURL") or "")[:1000],
                starts_at=parse_time(a.get("startsAt")), ends_at=parse_time(a.get("endsAt")),
                grouping_key=f"alertmanager:{group_key}" if group_key else f"alertmanager:{name}",
                title=title[:300],
            )
        )
    refused = {r.index for r in rejected}
    body = _scrub({k: v for k, v in payload.items() if k != "alerts"})
    body["alerts"] = _scrub([a for i, a in enumerate(alerts) if i not in refused])
    return Screened(alerts=out, rejected=rejected, payload=body)


def _check_alert(a, where: str) -> tuple[dict, dict]:
    """(labels, annotations) of one alert of the batch, or PayloadError for this alert."""
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
        if isinstance(a.get(key), str) and _CONTROL.search(a[key]):
            raise PayloadError("bad_characters", f"{where}.{key} holds a NUL, newline or control character")
    _screen(labels, annotations, where)
    return labels, annotations


CLOUDWATCH_STATES = ("ALARM", "OK", "INSUFFICIENT_DATA")


def parse_cloudwatch_message(message: str) -> dict:
    """The CloudWatch alarm notification inside an SNS Notification's Message string."""
    if not isinstance(message, str):
        raise PayloadError("not_cloudwatch", "the SNS Message is not a CloudWatch alarm (not a string)")
    try:
        alarm = decode_json(message, what="the SNS Message")
    except PayloadError as exc:
        if exc.reason == "too_deep":
            raise
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
    name = one_line(alarm["AlarmName"])[:200]
    description = one_line(str(alarm.get("AlarmDescription") or ""))
    text = f"{name} {description}".lower()
    severity = Severity.CRITICAL if "critical" in text else Severity.WARNING
    changed = parse_time(alarm.get("StateChangeTime")) or timezone.now()
    trigger = alarm.get("Trigger") or {}
    labels = {"alertname": name, "severity": str(severity), "region": str(alarm.get("Region", ""))}
    if isinstance(trigger, dict):
        metric, namespace, dimensions = cloudwatch_trigger_metric(trigger)
        labels["metric"] = metric
        labels["namespace"] = namespace
        # The dimensions name the resource (load balancer, target group, instance): ingest maps them
        # to the environment and colour, so this alarm correlates with the portal's own alerts.
        labels.update({f"dimension_{k}": v for k, v in dimensions.items()})
    summary = (description or one_line(str(alarm.get("NewStateReason") or "")))[:500]
    region_code = _region_code(alarm)
    url = f"https://console.aws.amazon.com/cloudwatch/home?region={region_code}#alarmsV2:alarm/{name}" if region_code else ""
    return AlertIn(
        fingerprint=(alarm.get("AlarmArn") or f"cloudwatch:{name}")[:200], name=name,
        status="firing" if state == "ALARM" else "resolved", severity=severity, summary=summary,
        labels=labels, annotations={"reason": str(alarm.get("NewStateReason", ""))[:1000]},
        generator_url=url, starts_at=changed if state == "ALARM" else None, ends_at=changed if state == "OK" else None,
        grouping_key=f"cloudwatch:{name}", title=f"{name}: {summary}"[:300] if summary else name,
    )


def _dimensions(items) -> dict[str, str]:
    """CloudWatch writes {"name", "value"} in SNS notifications and {"Name", "Value"} in its API."""
    out = {}
    for d in items if isinstance(items, list) else []:
        if isinstance(d, dict):
            name, value = d.get("name", d.get("Name")), d.get("value", d.get("Value"))
            if isinstance(name, str) and isinstance(value, str) and not _CONTROL.search(name + value):
                out[name[:100]] = value[:300]
    return out


def _object(value) -> dict:
    return value if isinstance(value, dict) else {}


def cloudwatch_trigger_metric(trigger: dict) -> tuple[str, str, dict[str, str]]:
    """(metric name, namespace, dimensions) of an alarm's Trigger. A metric-math alarm has no
    MetricName: its metric is the returned expression's id (e.g. error_rate), its dimensions those
    of the metrics it reads."""
    if trigger.get("MetricName"):
        return str(trigger["MetricName"])[:100], str(trigger.get("Namespace", ""))[:100], _dimensions(trigger.get("Dimensions"))
    metric, namespace, dimensions = "", "", {}
    items = trigger.get("Metrics")
    for m in items if isinstance(items, list) else []:
        if not isinstance(m, dict):
            continue
        stat = _object(m.get("MetricStat"))
        inner = _object(stat.get("Metric"))
        dimensions.update(_dimensions(inner.get("Dimensions")))
        namespace = namespace or str(inner.get("Namespace", ""))[:100]
        if m.get("ReturnData", True) and isinstance(m.get("Id"), str):
            metric = metric or str(inner.get("MetricName") or m["Id"])[:100]
    return str(metric), namespace, dimensions


def _region_code(alarm: dict) -> str:
    arn = alarm.get("AlarmArn") or ""
    parts = arn.split(":")
    return parts[3] if len(parts) > 4 else ""
