"""Writes of the health app: results and flap damping, the alert a failing check raises, and the
operator's edits (run now, enable, threshold rules, an environment's checks and outbound policy).

The poller that claims and runs checks is portal.health.dispatch; rollups, retention and the
watchdog are portal.health.maintenance. A failing check raises its alert through the incidents
app's intake (portal.incidents.ingest), which knows nothing of health.
"""

from __future__ import annotations

import logging
import math
import uuid
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from portal.audit.services import audit_record
from portal.errors import Invalid, NotFound
from portal.health import thresholds
from portal.health.models import (
    Check,
    CheckResult,
    Heartbeat,
    OutboundPolicy,
    ThresholdRule,
)
from portal.health.runners import Outcome
from portal.incidents import ingest
from portal.outbound import redact_url

log = logging.getLogger(__name__)

# A claim outlives the check's own timeout by this much before the poller declares it lost.
CLAIM_GRACE_SECONDS = 15
POLL_EVERY_SECONDS = 5
ALERT_SOURCE = "health"


def check_record_result(*, check_id: int, outcome: Outcome, started_at: datetime, token: uuid.UUID | None = None,
                        scheduled_for: datetime | None = None, now: datetime | None = None) -> CheckResult | None:
    """Store a result and apply flap damping. With a token, only the run holding the claim may store
    (a late answer after the claim was reaped is dropped). Returns None when dropped."""
    now = now or timezone.now()
    with transaction.atomic():
        check = Check.objects.select_for_update().get(pk=check_id)
        if token is not None and check.claim_token != token:
            return None
        result = CheckResult.objects.create(
            check_obj=check, ok=outcome.ok, reason=outcome.reason[:500], latency_ms=outcome.latency_ms,
            value=outcome.value, detail=outcome.detail or {}, scheduled_for=scheduled_for, started_at=started_at,
            created_at=now,
        )
        fields = ["last_result_at", "last_ok", "last_reason", "last_latency_ms", "last_value",
                  "consecutive_failures", "consecutive_successes", "claim_token", "claimed_until", "claimed_for",
                  "updated_at"]
        check.last_result_at = now
        check.last_ok = outcome.ok
        check.last_reason = outcome.reason[:500]
        check.last_latency_ms = outcome.latency_ms
        check.last_value = outcome.value
        if token is not None:
            check.claim_token = None
            check.claimed_until = None
            check.claimed_for = None
        new_status = check.status
        if outcome.ok:
            check.consecutive_successes += 1
            check.consecutive_failures = 0
            if check.status == Check.Status.UNKNOWN or (
                check.status == Check.Status.FAILING and check.consecutive_successes >= check.recover_threshold
            ):
                new_status = Check.Status.OK
        else:
            check.consecutive_failures += 1
            check.consecutive_successes = 0
            if check.status != Check.Status.FAILING and check.consecutive_failures >= check.fail_threshold:
                new_status = Check.Status.FAILING
        if new_status != check.status:
            check.status = new_status
            check.status_changed_at = now
            fields += ["status", "status_changed_at"]
        check.save(update_fields=fields)
    if (check.status == Check.Status.FAILING) != check.alert_raised:
        check_alert_sync(check=check)
    return result


def _alert_severity(check: Check) -> str:
    return check.rule.severity if check.rule_id and check.rule else check.severity


def _alarm_metric_label(check: Check) -> dict:
    """The alarms check's `metric` label when every alarm in ALARM reads one metric the portal knows, so
    the alarm joins the incident of the check (or Prometheus alert) about the same breach."""
    last = CheckResult.objects.filter(check_obj=check).order_by("-created_at").values_list("detail", flat=True).first()
    metrics = {ingest.AWS_METRICS.get(m) for m in (last or {}).get("firing_metrics") or []}
    if len(metrics) == 1 and None not in metrics:
        return {"metric": metrics.pop()}
    return {}


def check_alert_sync(*, check: Check) -> bool:
    """Make the internal alert match the check: firing while failing (and enabled), resolved otherwise.

    Called after a transition and by every poll for rows that disagree, so a failed ingest is retried.
    """
    want = check.enabled and check.status == Check.Status.FAILING
    if want == check.alert_raised:
        return False
    labels = {"check": check.slug, "kind": check.kind, "group": check.group}
    if check.rule is not None:
        labels["metric"] = check.rule.metric
    elif want and check.kind == Check.Kind.ALARM:
        labels.update(_alarm_metric_label(check))
    try:
        ingest.alert_ingest_internal(
            source=ALERT_SOURCE, fingerprint=f"check:{check.slug}", name=f"Health check failing: {check.name}",
            severity=_alert_severity(check), firing=want,
            summary=check.last_reason or ("failing" if want else "recovered"),
            labels=labels, annotations={"url": check.get_absolute_url(), "reason": check.last_reason},
            environment=check.environment, grouping_key=f"check:{check.slug}",
        )
    except Exception:
        log.exception("could not %s the alert of health check %s", "raise" if want else "resolve", check.slug)
        return False
    Check.objects.filter(pk=check.pk).update(alert_raised=want)
    check.alert_raised = want
    return True


