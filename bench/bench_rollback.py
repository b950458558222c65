"""Rollback latency on the sandbox.

Warm: the old colour still runs (the usual case during a canary or its watch window). Measured from
the POST /api/v1/environments/sandbox/rollback to the moment the bench, reading the load balancer
listener itself, sees 100 % on the old colour. p50/p95 over N rollbacks (target p95 < 3 s).
Cold: the old colour was scaled to 0; from the POST to traffic switched (it is scaled up and its
targets must be healthy first).

Everything is real except AWS: a moto server on a free 127.0.0.1 port with the platform built, a
throwaway SQLite database, a Celery worker thread consuming the `actions` queue from an in-memory
broker, and the API called through Django's WSGI handler.

    .venv/bin/python bench/bench_rollback.py [--rollbacks 50] [--cold 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PORTAL_ENV", "test")
os.environ["PORTAL_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-rollback-")
# --database-url (read before Django starts): PostgreSQL instead of the throwaway SQLite file.
_DB = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--database-url=")), "")
os.environ["DATABASE_URL"] = _DB
if _DB:
    import psycopg

    _name = _DB.rsplit("/", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as _admin:
        _admin.execute(f'DROP DATABASE IF EXISTS "{_name}" WITH (FORCE)')
        _admin.execute(f'CREATE DATABASE "{_name}"')
os.environ["CELERY_BROKER_URL"] = "memory://"
os.environ["CELERY_RESULT_BACKEND"] = "cache+memory://"
os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AXES_ENABLED", "false")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rollbacks", type=int, default=50)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--broker", default="memory://",
                        help="memory:// (polled every 0.1 s like the embedded filesystem broker) or redis://127.0.0.1:6379/3")
    parser.add_argument("--database-url", default="", help="postgres://postgres@127.0.0.1:5432/portal_bench_rollback (dropped and created)")
    parser.add_argument("--label", default="", help="what else runs meanwhile, for the figure's name")
    args = parser.parse_args()

    settings.ALLOWED_HOSTS = ["*"]
    call_command("migrate", verbosity=0)
    call_command("seed_defaults", stdout=open(os.devnull, "w"))  # growth phases, strategies, policies

    from celery.contrib.testing.worker import start_worker

    from deployments.seed import seed_strategies
    from portal.accounts.services import api_token_create
    from portal.celery import app
    from portal.plan.loader import SeedStats, load_plan

    sys.path.insert(0, str(ROOT / "bench"))
    from stack import RollbackRounds, moto_sandbox

    env, server, endpoint = moto_sandbox()
    seed_strategies(load_plan(), reset=False, stats=SeedStats())
    _, token = api_token_create(name="bench-rollback", scope="actions")
    http = Client()
    headers = {"Authorization": f"Bearer {token}"}

    def post(reason: str) -> tuple[int, str]:
        r = http.post("/api/v1/environments/sandbox/rollback", data={"reason": reason}, content_type="application/json",
                      headers=headers)
        return r.status_code, r.content.decode()

    app.conf.task_always_eager = False
    app.conf.broker_url = args.broker
    if args.broker.startswith("memory://"):
        app.conf.broker_transport_options = {"polling_interval": 0.1}
    else:
        app.conf.broker_transport_options = {"socket_connect_timeout": 2, "visibility_timeout": 3600, "polling_interval": 0.1}
    app.conf.result_backend = "cache+memory://"
    settings.DEPLOYMENTS_ROLLBACK_POLL_SECONDS = 0.1
    settings.DEPLOYMENTS_WEIGHT_READBACK_DELAY = 0.1
    rounds = RollbackRounds(env, post, poll=0.01)

    # As the Procfile's `actions` worker: the actions queue only (the seeding's false-alarm simulations
    # go to `default`, which this bench leaves to nobody), emptied of what an earlier run left.
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("actions")
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10,
                      queues=["actions"]):
        warm = [rounds.run(i).seconds for i in range(args.rollbacks)]
        cold = [rounds.run(1000 + j, cold=True).seconds for j in range(args.cold)]
    server.stop()

    print(f"broker {args.broker}; worker: one Celery worker thread on the actions queue; AWS: moto server at {endpoint}")
    print(f"rollback latency, warm old colour ({len(warm)} rollbacks, POST -> listener read back 100 % on the old colour):")
    print(f"  p50 {statistics.median(warm):.3f} s   p95 {percentile(warm, 95):.3f} s   "
          f"min {min(warm):.3f} s   max {max(warm):.3f} s   (target p95 < 3 s: {'met' if percentile(warm, 95) < 3 else 'MISSED'})")
    print(f"  each, in order: {', '.join(f'{w:.2f}' for w in warm)}")
    if cold:
        print(f"rollback latency, cold old colour ({len(cold)} rollbacks from 0 instances, POST -> traffic switched):")
        print(f"  p50 {statistics.median(cold):.3f} s   max {max(cold):.3f} s   each: {', '.join(f'{c:.3f}' for c in cold)}")
        print("  (moto starts instances InService at once; on AWS add the instances' boot and health-check time)")
    knobs = (f"{'PostgreSQL' if _DB else 'SQLite'} + {args.broker.split(':')[0]}, worker poll {app.conf.broker_transport_options.get('polling_interval')} s, "
             f"rollback poll {settings.DEPLOYMENTS_ROLLBACK_POLL_SECONDS} s, weight read-back delay {settings.DEPLOYMENTS_WEIGHT_READBACK_DELAY} s")
    print(f"knobs: {knobs}")
    sys.path.insert(0, str(ROOT / "bench"))
    from stack import figure, report

    where = f"{'PostgreSQL + Redis' if _DB and args.broker.startswith('redis') else 'embedded'}{', ' + args.label if args.label else ''}"
    report("rollback" + ("-" + args.label.split()[0] if args.label else ""), [
        figure(f"rollback POST to listener 100 % on old colour, p95 of {len(warm)} ({where})", round(percentile(warm, 95) * 1000), "ms",
               300, "<", knobs),
        figure(f"rollback, p50 ({where})", round(statistics.median(warm) * 1000), "ms"),
    ])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
