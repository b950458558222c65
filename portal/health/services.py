"""Writes of the health app: claiming and running checks, storing results, flap damping, alerts,
rollups and retention, the watchdog, and the operator's edits (run now, enable, threshold rules)."""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import close_old_connections, transaction
from django.db.models import Avg, Count, F, Max, Min, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from portal.audit.services import audit_record
from portal.env import env_int
from portal.health.models import (
    Check,
    CheckResult,
    CheckRollup,
    Heartbeat,
    OutboundPolicy,
    SloSample,
    ThresholdRule,
)
from portal.health.runners import Outcome, run_check

log = logging.getLogger(__name__)

# A claim outlives the check's own timeout by this much before the poller declares it lost.
CLAIM_GRACE_SECONDS = 15
POLL_EVERY_SECONDS = 5
RAW_RETENTION_DAYS = 7
ROLLUP_RETENTION_DAYS = 400
SLO_SAMPLE_RETENTION_DAYS = 35
ALERT_SOURCE = "health"
SYSTEM_ACTOR = "system:health"

# Slots up to a bit past the next beat are claimed ahead and started on time by the dispatcher.
LOOKAHEAD_SECONDS = float(env_int("HEALTH_POLL_LOOKAHEAD_SECONDS", POLL_EVERY_SECONDS + 2, minimum=0))

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_dispatch: _Dispatcher | None = None


class _Dispatcher:
    """One thread a process that hands work to the pool at its scheduled time (a heap and a condition)."""

    def __init__(self, pool: ThreadPoolExecutor):
        self.pool = pool
        self.heap: list = []
        self.cond = threading.Condition()
        self.seq = 0
        threading.Thread(target=self._loop, name="health-dispatch", daemon=True).start()

    def at(self, when: datetime, fn, *args) -> None:
        delay = (when - timezone.now()).total_seconds()
        if delay <= 0:
            self.pool.submit(fn, *args)
            return
        with self.cond:
            self.seq += 1
            heapq.heappush(self.heap, (time.monotonic() + delay, self.seq, fn, args))
            self.cond.notify()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.heap or self.heap[0][0] > time.monotonic():
                    self.cond.wait(None if not self.heap else self.heap[0][0] - time.monotonic())
                _, _, fn, args = heapq.heappop(self.heap)
            try:
                self.pool.submit(fn, *args)
            except RuntimeError:  # the process is shutting down; its claims expire and are reaped
                return


def _dispatcher() -> _Dispatcher:
    global _dispatch
    pool = _executor()
    with _pool_lock:
        if _dispatch is None:
            _dispatch = _Dispatcher(pool)
        return _dispatch