def alerts_reconcile() -> int:
    stale = Check.objects.select_related("environment", "rule").filter(
        Q(status=Check.Status.FAILING, enabled=True, alert_raised=False)
        | (Q(alert_raised=True) & (~Q(status=Check.Status.FAILING) | Q(enabled=False)))
    )
    return sum(1 for c in stale if check_alert_sync(check=c))


def outbound_policy_set(*, environment, allow_private_targets: bool, actor) -> OutboundPolicy:
    """Set whether `environment`'s outbound requests may reach loopback/private addresses (audited)."""
    with transaction.atomic():
        policy = OutboundPolicy.objects.select_for_update().filter(environment=environment).first()
        before = None if policy is None else {"allow_private_targets": policy.allow_private_targets}
        if policy is None:
            policy = OutboundPolicy(environment=environment)
        policy.allow_private_targets = bool(allow_private_targets)
        policy.save()
        after = {"allow_private_targets": policy.allow_private_targets}
        if before != after:
            audit_record(actor=actor, verb="environment.outbound_policy", target=environment, before=before, after=after)
    environment.outbound_policy = policy
    return policy


def heartbeat(name: str, *, now: datetime | None = None, **detail) -> None:
    now = now or timezone.now()
    Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": now, "detail": detail})



def check_run_now(*, check: Check, actor) -> Check:
    """Make a check due now (the next beat runs it). Twice is the same as once."""
    with transaction.atomic():
        before = check.next_due_at
        Check.objects.filter(pk=check.pk).update(next_due_at=timezone.now())
        check.refresh_from_db()
        audit_record(actor=actor, verb="health.check.run_now", target=check,
                     before={"next_due_at": before}, after={"next_due_at": check.next_due_at})
    return check


def check_url_point(*, check: Check, url: str, environment, actor) -> Check:
    """Read an external check from `url` (a mirror of its public page) instead of its public URL, which
    is kept as `public_url`. `environment` owns that URL, so its outbound policy decides what the check
    may reach (the dispatcher attaches it). Pointing twice at the same URL changes nothing."""
    cfg = dict(check.config or {})
    if cfg.get("url") == url and cfg.get("url_environment_id") == environment.pk:
        return check
    before = {"url": redact_url(cfg.get("url", ""))}
    cfg.update(public_url=cfg.get("public_url") or cfg.get("url", ""), url=url, url_environment_id=environment.pk)
    with transaction.atomic():
        check.config = cfg
        check.save(update_fields=["config", "updated_at"])
        audit_record(actor=actor, verb="health.check.point_url", target=check, before=before,
                     after={"url": redact_url(url), "url_environment": environment.name})
    return check


def check_set_enabled(*, check: Check, enabled: bool, actor) -> Check:
    with transaction.atomic():
        check = Check.objects.select_for_update().get(pk=check.pk)
        if check.enabled == enabled:
            audit_record(actor=actor, verb="health.check.enable" if enabled else "health.check.disable",
                         target=check, result="noop")
            return check
        check.enabled = enabled
        fields = ["enabled", "updated_at"]
        if enabled:
            check.next_due_at = timezone.now()
            fields.append("next_due_at")
        check.save(update_fields=fields)
        audit_record(actor=actor, verb="health.check.enable" if enabled else "health.check.disable", target=check,
                     before={"enabled": not enabled}, after={"enabled": enabled})
    check_alert_sync(check=check)
    return check


class RuleInvalid(Invalid):
    """A threshold edit that cannot be stored (422 invalid)."""


