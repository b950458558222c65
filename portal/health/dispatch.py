"""The health poller: claim the checks that are due, run them on this process's pool at their
scheduled time, store each result through portal.health.services, and reap claims that never answered."""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone

from portal.cloud.models import Environment
from portal.env import env_int
from portal.health.models import Check, CheckResult
from portal.health.runners import Outcome, run_check
from portal.health.services import (
    CLAIM_GRACE_SECONDS,
    POLL_EVERY_SECONDS,
    alerts_reconcile,
    check_record_result,
    health_checks_ensure_for_environment,
    heartbeat,
)

log = logging.getLogger(__name__)

# Slots up to a bit past the next beat are claimed ahead and started on time by the dispatcher.
LOOKAHEAD_SECONDS = float(env_int("HEALTH_POLL_LOOKAHEAD_SECONDS", POLL_EVERY_SECONDS + 2, minimum=0))

_pool_lock = threading.Lock()
_pools: dict[str, ThreadPoolExecutor] = {}
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
    """One pool a worker process, so a hanging check holds one thread and never the poller.

    A hanging check holds its thread for its whole timeout: 5,000 checks a minute with 10 % hanging
    for 10 s keep about 85 threads waiting at any time, and at 48 the healthy checks queued behind them
    until their claims were reaped (bench/bench_health.py --checks 5000: drift p95 24 s, 7,798 healthy
    runs reaped). Threads that store on their own connection cannot simply be more: 160 of them
    exhausted PostgreSQL's 100 connections ("too many clients"). So these threads fetch and hold no
    connection between checks, results are stored on the few threads of `_store_executor`, and there
    are enough of them for hanging checks to leave room for the healthy ones."""
    return _lazy_pool("fetch", "HEALTH_POLL_THREADS", 256, "health-check")


def _store_executor() -> ThreadPoolExecutor:
    """The threads that store results: the only ones of the poller that keep a database connection."""
    return _lazy_pool("store", "HEALTH_STORE_THREADS", 4, "health-store")


def _lazy_pool(key: str, variable: str, default: int, prefix: str) -> ThreadPoolExecutor:
    """One pool of `key` a process, sized by the environment variable, made on first use."""
    with _pool_lock:
        if key not in _pools:
            _pools[key] = ThreadPoolExecutor(max_workers=env_int(variable, default, minimum=1), thread_name_prefix=prefix)
        return _pools[key]


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


def _store_kept(claim: Claim, started: datetime, outcome: Outcome) -> CheckResult | None:
    close_old_connections()
    return _store(claim, started, outcome)


def check_execute(claim: Claim, check: Check) -> CheckResult | None:
    """Run one claimed check on a fetch thread and store its result on a store thread. Never raises.
    A fetch thread that read the database (a metric threshold) closes its connection before it waits
    on the network again, so connections stay near HEALTH_STORE_THREADS a process, not one a thread."""
    try:
        ran = _run(claim, check)
    except Exception:
        log.exception("health check %s could not run", claim.check_id)
        return None
    finally:
        connection.close()
    return _store_executor().submit(_store_kept, *ran).result()


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


def attach_url_environments(checks: list[Check]) -> None:
    """A check read from a URL another environment owns (`check_url_point`) is reached under that
    environment's outbound policy: load those environments once per beat, with their policies."""
    ids = {(c.config or {}).get("url_environment_id") for c in checks} - {None}
    if not ids:
        return
    envs = Environment.objects.select_related("outbound_policy").in_bulk(ids)
    for c in checks:
        env = envs.get((c.config or {}).get("url_environment_id"))
        if env is not None:
            c.outbound_environment = env


_ensured_at = 0.0


def environments_ensure_checks(*, every_seconds: float = 15.0) -> int:
    """Give every registered environment without checks its AWS and metric checks (the sandbox
    registers itself after seed_defaults ran); at most every 15 s a process."""
    global _ensured_at
    if time.monotonic() - _ensured_at < every_seconds:
        return 0
    _ensured_at = time.monotonic()
    n = 0
    for env in Environment.objects.exclude(health_checks__isnull=False):
        health_checks_ensure_for_environment(environment=env, actor="system:health")
        n += 1
    return n


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
    attach_url_environments(list(checks.values()))
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
