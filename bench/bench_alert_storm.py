"""Alert storm: 10,000 Alertmanager alerts in batches over 60 s against gunicorn + Redis + PostgreSQL
and a real Celery worker, all started here on 127.0.0.1.

    .venv/bin/python bench/bench_alert_storm.py [--alerts 10000] [--seconds 60] [--batch 50] [--replay 0.1]

Prints alerts sent, stored, incidents created, lost (must be 0), duplicates (must be 0), webhook
p50/p99 latency and receipt-to-incident p95. Uses its own database (portal_incidents_bench, dropped
and recreated) and Redis db 2. Exit status 1 when anything is lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
BIN = ROOT / ".venv" / "bin"
sys.path.insert(0, str(ROOT / "bench"))
from stack import AlertSender, alertmanager_payload  # noqa: E402


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(q * (len(ordered) - 1)))))
    return ordered[k]


def make_batches(alerts: int, batch: int, group_size: int) -> list[dict]:
    """Groups of `group_size` alerts (one Alertmanager group each), delivered `batch` alerts at a time."""
    return [alertmanager_payload(list(range(start, min(start + batch, alerts))), start // group_size, "storm")
            for start in range(0, alerts, batch)]


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=1).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not come up")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--alerts", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--group-size", type=int, default=100)
    ap.add_argument("--replay", type=float, default=0.1, help="share of batches sent twice (Alertmanager repeats)")
    ap.add_argument("--db", default="portal_incidents_bench")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/2")
    ap.add_argument("--web-workers", type=int, default=2)
    ap.add_argument("--celery-concurrency", type=int, default=2)
    args = ap.parse_args()

    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{args.db}" WITH (FORCE)')
    admin.execute(f'CREATE DATABASE "{args.db}"')
    admin.close()
    dsn = f"postgres://postgres@127.0.0.1:5432/{args.db}"
    import redis

    redis.Redis.from_url(args.redis).flushdb()

    env = dict(os.environ, DATABASE_URL=dsn, CELERY_BROKER_URL=args.redis, CELERY_RESULT_BACKEND=args.redis,
               PORTAL_ENV="development", DEBUG="false", LOG_LEVEL="WARNING", AXES_ENABLED="false",
               PORTAL_DATA_DIR=f"/tmp/bench-incidents-{os.getpid()}", DJANGO_SETTINGS_MODULE="portal.settings")
    run = lambda *a: subprocess.run([PY, "manage.py", *a], cwd=ROOT, env=env, check=True, capture_output=True, text=True)  # noqa: E731
    run("migrate", "--noinput", "-v0")
    token = run("create_api_token", "--name", "bench", "--scope", "alerts:write").stdout.strip().splitlines()[-1]

    port = free_port()
    procs = []
    log_dir = Path(env["PORTAL_DATA_DIR"])
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        procs.append(subprocess.Popen(
            [str(BIN / "gunicorn"), "portal.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", str(args.web_workers),
             "--threads", "4", "--no-control-socket", "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=open(log_dir / "gunicorn.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        procs.append(subprocess.Popen(
            [str(BIN / "celery"), "-A", "portal", "worker", "-Q", "default", "-c", str(args.celery_concurrency),
             "-l", "warning", "--without-gossip", "--without-mingle", "-n", f"bench-{os.getpid()}@127.0.0.1"],
            cwd=ROOT, env=env, stdout=open(log_dir / "celery.log", "w"), stderr=subprocess.STDOUT, start_new_session=True))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/healthz")

        batches = make_batches(args.alerts, args.batch, args.group_size)
        step = max(1, round(1 / args.replay)) if args.replay > 0 else 0
        sends = []
        for i, b in enumerate(batches):
            sends.append((b, False))
            # A replay of a batch sent a few requests earlier, like Alertmanager resending after a timeout.
            if step and i >= 3 and i % step == step - 1:
                sends.append((batches[i - 3], True))
        interval = args.seconds / len(sends)
        sender = AlertSender(token, timeout=30)

        bodies = [(json.dumps(b).encode(), replay) for b, replay in sends]
        print(f"sending {args.alerts} alerts in {len(batches)} batches of {args.batch} (+{len(sends) - len(batches)} replays) over {args.seconds:.0f} s to {base}", flush=True)
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=16) as pool:
            for i, (body, _) in enumerate(bodies):
                due = start + i * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(sender.post, base, body)
        send_seconds = time.perf_counter() - start
        latencies, failures = sender.latencies, sender.failures

        # Wait for the worker to drain every delivery.
        conn = psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{args.db}", autocommit=True)
        deadline = time.time() + 300
        while time.time() < deadline:
            pending = conn.execute("SELECT count(*) FROM incidents_alertdelivery WHERE status = 'pending'").fetchone()[0]
            if pending == 0:
                break
            time.sleep(0.5)
        drained = time.perf_counter() - start
        q = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        deliveries = q("SELECT count(*) FROM incidents_alertdelivery")
        failed = q("SELECT count(*) FROM incidents_alertdelivery WHERE status <> 'processed'")
        stored = q("SELECT count(*) FROM incidents_alert WHERE fingerprint LIKE 'storm%'")
        distinct = q("SELECT count(DISTINCT fingerprint) FROM incidents_alert")
        incidents = q("SELECT count(*) FROM incidents_incident")
        groups = q("SELECT count(DISTINCT grouping_key) FROM incidents_incident")
        unattached = q("SELECT count(*) FROM incidents_alert WHERE incident_id IS NULL")
        dup_open = q("SELECT count(*) FROM (SELECT grouping_key FROM incidents_incident WHERE status <> 'resolved' GROUP BY grouping_key HAVING count(*) > 1) x")
        firing_timeline = q("SELECT count(*) FROM incidents_timelineentry WHERE kind = 'alert_firing'")
        r2i = [row[0] for row in conn.execute(
            "SELECT extract(epoch FROM e.at - d.received_at) FROM incidents_alertevent e "
            "JOIN incidents_alertdelivery d ON d.id = e.delivery_id WHERE e.effect = 'fired'")]
        conn.close()

        expected_groups = (args.alerts + args.group_size - 1) // args.group_size
        lost = args.alerts - stored + unattached
        duplicates = (stored - distinct) + (incidents - groups) + dup_open + max(0, firing_timeline - args.alerts)
        print(f"alerts sent:            {args.alerts} unique ({len(bodies)} requests incl. {len(bodies) - len(batches)} replayed batches) in {send_seconds:.1f} s")
        print(f"webhook failures:       {len(failures)}" + (f" e.g. {failures[0]}" if failures else ""))
        print(f"deliveries stored:      {deliveries} (not processed: {failed}), all processed after {drained:.1f} s")
        print(f"alerts stored:          {stored}")
        print(f"incidents created:      {incidents} (expected {expected_groups}, one per Alertmanager group)")
        print(f"lost:                   {lost}")
        print(f"duplicates:             {duplicates}")
        print(f"webhook latency:        p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
        print(f"receipt-to-incident:    p50 {percentile(r2i, 0.5) * 1000:.0f} ms, p95 {percentile(r2i, 0.95) * 1000:.0f} ms, max {max(r2i) * 1000:.0f} ms")
        return 0 if lost == 0 and duplicates == 0 and not failures and failed == 0 else 1
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