def threshold_rule_update(*, rule: ThresholdRule, actor, value: float, window_minutes: int | None = None,
                          severity: str | None = None, comparison: str | None = None, enabled: bool | None = None,
                          min_requests: int | None = None) -> ThresholdRule:
    """Change a threshold rule (audited); every reader of portal.health.thresholds follows."""
    if window_minutes is not None and (window_minutes < 1 or window_minutes > 24 * 60):
        raise RuleInvalid("the window must be between 1 and 1440 minutes")
    if severity is not None and severity not in ("critical", "warning"):
        raise RuleInvalid("severity must be critical or warning")
    if comparison is not None and comparison not in ("gt", "gte", "lt", "lte"):
        raise RuleInvalid("comparison must be gt, gte, lt or lte")
    if min_requests is not None and min_requests < 0:
        raise RuleInvalid("the minimum request count cannot be negative")
    if not math.isfinite(float(value)):
        raise RuleInvalid("the value must be a finite number")
    with transaction.atomic():
        rule = ThresholdRule.objects.select_for_update().get(pk=rule.pk)
        fields = ("value", "window_minutes", "severity", "comparison", "enabled", "min_requests")
        before = {k: getattr(rule, k) for k in fields}
        if severity is not None and severity != rule.severity and \
                ThresholdRule.objects.filter(metric=rule.metric, severity=severity).exclude(pk=rule.pk).exists():
            raise RuleInvalid(f"{rule.metric} already has a {severity} threshold: edit that one")
        rule.value = float(value)
        if window_minutes is not None:
            rule.window_minutes = int(window_minutes)
        if severity is not None:
            rule.severity = severity
        if comparison is not None:
            rule.comparison = comparison
        if min_requests is not None:
            rule.min_requests = int(min_requests)
        if enabled is not None:
            rule.enabled = enabled
            Check.objects.filter(rule=rule).update(enabled=enabled)
        rule.save()
        after = {k: getattr(rule, k) for k in fields}
        audit_record(actor=actor, verb="health.threshold.update", target=("health.thresholdrule", rule.slug),
                     before=before, after=after, result="ok" if before != after else "noop",
                     extra={"metric": rule.metric, "severity": rule.severity})
        if before != after:
            thresholds.changed(metric=rule.metric, severity=rule.severity)
    return rule


def threshold_set(*, metric: str, severity: str, value: float, actor, min_requests: int | None = None) -> ThresholdRule:
    """Set the value (and optionally the minimum evidence) of `metric` at `severity` (the API's PUT)."""
    rule = ThresholdRule.objects.filter(metric=metric, severity=severity).first()
    if rule is None:
        raise NotFound(f"no {severity} threshold for {metric!r}")
    return threshold_rule_update(rule=rule, actor=actor, value=value, min_requests=min_requests)


AWS_CHECKS: list[tuple[str, str, str, dict[str, Any], str]] = [
    # (suffix, name, kind, config, severity)
    ("asg-blue", "Auto scaling group blue", Check.Kind.ASG, {"colour": "blue"}, "critical"),
    ("asg-green", "Auto scaling group green", Check.Kind.ASG, {"colour": "green"}, "critical"),
    ("targets-blue", "Target group health blue", Check.Kind.TARGET_HEALTH, {"colour": "blue"}, "critical"),
    ("targets-green", "Target group health green", Check.Kind.TARGET_HEALTH, {"colour": "green"}, "critical"),
    ("rds", "RDS PostgreSQL", Check.Kind.RDS, {"require_multi_az": True, "max_connections_pct": 95}, "critical"),
    ("cache", "ElastiCache Redis", Check.Kind.ELASTICACHE, {}, "warning"),
    ("alarms", "CloudWatch alarms", Check.Kind.ALARM, {}, "warning"),
    ("s3", "S3 buckets", Check.Kind.S3, {}, "warning"),
]
AWS_INTERVAL_SECONDS = 30
METRIC_INTERVAL_SECONDS = 30


def health_checks_ensure_for_environment(*, environment, actor) -> list[Check]:
    """Create the AWS resource and metric-threshold checks of an environment (idempotent; edits are kept)."""
    created = []
    checks = []
    with transaction.atomic():
        specs: list[tuple[str, str, str, str, dict[str, Any], str, ThresholdRule | None, int]] = []
        for suffix, name, kind, config, severity in AWS_CHECKS:
            specs.append((f"{environment.name}-{suffix}", f"{name} ({environment.name})", kind, Check.Group.AWS,
                          config, severity, None, AWS_INTERVAL_SECONDS))
        for threshold in ThresholdRule.objects.all():
            specs.append((f"{environment.name}-{threshold.slug}", f"{threshold} ({environment.name})",
                          Check.Kind.METRIC_THRESHOLD, Check.Group.METRICS, {}, threshold.severity, threshold,
                          METRIC_INTERVAL_SECONDS))
        for slug, name, kind, group, config, severity, rule, interval in specs:
            check, was_created = Check.objects.get_or_create(
                slug=slug,
                defaults={"name": name, "kind": kind, "group": group, "environment": environment, "config": config,
                          "severity": severity, "rule": rule, "interval_seconds": interval, "timeout_seconds": 10,
                          "fail_threshold": 2, "recover_threshold": 2,
                          "enabled": rule.enabled if rule else True},
            )
            checks.append(check)
            if was_created:
                created.append(slug)
        audit_record(actor=actor, verb="health.checks.ensure", target=("cloud.environment", environment.name),
                     after={"created": created}, result="ok" if created else "noop")
    return checks
