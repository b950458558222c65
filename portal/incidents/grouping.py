"""Grouping rules: edit them (leads, audited) and preview one by replaying the stored alerts of the
last days through it in memory ("this rule would have made 12 incidents instead of 140")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from portal.audit.services import audit_record
from portal.errors import Invalid
from portal.incidents.ingest import REOPEN_WINDOW, Resources, correlation_labels, rule_key
from portal.incidents.models import AlertEvent, GroupingRule

PREVIEW_DAYS = 7


class GroupingInvalid(Invalid):
    pass


@dataclass
class Preview:
    incidents: int
    alerts: int
    reports: int
    days: int = PREVIEW_DAYS

    def sentence(self, before: Preview) -> str:
        return (f"Over the last {self.days} days this rule would have made {self.incidents} incidents instead of "
                f"{before.incidents} (from {self.alerts} alerts, {self.reports} firing reports).")


def _fallback_key(alert) -> str:
    key = alert.incident.grouping_key if alert.incident_id and alert.incident else ""
    return key if key and not key.startswith("group:") else f"{alert.source}:{alert.name}"


def grouping_preview(*, rules: list[GroupingRule], since: datetime | None = None) -> Preview:
    """How many incidents the stored firing and resolved reports since `since` (default: seven days
    ago) would have opened with exactly these rules (in their priority order), a resolved key
    reopening within its rule's window as ingest does. Nothing is written."""
    since = since or timezone.now() - timedelta(days=PREVIEW_DAYS)
    rules = sorted((r for r in rules if r.enabled), key=lambda r: (r.priority, r.slug))
    resources = Resources()
    keys: dict[int, tuple[str, timedelta]] = {}
    firing: dict[str, set[int]] = {}
    resolved_at: dict[str, datetime] = {}
    incidents = reports = 0
    alerts = set()
    events = (AlertEvent.objects.filter(at__gte=since, effect__in=("fired", "repeat", "resolved"))
              .select_related("alert", "alert__incident").order_by("at", "id"))
    for event in events.iterator(chunk_size=2000):
        alert = event.alert
        if event.effect == "resolved":
            key = keys.get(alert.pk, (None, REOPEN_WINDOW))[0]
            if key is not None and alert.pk in firing.get(key, set()):
                firing[key].discard(alert.pk)
                if not firing[key]:
                    resolved_at[key] = event.at
            continue
        reports += 1
        alerts.add(alert.pk)
        labels = correlation_labels(alert.labels or {}, alert.name, resources)
        if alert.environment_id and not labels.get("environment") and alert.environment:
            labels["environment"] = alert.environment.name
        key, window = _fallback_key(alert), REOPEN_WINDOW
        for rule in rules:
            found = rule_key(rule, labels)
            if found is not None:
                key, window = found, timedelta(minutes=rule.window_minutes)
                break
        keys[alert.pk] = (key, window)
        if not firing.get(key):
            last = resolved_at.get(key)
            if last is None or event.at - last > window:
                incidents += 1
        firing.setdefault(key, set()).add(alert.pk)
    return Preview(incidents=incidents, alerts=len(alerts), reports=reports)


def _clean(labels) -> list[str]:
    if isinstance(labels, str):
        labels = [p.strip() for p in labels.replace(",", " ").split()]
    if not isinstance(labels, list) or not all(isinstance(x, str) and x for x in labels):
        raise GroupingInvalid("labels are label names, e.g. environment, metric, colour")
    return [x[:100] for x in labels]


def grouping_rule_build(*, rule: GroupingRule | None = None, name: str, labels, optional_labels, window_minutes, priority,
                        enabled: bool = True) -> GroupingRule:
    """The rule as edited, in memory (the preview runs it before anything is saved)."""
    name = (name or "").strip()
    if not name:
        raise GroupingInvalid("a name is required")
    labels, optional = _clean(labels), _clean(optional_labels or [])
    if not labels:
        raise GroupingInvalid("a rule groups by at least one label")
    if set(optional) - set(labels):
        raise GroupingInvalid("optional labels must be among the rule's labels")
    try:
        window, priority = int(window_minutes), int(priority)
    except (TypeError, ValueError) as exc:
        raise GroupingInvalid("the window and the priority are whole numbers") from exc
    if not 1 <= window <= 24 * 60:
        raise GroupingInvalid("the window is between 1 minute and a day")
    rule = rule or GroupingRule(slug=slugify(name)[:80] or "rule")
    rule.name, rule.labels, rule.optional_labels = name[:200], labels, optional
    rule.window_minutes, rule.priority, rule.enabled = window, max(0, priority), bool(enabled)
    return rule


def grouping_rule_save(*, rule: GroupingRule, actor) -> GroupingRule:
    """Save an edited or new rule, audited."""
    with transaction.atomic():
        before = None
        if rule.pk:
            old = GroupingRule.objects.select_for_update().get(pk=rule.pk)
            before = {"name": old.name, "labels": old.labels, "optional_labels": old.optional_labels,
                      "window_minutes": old.window_minutes, "priority": old.priority, "enabled": old.enabled}
        elif GroupingRule.objects.filter(slug=rule.slug).exists():
            raise GroupingInvalid(f"a rule named {rule.slug} exists already")
        rule.save()
        audit_record(actor=actor, verb="grouping_rule.save", target=("grouping_rule", rule.slug), before=before,
                     after={"name": rule.name, "labels": rule.labels, "optional_labels": rule.optional_labels,
                            "window_minutes": rule.window_minutes, "priority": rule.priority, "enabled": rule.enabled})
    return rule
