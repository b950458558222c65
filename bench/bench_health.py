"""Health polling benchmark: 500 HTTP checks every 60 s against local servers, 10 % hanging until
their 10 s timeout, run by a real Celery worker fed by beat-like polls through a real broker.

Prints the schedule drift of the healthy checks (p50/p95/max, target p95 < 5 s), the CPU the worker
used, and results stored per second.

    .venv/bin/python bench/bench_health.py [--checks 500] [--hanging 0.10] [--seconds 150]

Uses PostgreSQL (BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/portal_health) and
Redis (BENCH_BROKER_URL, default redis://127.0.0.1:6379/4) when they answer, else a SQLite file
and the filesystem broker in a temporary folder. The database's health tables are emptied first.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from stack import check_target, figure, http_checks_create, report  # noqa: E402


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / ticks


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * (len(s) - 1))))
    return s[k]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checks", type=int, default=500)
    ap.add_argument("--hanging", type=float, default=0.10)
    ap.add_argument("--interval", type=int, default=60)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--seconds", type=int, default=150, help="how long to measure")
    ap.add_argument("--beat", type=float, default=5.0, help="seconds between poll beats")
    ap.add_argument("--workers", type=int, default=1, help="worker processes sharing the claims")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-health-"))
    env = dict(os.environ)
    env.setdefault("PORTAL_DATA_DIR", str(tmp))
    db_url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_health")
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/4")
    env["DATABASE_URL"] = db_url if port_open(5432) else ""
    env["CELERY_BROKER_URL"] = broker if port_open(6379) else "filesystem://"
    env["CELERY_RESULT_BACKEND"] = "cache+memory://"
    env["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    env["LOG_LEVEL"] = "WARNING"
    env["DEFAULT_ENVIRONMENT"] = "bench-none"  # no sandbox URL rewriting
    os.environ.update(env)
    if env["DATABASE_URL"]:  # a fresh machine has no bench database yet
        import psycopg

        name = db_url.rsplit("/", 1)[1]
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                admin.execute(f'CREATE DATABASE "{name}"')

    import django

    django.setup()

    from django.core.management import call_command
    from django.utils import timezone

    from portal.celery import app
    from portal.health.models import Check, CheckResult, CheckRollup
    from portal.health.tasks import health_poll

    print(f"database: {'PostgreSQL ' + db_url if env['DATABASE_URL'] else 'SQLite in ' + str(tmp)}")
    print(f"broker:   {env['CELERY_BROKER_URL']}")
    call_command("migrate", verbosity=0, interactive=False)
    CheckResult.objects.all().delete()
    CheckRollup.objects.all().delete()
    Check.objects.all().delete()

    server, port = check_target(args.timeout + 5)
    hang_ids = http_checks_create(checks=args.checks, hanging=args.hanging, port=port, interval=args.interval, timeout=args.timeout)
    print(f"checks:   {args.checks} HTTP every {args.interval} s, {len(hang_ids)} hanging until their {args.timeout:g} s timeout")

    # Purge stale polling messages from earlier runs, then start one worker like Procfile.dev's.
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("polling")
    workers = [subprocess.Popen(
        [str(ROOT / ".venv/bin/celery"), "-A", "portal", "worker", "-Q", "polling", "--pool", "threads",
         "--concurrency", "2", "--loglevel", "WARNING", "-n", f"bench-health-{os.getpid()}-{n}@%h"],
        env=env, cwd=str(ROOT),
    ) for n in range(args.workers)]
    time.sleep(4 * args.workers)
    cpu0 = sum(cpu_seconds(w.pid) for w in workers)
    t0 = time.monotonic()
    measure_from = timezone.now()
    next_beat = time.monotonic()
    try:
        while time.monotonic() - t0 < args.seconds:
            health_poll.apply_async(queue="polling", expires=args.beat * 2)
            next_beat += args.beat
            time.sleep(max(0.0, next_beat - time.monotonic()))
        elapsed = time.monotonic() - t0
        cpu1 = sum(cpu_seconds(w.pid) for w in workers)
        measure_to = timezone.now()
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
        server.terminate()
        server.wait(5)

    results = list(CheckResult.objects.filter(created_at__gte=measure_from, created_at__lte=measure_to)
                   .values("check_obj_id", "ok", "reason", "started_at", "scheduled_for", "created_at"))
    healthy = [r for r in results if r["check_obj_id"] not in hang_ids]
    hung = [r for r in results if r["check_obj_id"] in hang_ids]
    drift = [(r["started_at"] - r["scheduled_for"]).total_seconds() for r in healthy if r["scheduled_for"]]
    ok_healthy = sum(1 for r in healthy if r["ok"])
    timeouts = sum(1 for r in hung if not r["ok"] and "timed out" in r["reason"])
    expected = args.checks * elapsed / args.interval
    dup = len(results) - len({(r["check_obj_id"], r["scheduled_for"]) for r in results})
    p95 = pct(drift, 95)
    print()
    print(f"measured for {elapsed:.0f} s")
    if results and not any(r["ok"] for r in healthy):
        print(f"NO healthy check passed: the measurement is void (e.g. {healthy[0]['reason'] if healthy else 'no results'})")
    print(f"results stored:       {len(results)} ({len(results) / elapsed:.2f}/s; schedule asks for ~{expected / elapsed:.2f}/s)")
    print(f"healthy checks:       {len(healthy)} results, {ok_healthy} ok")
    print(f"hanging checks:       {len(hung)} results, {timeouts} timed out as expected")
    print(f"duplicate runs:       {dup}")
    if drift:
        print(f"schedule drift (healthy): p50 {statistics.median(drift):.3f} s, p95 {p95:.3f} s, max {max(drift):.3f} s "
              f"-> {'PASS' if p95 < 5 else 'FAIL'} (target p95 < 5 s)")
    print(f"worker CPU:           {cpu1 - cpu0:.1f} s over {elapsed:.0f} s = {100 * (cpu1 - cpu0) / elapsed:.1f} % of one core"
          f" ({args.workers} worker process{'es' if args.workers > 1 else ''})")
    from portal.health import dispatch

    threads = os.environ.get("HEALTH_POLL_THREADS") or "default"
    shape = f"{args.checks:,} checks, {args.workers} worker{'s' if args.workers > 1 else ''}, HEALTH_POLL_THREADS {threads}"
    print(f"knobs: {shape}; claim lookahead {dispatch.LOOKAHEAD_SECONDS:g} s, beat every {args.beat:g} s")
    report("health" if args.workers == 1 else "health-2-workers", [
        figure(f"health polling: schedule drift p95 ({shape})", round(p95, 2) if drift else float("nan"), "s", 5, "<"),
        figure(f"health polling: checks run twice ({shape})", dup, "", 0),
        figure(f"health polling: worker CPU, % of one core ({shape})", round(100 * (cpu1 - cpu0) / elapsed, 1), "%"),
        figure(f"health polling: results stored vs the schedule ({shape})", round(100 * len(results) / max(1, expected), 1), "%", 95, ">=",
               "a hanging check's result lands after its timeout"),
    ])
    return 0 if drift and p95 < 5 and dup == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