def _executor() -> ThreadPoolExecutor:
    """One pool a worker process, so a hanging check holds one thread and never the poller."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=env_int("HEALTH_POLL_THREADS", 48, minimum=1),
                                       thread_name_prefix="health-check")
        return _pool


# ---------------------------------------------------------------------------------------------
# Claiming


@dataclass(frozen=True)
class Claim:
    check_id: int
    token: uuid.UUID
    scheduled_for: datetime


def checks_claim_due(*, now: datetime | None = None, lookahead_seconds: float = 0.0, limit: int = 1000) -> list[Claim]:
    """Claim every enabled check due by now + lookahead and not running, one conditional UPDATE each.

    The UPDATE matches the row only while next_due_at is still the value we read and no live claim
    exists, so of two pollers racing for a check exactly one gets row count 1. With a lookahead the
    poller claims the slots up to its next beat and starts each at its own time (no drift by beat).
    """
    now = now or timezone.now()
    horizon = now + timedelta(seconds=lookahead_seconds)
    candidates = list(
        Check.objects.filter(enabled=True)
        .filter(Q(next_due_at__isnull=True) | Q(next_due_at__lte=horizon))
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by(F("next_due_at").asc(nulls_first=True))
        .values_list("pk", "next_due_at", "interval_seconds", "timeout_seconds")[:limit]
    )
    claims = []
    for pk, due, interval, timeout in candidates:
        scheduled = due or now
        nxt = scheduled + timedelta(seconds=interval)
        if nxt <= now:
            # Behind by more than an interval (stalled poller, new check): skip the missed slots.
            nxt = now + timedelta(seconds=interval)
        token = uuid.uuid4()
        match = Check.objects.filter(pk=pk, enabled=True).filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        match = match.filter(next_due_at__isnull=True) if due is None else match.filter(next_due_at=due)
        won = match.update(
            next_due_at=nxt, claim_token=token, claimed_for=scheduled,
            claimed_until=max(now, scheduled) + timedelta(seconds=float(timeout) + CLAIM_GRACE_SECONDS),
        )
        if won == 1:
            claims.append(Claim(pk, token, scheduled))
    return claims


# ---------------------------------------------------------------------------------------------
# Results, flap damping, alerts


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


def check_alert_sync(*, check: Check) -> bool:
    """Make the internal alert match the check: firing while failing (and enabled), resolved otherwise.

    Called after a transition and by every poll for rows that disagree, so a failed ingest is retried.
    """
    want = check.enabled and check.status == Check.Status.FAILING
    if want == check.alert_raised:
        return False
    try:
        from portal.incidents.services import alert_ingest_internal
    except ImportError:  # the incidents app is not installed here
        return False
    labels = {"check": check.slug, "kind": check.kind, "group": check.group}
    if check.rule_id:
        labels["metric"] = check.rule.metric
    try:
        alert_ingest_internal(
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


# ---------------------------------------------------------------------------------------------
# Running


def _run(claim: Claim, check: Check) -> tuple[Claim, datetime, Outcome]:
    started = timezone.now()
    return claim, started, run_check(check)


def _store(claim: Claim, started: datetime, outcome: Outcome) -> CheckResult | None:
    try:
        return check_record_result(check_id=claim.check_id, outcome=outcome, started_at=started, token=claim.token,
                                   scheduled_for=claim.scheduled_for)
    except Exception:
        log.exception("the result of health check %s could not be stored", claim.check_id)
        return None


def check_execute(claim: Claim, check: Check) -> CheckResult | None:
    """Run one claimed check and store its result from a pool thread. Never raises."""
    close_old_connections()
    try:
        return _store(*_run(claim, check))
    finally:
        close_old_connections()


def claims_reap(*, now: datetime | None = None) -> int:
    """Claims past their deadline without a result: record a timeout in their name and free them."""
    now = now or timezone.now()
    lost = list(Check.objects.filter(claim_token__isnull=False, claimed_until__lt=now)
                .values_list("pk", "claim_token", "claimed_for", "timeout_seconds"))
    n = 0
    for pk, token, scheduled, timeout in lost:
        out = Outcome(False, f"timed out: no answer within {float(timeout):g} s (the run did not return)")
        if check_record_result(check_id=pk, outcome=out, started_at=scheduled or now, token=token,
                               scheduled_for=scheduled, now=now):
            n += 1
    return n


def _sandbox_environment():
    """The sandbox Environment when the portal runs on the embedded sandbox, else None."""
    from django.conf import settings

    if getattr(settings, "PRODUCTION", False) or settings.DEFAULT_ENVIRONMENT != "sandbox":
        return None
    from portal.cloud.models import Environment

    return Environment.objects.filter(name="sandbox").first()


def _point_services_at_sandbox(checks: list[Check]) -> None:
    """In the embedded sandbox the seed's services are read from its fake status server (in memory
    only: the stored config keeps the public URL). Without that server they try the public URL and
    report it unreachable in words."""
    services_ = [c for c in checks if c.group == Check.Group.EXTERNAL and (c.config or {}).get("service")]
    if not services_:
        return
    env = _sandbox_environment()
    if env is None:
        return
    try:
        from portal.cloud.statuspages import status_page_url
    except ImportError:
        return
    for c in services_:
        url = status_page_url(env, c.config["service"])
        if url:
            c.config = {**c.config, "public_url": c.config.get("url", ""), "url": url}
            # The URL is the sandbox's server, so the sandbox's outbound policy decides what it may reach.
            c.outbound_environment = env


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


_ensured_at = 0.0


def environments_ensure_checks(*, every_seconds: float = 15.0) -> int:
    """Give every registered environment without checks its AWS and metric checks (the sandbox
    registers itself after seed_defaults ran); at most every 15 s a process."""
    global _ensured_at
    if time.monotonic() - _ensured_at < every_seconds:
        return 0
    _ensured_at = time.monotonic()
    from portal.cloud.models import Environment

    n = 0
    for env in Environment.objects.exclude(health_checks__isnull=False):
        health_checks_ensure_for_environment(environment=env, actor="system:health")
        n += 1
    return n


def heartbeat(name: str, *, now: datetime | None = None, **detail) -> None:
    now = now or timezone.now()
    Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": now, "detail": detail})


def poll_once(*, wait: bool = False, now: datetime | None = None) -> dict:
    """One beat of the poller: reap lost claims, claim what is due, run it on the pool.

    With wait=False (the beat task) it returns as soon as the work is handed to the pool, so a slow
    check never delays the next beat; wait=True (tests, commands) blocks until every run is stored.
    """
    now = now or timezone.now()
    if not wait:
        try:
            environments_ensure_checks()
        except Exception:
            log.exception("could not create the checks of a new environment")
    reaped = claims_reap(now=now)
    claims = checks_claim_due(now=now, lookahead_seconds=0.0 if wait else LOOKAHEAD_SECONDS)
    checks = Check.objects.select_related("environment__outbound_policy", "rule").in_bulk([c.check_id for c in claims])
    _point_services_at_sandbox(list(checks.values()))
    pool = _executor()
    if wait:
        # Runs in the pool, results stored here as they complete (one DB connection, as tests need).
        futures = [pool.submit(_run, c, checks[c.check_id]) for c in claims]
        longest = max((float(checks[c.check_id].timeout_seconds) for c in claims), default=0.0)
        for fut in as_completed(futures, timeout=longest + CLAIM_GRACE_SECONDS):
            _store(*fut.result())
    else:
        for c in claims:
            _dispatcher().at(c.scheduled_for, check_execute, c, checks[c.check_id])
    synced = alerts_reconcile()
    heartbeat("poller", now=now, claimed=len(claims), reaped=reaped)
    return {"claimed": len(claims), "reaped": reaped, "alerts_synced": synced}


# ---------------------------------------------------------------------------------------------
# Rollups and retention


def rollups_refresh(*, hours: int = 3, now: datetime | None = None) -> int:
    """Recompute the hourly rollups of the last `hours` hours (the current one included) from raw results."""
    now = now or timezone.now()
    since = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    rows = (
        CheckResult.objects.filter(created_at__gte=since)
        .annotate(h=TruncHour("created_at"))
        .values("check_obj_id", "h")
        .annotate(n=Count("id"), ok=Count("id", filter=Q(ok=True)), avg=Avg("latency_ms"), mx=Max("latency_ms"))
    )
    n = 0
    for r in rows:
        CheckRollup.objects.update_or_create(
            check_obj_id=r["check_obj_id"], hour=r["h"],
            defaults={"count": r["n"], "ok_count": r["ok"], "latency_avg_ms": r["avg"], "latency_max_ms": r["mx"]},
        )
        n += 1
    return n


def retention_sweep(*, now: datetime | None = None, batch: int = 5000) -> dict:
    """Refresh the recent hourly rollups, then drop raw results older than 7 days, rollups older than
    400 days and SLO samples older than 35 days (in batches, so no long lock)."""
    now = now or timezone.now()
    deleted = {"results": 0, "rollups": 0, "slo_samples": 0, "rollup_hours": rollups_refresh(hours=3, now=now)}
    for key, model, field, days in (
        ("results", CheckResult, "created_at", RAW_RETENTION_DAYS),
        ("rollups", CheckRollup, "hour", ROLLUP_RETENTION_DAYS),
        ("slo_samples", SloSample, "at", SLO_SAMPLE_RETENTION_DAYS),
    ):
        cutoff = now - timedelta(days=days)
        while True:
            ids = list(model.objects.filter(**{f"{field}__lt": cutoff}).values_list("pk", flat=True)[:batch])
            if not ids:
                break
            deleted[key] += model.objects.filter(pk__in=ids).delete()[0]
    return deleted


# ---------------------------------------------------------------------------------------------
# Watchdog


def watchdog_run(*, now: datetime | None = None) -> dict:
    """Raise a critical alert when no check result was stored for 3 polling intervals; resolve it after."""
    now = now or timezone.now()
    enabled = Check.objects.filter(enabled=True)
    agg = enabled.aggregate(min_interval=Min("interval_seconds"), first=Min("created_at"))
    last = CheckResult.objects.aggregate(m=Max("created_at"))["m"]
    stalled = False
    allowed = None
    if agg["min_interval"] is not None:
        allowed = 3 * max(int(agg["min_interval"]), POLL_EVERY_SECONDS)
        reference = last or agg["first"]
        stalled = reference is not None and (now - reference).total_seconds() > allowed
    hb = Heartbeat.objects.filter(name="watchdog").first()
    raised = bool(hb and hb.detail.get("alert_raised"))
    if stalled != raised:
        try:
            from portal.incidents.services import alert_ingest_internal

            silent = f"{(now - (last or agg['first'])).total_seconds():.0f} s" if (last or agg["first"]) else "ever"
            alert_ingest_internal(
                source=ALERT_SOURCE, fingerprint="watchdog:polling-stalled", name="Health polling stalled",
                severity="critical", firing=stalled,
                summary=(f"no check result stored for {silent} (limit {allowed} s): is the polling worker or beat down?"
                         if stalled else "check results are being stored again"),
                labels={"component": "health-poller"}, grouping_key="watchdog:polling-stalled",
            )
            raised = stalled
        except Exception:
            log.exception("the health watchdog could not %s its alert", "raise" if stalled else "resolve")
    detail = {"stalled": stalled, "alert_raised": raised, "allowed_seconds": allowed,
              "last_result_at": last.isoformat() if last else None}
    heartbeat("watchdog", now=now, **detail)
    return detail


# ---------------------------------------------------------------------------------------------
# Operator actions and check sets


def check_run_now(*, check: Check, actor) -> Check:
    """Make a check due now (the next beat runs it). Twice is the same as once."""
    with transaction.atomic():
        before = check.next_due_at
        Check.objects.filter(pk=check.pk).update(next_due_at=timezone.now())
        check.refresh_from_db()
        audit_record(actor=actor, verb="health.check.run_now", target=check,
                     before={"next_due_at": before}, after={"next_due_at": check.next_due_at})
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


class RuleInvalid(ValueError):
    pass


def threshold_rule_update(*, rule: ThresholdRule, actor, value: float, window_minutes: int, severity: str,
                          comparison: str | None = None, enabled: bool | None = None) -> ThresholdRule:
    if window_minutes < 1 or window_minutes > 24 * 60:
        raise RuleInvalid("the window must be between 1 and 1440 minutes")
    if severity not in ("critical", "warning"):
        raise RuleInvalid("severity must be critical or warning")
    if comparison is not None and comparison not in ("gt", "gte", "lt", "lte"):
        raise RuleInvalid("comparison must be gt, gte, lt or lte")
    with transaction.atomic():
        rule = ThresholdRule.objects.select_for_update().get(pk=rule.pk)
        before = {"value": rule.value, "window_minutes": rule.window_minutes, "severity": rule.severity,
                  "comparison": rule.comparison, "enabled": rule.enabled}
        rule.value = float(value)
        rule.window_minutes = int(window_minutes)
        rule.severity = severity
        if comparison is not None:
            rule.comparison = comparison
        if enabled is not None:
            rule.enabled = enabled
            Check.objects.filter(rule=rule).update(enabled=enabled)
        rule.save()
        after = {"value": rule.value, "window_minutes": rule.window_minutes, "severity": rule.severity,
                 "comparison": rule.comparison, "enabled": rule.enabled}
        audit_record(actor=actor, verb="health.threshold.update", target=("health.thresholdrule", rule.slug),
                     before=before, after=after, result="ok" if before != after else "noop")
    return rule


AWS_CHECKS = [
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
        specs = []
        for suffix, name, kind, config, severity in AWS_CHECKS:
            specs.append((f"{environment.name}-{suffix}", f"{name} ({environment.name})", kind, Check.Group.AWS,
                          config, severity, None, AWS_INTERVAL_SECONDS))
        for rule in ThresholdRule.objects.all():
            specs.append((f"{environment.name}-{rule.slug}", f"{rule} ({environment.name})",
                          Check.Kind.METRIC_THRESHOLD, Check.Group.METRICS, {}, rule.severity, rule,
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
