"""Where the worker's time goes per new incident: one single-alert delivery processed in-process, on
PostgreSQL and on the embedded SQLite default, with the statements it runs and the tasks it sends.

    .venv/bin/python bench/bench_intake_worker.py [--incidents 300]

Each backend runs in a child process of its own (a fresh database: portal_bench_intake_worker on
PostgreSQL, a SQLite file in a temp folder, both migrated and seeded), stores `--incidents`
Alertmanager deliveries of one alert each (each its own group, so each opens an incident), then times
`delivery_process` over them. The follow-up tasks are counted, not sent (the broker is not what is
measured here: bench_intake.py measures the whole path). Prints ms per incident on each backend,
statements per incident, the tasks each incident sends, and the SQLite/PostgreSQL ratio (target <= 3).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG = "postgres://postgres@127.0.0.1:5432/portal_bench_intake_worker"


def child(n: int) -> dict:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    import portal.tasking as tasking
    from portal.incidents import ingest

    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed_defaults", stdout=open(os.devnull, "w"))
    sent: Counter = Counter()
    tasking.send_now = lambda name, args=(), kwargs=None: sent.update([name])  # counted, not sent

    def body(i: int) -> dict:
        name = f"Worker{i}"
        return {"receiver": "portal", "status": "firing", "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}',
                "groupLabels": {"alertname": name}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
                "alerts": [{"status": "firing", "labels": {"alertname": name, "severity": "critical" if i % 10 == 0 else "warning",
                                                           "service": "api"},
                            "annotations": {"summary": "x"}, "startsAt": "2026-11-27T18:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                            "generatorURL": "http://prom", "fingerprint": f"worker{i:06d}"}]}

    ids = [ingest.delivery_store(source="alertmanager", payload=body(i), alert_count=1)[0].pk for i in range(n + 1)]
    sent.clear()
    with CaptureQueriesContext(connection) as ctx:
        ingest.delivery_process(delivery_id=ids[0])  # the first one also warms the process
    statements = len(ctx.captured_queries)
    sent.clear()
    t = time.perf_counter()
    for pk in ids[1:]:
        ingest.delivery_process(delivery_id=pk)
    elapsed = time.perf_counter() - t
    from portal.incidents.models import Incident

    return {"vendor": connection.vendor, "ms_per_incident": elapsed / n * 1000, "statements": statements,
            "tasks_per_incident": {k: round(v / n, 2) for k, v in sent.items()}, "incidents": Incident.objects.count()}


def run_child(database_url: str, n: int) -> dict:
    data = tempfile.mkdtemp(prefix="bench-intake-worker-")
    env = dict(os.environ, DATABASE_URL=database_url, PORTAL_DATA_DIR=data, CELERY_BROKER_URL="memory://",
               DJANGO_SETTINGS_MODULE="portal.settings", LOG_LEVEL="WARNING", PORTAL_ENV="development")
    out = subprocess.run([sys.executable, __file__, "--child", str(n)], cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"child on {database_url or 'SQLite'} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--incidents", type=int, default=300)
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(child(args.child)))
        return 0
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute('DROP DATABASE IF EXISTS "portal_bench_intake_worker" WITH (FORCE)')
        admin.execute('CREATE DATABASE "portal_bench_intake_worker"')
    pg = run_child(PG, args.incidents)
    lite = run_child("", args.incidents)
    ratio = lite["ms_per_incident"] / pg["ms_per_incident"]
    for r in (pg, lite):
        print(f"{r['vendor']:10} {r['ms_per_incident']:6.1f} ms per new incident ({r['incidents'] - 1} timed), "
              f"{r['statements']} statements, tasks sent each: {r['tasks_per_incident']}")
    print(f"embedded SQLite / PostgreSQL: {ratio:.2f}x (target <= 3x)")
    sys.path.insert(0, str(ROOT / "bench"))
    from stack import figure, report

    report("intake-worker", [
        figure("worker time per new incident, PostgreSQL", round(pg["ms_per_incident"], 1), "ms"),
        figure("worker time per new incident, embedded SQLite", round(lite["ms_per_incident"], 1), "ms"),
        figure("embedded SQLite / PostgreSQL worker time per incident", round(ratio, 2), "x", 3, "<="),
        figure("statements per new incident", pg["statements"], ""),
        figure("follow-up tasks per new incident", round(sum(pg["tasks_per_incident"].values()), 2), ""),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
