"""Page load benchmark: the dashboard, its htmx panels, /incidents/, /health/ and /deployments/
served by gunicorn (3 workers x 2 threads) to 20 concurrent logged-in users on PostgreSQL.

    .venv/bin/python bench/bench_pages.py [--seconds 45] [--users 20]

What it does, in order:

1. drops and creates the database BENCH_DATABASE_URL (default
   postgres://postgres@127.0.0.1:5432/portal_bench_pages), migrates and runs `seed_defaults`;
2. creates an Environment "sandbox" with dummy resource names whose endpoint_url points at a
   closed local port (any page that calls AWS inline fails fast there instead of reaching out),
   one user per role (5 of each, 20 in all) and a SMALL data set (5 open incidents, 10 health
   checks, 10 deployments), and counts the SQL queries of every page with
   django.test.utils.CaptureQueriesContext and a logged-in test Client, in-process;
3. grows the data to the FULL set (50 open incidents with alerts and timeline entries, 1,000 health
   checks with results and hourly rollups, 200 deployments in history with events), runs ANALYZE (as
   autovacuum would on a production database; a server with autovacuum off never does) and counts
   again, so the table shows whether queries grow with rows;
4. starts gunicorn with DATABASE_URL and PORTAL_ENV=development, logs 20 users in through
   /accounts/login/ (CSRF token from the form), and for --seconds each user loops over the dashboard,
   the panel URLs the dashboard lists in its hx-get attributes, /incidents/, /health/ and /deployments/;
5. prints per page: requests, errors, client-side latency p50/p95/p99 (requests on loopback, the
   client shares the 2 cores with the server), server-side p50/p95/p99 (gunicorn's access log
   %(D)s, the time the worker spent on the request), the queries at both sizes and the page weight
   (HTML + the CSS and JS files it references); then the overall requests/s and the verdict against
   the 300 ms p95 target (server side).

gunicorn is stopped on exit, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/portal_bench_pages")
PASSWORD = "bench-pages-Passw0rd!"  # noqa: S105 - throwaway users in a throwaway database
TARGET_P95_MS = 300.0
FIXED_PAGES = ["/", "/incidents/", "/health/", "/deployments/"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def recreate_database() -> None:
    import psycopg

    parts = urlsplit(DB_URL)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z0-9_]+", name):
        sys.exit(f"refusing odd database name {name!r}")
    admin = DB_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(closed_port: int) -> None:
    os.environ["DATABASE_URL"] = DB_URL
    os.environ["PORTAL_ENV"] = "development"
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["DB_CONN_MAX_AGE"] = "0"
    # Dummy credentials: no lookup of a real profile or the instance metadata service.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    import django

    django.setup()


# --------------------------------------------------------------------------------------------- data


def make_environment(closed_port: int):
    from portal.cloud.models import Environment

    env, _ = Environment.objects.update_or_create(
        name="sandbox",
        defaults=dict(
            description="bench: dummy resources, AWS endpoint on a closed port",
            region="us-east-1",
            endpoint_url=f"http://127.0.0.1:{closed_port}",
            listener_arn="arn:aws:elasticloadbalancing:us-east-1:000000000000:listener/app/bench/1/2",
            load_balancer_arn="arn:aws:elasticloadbalancing:us-east-1:000000000000:loadbalancer/app/bench/1",
            blue_asg="bench-blue",
            green_asg="bench-green",
            blue_target_group_arn="arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/bench-blue/1",
            green_target_group_arn="arn:aws:elasticloadbalancing:us-east-1:000000000000:targetgroup/bench-green/2",
            launch_template_id="lt-0bench",
            rds_instance_id="bench-db",
            cache_replication_group_id="bench-cache",
            buckets={"photos": "bench-photos", "documents": "bench-documents"},
        ),
    )
    return env


def add_rollup_history(days: int) -> int:
    """Hourly rollups for every bench check over `days` (one INSERT ... SELECT: millions of rows in
    seconds, where the ORM would take minutes). The first 24 hours add_checks wrote are skipped."""
    if days <= 1:
        return 0
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO health_checkrollup (check_id, hour, count, ok_count, latency_avg_ms, latency_max_ms) "
            "SELECT c.id, date_trunc('hour', now()) - make_interval(hours => h), 60, "
            "CASE WHEN random() > 0.05 THEN 60 ELSE 55 END, 50, 250 "
            "FROM health_check c CROSS JOIN generate_series(24, %s) AS h WHERE c.slug LIKE 'bench-%%' "
            "ON CONFLICT DO NOTHING", [days * 24 - 1])
        return cur.rowcount


def make_users() -> list[str]:
    from portal.accounts.roles import ROLES
    from portal.accounts.services import user_create_or_update

    names = []
    for i in range(5):
        for role in ROLES:
            name = f"bench-{role}-{i}"
            user_create_or_update(username=name, role=role, password=PASSWORD, validate=False)
            names.append(name)
    return names


def add_incidents(env, upto: int) -> None:
    from django.utils import timezone

    from portal.incidents.models import Alert, Incident, Severity, Source, TimelineEntry

    have = Incident.objects.exclude(status=Incident.Status.RESOLVED).count()
    now = timezone.now()
    rnd = random.Random(upto)
    for i in range(have, upto):
        sev = Severity.CRITICAL if i % 3 == 0 else Severity.WARNING
        inc = Incident.objects.create(
            grouping_key=f"bench:{i}", source=Source.ALERTMANAGER, severity=sev, environment=env,
            status=Incident.Status.ACKNOWLEDGED if i % 4 == 0 else Incident.Status.TRIGGERED,
            title=f"Bench incident {i}: HighErrorRate on api-{i % 7}", service=f"api-{i % 7}",
            opened_at=now - timedelta(minutes=rnd.randint(1, 600)),
        )
        alerts = [
            Alert(
                source=Source.ALERTMANAGER, fingerprint=f"bench-{i}-{a}", name=f"HighErrorRate{a}",
                status=Alert.Status.FIRING, severity=sev, summary="5xx above threshold",
                labels={"alertname": f"HighErrorRate{a}", "service": f"api-{i % 7}"},
                last_received_at=now, incident=inc, environment=env,
            )
            for a in range(3)
        ]
        Alert.objects.bulk_create(alerts)
        TimelineEntry.objects.bulk_create([
            TimelineEntry(incident=inc, kind=TimelineEntry.Kind.OPENED, actor_label="alertmanager", text="opened"),
            TimelineEntry(incident=inc, kind=TimelineEntry.Kind.ALERT_FIRING, actor_label="alertmanager", text="firing"),
            TimelineEntry(incident=inc, kind=TimelineEntry.Kind.NOTE, actor_label="bench", text="looking"),
        ])


def add_checks(env, upto: int) -> None:
    from django.utils import timezone

    from portal.health.models import Check, CheckResult, CheckRollup

    have = Check.objects.filter(slug__startswith="bench-").count()
    now = timezone.now()
    hour = now.replace(minute=0, second=0, microsecond=0)
    rnd = random.Random(upto)
    aws_kinds = [Check.Kind.ASG, Check.Kind.TARGET_HEALTH, Check.Kind.RDS, Check.Kind.ELASTICACHE, Check.Kind.ALARM, Check.Kind.S3]
    checks = []
    for i in range(have, upto):
        ok = rnd.random() > 0.05
        # A realistic mix: 15 % external HTTP checks, 25 % metric thresholds, 60 % AWS resources.
        slot = i % 20
        if slot < 3:
            kind, group, config = Check.Kind.HTTP, Check.Group.EXTERNAL, {"url": f"http://127.0.0.1:9/{i}", "expect_status": 200}
        elif slot < 8:
            kind, group, config = Check.Kind.METRIC_THRESHOLD, Check.Group.METRICS, {}
        else:
            kind = aws_kinds[slot % len(aws_kinds)]
            group, config = Check.Group.AWS, {}
        checks.append(Check(
            slug=f"bench-{i:04d}", name=f"Bench {kind} check {i:04d}", kind=kind, group=group, environment=env,
            config=config,
            status=Check.Status.OK if ok else Check.Status.FAILING, status_changed_at=now,
            last_result_at=now, last_ok=ok, last_reason="" if ok else "connection refused",
            last_latency_ms=rnd.uniform(5, 300), next_due_at=now + timedelta(seconds=60),
        ))
    Check.objects.bulk_create(checks, batch_size=500)
    results, rollups = [], []
    for c in checks:
        for k in range(5):
            at = now - timedelta(minutes=k)
            results.append(CheckResult(check_obj=c, ok=c.last_ok or k > 0, latency_ms=rnd.uniform(5, 300),
                                       started_at=at, created_at=at, scheduled_for=at))
        for h in range(24):
            rollups.append(CheckRollup(check_obj=c, hour=hour - timedelta(hours=h), count=60,
                                       ok_count=60 if rnd.random() > 0.05 else 55, latency_avg_ms=50, latency_max_ms=250))
    CheckResult.objects.bulk_create(results, batch_size=2000)
    CheckRollup.objects.bulk_create(rollups, batch_size=2000)


def add_deployments(env, upto: int) -> None:
    from django.utils import timezone

    from deployments.models import (
        AnalysisTemplate,
        Deployment,
        DeploymentEvent,
        DeploymentState,
        Release,
        Strategy,
    )

    strategies = list(Strategy.objects.all())
    if not strategies:
        template, _ = AnalysisTemplate.objects.get_or_create(slug="bench", defaults={"name": "Bench analysis"})
        strategies = [Strategy.objects.create(name="Bench canary", kind=Strategy.Kind.choices[0][0], template=template,
                                              weights=[5, 25, 50, 100], hold_seconds=[60, 60, 60, 60])]
    have = Deployment.objects.filter(environment=env).count()
    now = timezone.now()
    finals = [DeploymentState.COMPLETED] * 8 + [DeploymentState.ROLLED_BACK, DeploymentState.FAILED]
    for i in range(have, upto):
        rel = Release.objects.create(environment=env, version=f"1.{i // 10}.{i % 10}", launch_template_version=str(i + 1),
                                     image_id=f"ami-0bench{i:06d}", created_by_label="bench")
        frm = "blue" if i % 2 == 0 else "green"
        at = now - timedelta(hours=(upto - i))
        dep = Deployment.objects.create(
            environment=env, release=rel, strategy=strategies[i % len(strategies)], from_colour=frm,
            to_colour="green" if frm == "blue" else "blue", state=finals[i % len(finals)],
            weights={"blue": 0, "green": 100} if frm == "blue" else {"blue": 100, "green": 0},
            created_by_label="bench", started_at=at, finished_at=at + timedelta(minutes=20),
        )
        DeploymentEvent.objects.bulk_create([
            DeploymentEvent(deployment=dep, environment=env, at=at, kind=DeploymentEvent.Kind.choices[0][0], message="started"),
            DeploymentEvent(deployment=dep, environment=env, at=at + timedelta(minutes=20),
                            kind=DeploymentEvent.Kind.choices[0][0], message=str(dep.state)),
        ])


def analyze() -> None:
    """Planner statistics for the rows just inserted, as autovacuum keeps them on a production database.

    A server run with autovacuum off (this machine's) never gathers them, and the planner then guesses
    a few rows per table: it picked the 30-day rollup index over the per-check one for the health
    grid's uptime, three times slower than the plan it takes with statistics. The rollups are also
    vacuumed, as autovacuum does after inserts: its visibility map is what lets the grid's uptime sum
    come from the covering index alone (without it, every one of a page's 72,000 rows is read from the
    heap, as no month-old production table is)."""
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute("VACUUM (ANALYZE) health_checkrollup")
        cur.execute("ANALYZE")


def grow_data(env, *, incidents: int, checks: int, deployments: int) -> None:
    add_incidents(env, incidents)
    add_checks(env, checks)
    add_deployments(env, deployments)


# ---------------------------------------------------------------------------------- query counting


def panel_urls(html: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r'hx-get="([^"]+)"', html)))


def count_queries(username: str) -> tuple[dict[str, int], dict[str, int]]:
    """Queries and status per page for one logged-in user, in-process with the test Client."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username=username))
    client.get("/")  # warm caches that are per process, not per request
    dash = client.get("/").content.decode()
    pages = ["/", *panel_urls(dash), "/incidents/", "/health/", "/deployments/"]
    counts, statuses = {}, {}
    for url in pages:
        extra = {} if url in FIXED_PAGES else {"HTTP_HX_REQUEST": "true"}  # panels are fetched by htmx
        client.get(url, **extra)  # warm-up
        with CaptureQueriesContext(connection) as ctx:
            resp = client.get(url, **extra)
        counts[url] = len(ctx.captured_queries)
        statuses[url] = resp.status_code
    return counts, statuses


# ------------------------------------------------------------------------------------------- load


def login(base: str, username: str):
    import requests

    s = requests.Session()
    r = s.get(f"{base}/accounts/login/", timeout=30)
    m = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', r.text)
    if not m:
        raise RuntimeError("no CSRF token on the login page")
    r = s.post(f"{base}/accounts/login/", data={"csrfmiddlewaretoken": m.group(1), "username": username,
                                               "password": PASSWORD, "next": "/"},
               headers={"Referer": f"{base}/accounts/login/"}, timeout=30, allow_redirects=False)
    if r.status_code != 302:
        raise RuntimeError(f"login of {username} answered {r.status_code}")
    return s


def page_weight(session, base: str, url: str, asset_cache: dict[str, int]) -> tuple[int, int, int]:
    """(html, css, js) bytes: the page and the stylesheets and scripts it references."""
    html = session.get(base + url, timeout=30).content
    text = html.decode(errors="replace")
    css = js = 0
    for tag in re.findall(r"<(?:link|script)\b[^>]*>", text):
        src = re.search(r'(?:href|src)="([^"]+)"', tag)
        if not src or src.group(1).startswith(("http:", "https:", "//")):
            continue
        kind = "js" if tag.startswith("<script") else ("css" if "stylesheet" in tag else None)
        if kind is None:
            continue
        path = src.group(1)
        if path not in asset_cache:
            asset_cache[path] = len(session.get(base + path, timeout=30).content)
        if kind == "js":
            js += asset_cache[path]
        else:
            css += asset_cache[path]
    return len(html), css, js


def wait_http(base: str, timeout: float = 60) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise RuntimeError("gunicorn did not answer /healthz")


def run_load(base: str, users: list[str], pages: list[str], seconds: float):
    lat: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    lock = threading.Lock()
    sessions = [None] * len(users)

    def do_login(i):
        sessions[i] = login(base, users[i])

    threads = [threading.Thread(target=do_login, args=(i,)) for i in range(len(users))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if any(s is None for s in sessions):
        raise RuntimeError("some logins failed")

    start = time.monotonic()
    stop_at = start + seconds

    def worker(s):
        import requests

        while time.monotonic() < stop_at:
            for url in pages:
                if time.monotonic() >= stop_at:
                    break
                t0 = time.perf_counter()
                try:
                    r = s.get(base + url, timeout=30, allow_redirects=False,
                              headers={"HX-Request": "true"} if url not in FIXED_PAGES else {})
                    ok = r.status_code == 200
                    _ = r.content
                except requests.RequestException:
                    ok = False
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    if ok:
                        lat[url].append(ms)
                    else:
                        errors[url] += 1

    threads = [threading.Thread(target=worker, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors, time.monotonic() - start, sessions[0]


def parse_access_log(path: Path, since: float) -> dict[str, list[float]]:
    """Server-side ms per path from lines '<epoch> <status> <path> <microseconds>'."""
    out: dict[str, list[float]] = defaultdict(list)
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5 or parts[0] != "BENCH":
            continue
        _, epoch, status, url, micros = parts
        try:
            if float(epoch) < since or status != "200":
                continue
            out[url].append(int(micros) / 1000)
        except ValueError:
            continue
    return out


# ------------------------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=45)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--scale", type=int, default=1,
                    help="data of the full set times this: 1 = 50 open incidents, 1,000 checks, 200 deployments")
    ap.add_argument("--rollup-days", type=int, default=None, help="days of hourly check rollups (default 30 at --scale 10 and up, else 1)")
    ap.add_argument("--aws", choices=["sandbox", "closed"], default="sandbox",
                    help="sandbox: a moto server with the platform built; closed: a closed port (AWS reads fail fast)")
    ap.add_argument("--exclude", action="append", default=[], metavar="URL",
                    help="leave a page out of the load loop (repeatable), e.g. to see the others without it")
    args = ap.parse_args()

    closed_port = free_port()  # nothing listens there: AWS calls are refused at once
    print(f"database {DB_URL} (dropped and created)")
    recreate_database()
    setup_django(closed_port)
    from django.core.management import call_command
    from django.db import connections

    t0 = time.monotonic()
    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed_defaults", verbosity=0)
    moto = None
    if args.aws == "sandbox":
        sys.path.insert(0, str(ROOT / "bench"))
        from stack import moto_sandbox

        env, moto, endpoint = moto_sandbox()
        where = f"a moto server at {endpoint} with the sandbox platform built"
    else:
        env = make_environment(closed_port)
        where = f"127.0.0.1:{closed_port} (closed)"
    users = make_users()
    print(f"migrated and seeded in {time.monotonic() - t0:.1f} s; AWS endpoint of 'sandbox' -> {where}")

    grow_data(env, incidents=5, checks=10, deployments=10)
    small_q, small_status = count_queries("bench-viewer-0")
    t0 = time.monotonic()
    scale = max(1, args.scale)
    grow_data(env, incidents=50 * scale, checks=1000 * scale, deployments=200 * scale)
    days = args.rollup_days if args.rollup_days is not None else (30 if scale >= 10 else 1)
    rollups = add_rollup_history(days)
    analyze()
    print(f"check rollups: {days} days ({rollups:,} rows added beyond the first day)")
    print(f"full data set created in {time.monotonic() - t0:.1f} s")
    full_q, full_status = count_queries("bench-viewer-0")
    # A responder sees action buttons a viewer does not: count the bigger page too.
    lead_q, _ = count_queries("bench-lead-0")
    connections.close_all()

    from deployments.models import Deployment
    from portal.health.models import Check, CheckResult
    from portal.incidents.models import Incident

    print(f"data: {Incident.objects.exclude(status='resolved').count()} open incidents, "
          f"{Check.objects.count()} checks, {CheckResult.objects.count()} results, "
          f"{Deployment.objects.count()} deployments")
    connections.close_all()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="bench_pages_"))
    access_log = tmp / "access.log"
    env_vars = dict(os.environ, DATABASE_URL=DB_URL, PORTAL_ENV="development", DB_CONN_MAX_AGE="60")
    env_vars.pop("DJANGO_SETTINGS_MODULE", None)
    cmd = [
        str(ROOT / ".venv/bin/gunicorn"), "portal.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", "3", "--threads", "2", "--no-control-socket",
        "--access-logfile", str(access_log), "--access-logformat", "BENCH %({x-bench-epoch}i)s %(s)s %(U)s %(D)s",
        "--error-logfile", str(tmp / "error.log"),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env_vars, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_http(base)
        probe = login(base, users[0])
        dash = probe.get(base + "/", timeout=30)
        if dash.status_code != 200:
            raise RuntimeError(f"dashboard answered {dash.status_code}")
        panels = panel_urls(dash.text)
        pages = [u for u in ["/", *panels, "/incidents/", "/health/", "/deployments/"] if u not in args.exclude]
        # Warm every worker (imports, template compilation, AWS clients) before measuring. One
        # keep-alive session stays on the worker that accepted it, so six sessions warm at once.
        warmers = [probe, *(login(base, users[i]) for i in range(1, 6))]

        def warm(session):
            for _ in range(3):
                for url in pages:
                    session.get(base + url, timeout=60,
                                headers={"HX-Request": "true"} if url not in FIXED_PAGES else {})

        threads = [threading.Thread(target=warm, args=(w,)) for w in warmers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        load_start = time.time()
        session_users = [users[i % len(users)] for i in range(args.users)]
        print(f"gunicorn on {base}: {args.users} users for {args.seconds:.0f} s over {len(pages)} URLs ...")
        lat, errors, elapsed, s0 = run_load_with_epoch(base, session_users, pages, args.seconds)
        server = parse_access_log(access_log, load_start - 1)
        assets: dict[str, int] = {}
        weights = {url: page_weight(s0, base, url, assets) for url in pages}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # ------------------------------------------------------------------------------------ report
    total = sum(len(v) for v in lat.values())
    total_err = sum(errors.values())
    hdr = (f"{'page':34} {'reqs':>5} {'err':>4} | {'client ms p50/p95/p99':>23} | {'server ms p50/p95/p99':>23} | "
           f"{'queries small/full/lead':>23} | {'HTML':>7} {'CSS':>7} {'JS':>7} {'total':>8}")
    print()
    print(hdr)
    print("-" * len(hdr))
    worst_server_p95 = 0.0
    growing = []
    for url in pages:
        c = lat.get(url, [])
        sv = server.get(url, [])
        worst_server_p95 = max(worst_server_p95, pct(sv, 95) if sv else float("inf"))
        html, css, js = weights[url]
        qs, qf, ql = small_q.get(url, -1), full_q.get(url, -1), lead_q.get(url, -1)
        if qf > qs:
            growing.append(f"{url} ({qs} -> {qf})")
        bad = [u for u, st in ((url, small_status.get(url)), (url, full_status.get(url))) if st != 200]
        print(f"{url[:34]:34} {len(c):5d} {errors.get(url, 0):4d} | "
              f"{pct(c, 50):7.1f}{pct(c, 95):8.1f}{pct(c, 99):8.1f} | "
              f"{pct(sv, 50):7.1f}{pct(sv, 95):8.1f}{pct(sv, 99):8.1f} | "
              f"{qs:7d}{qf:8d}{ql:8d} | {html:7d} {css:7d} {js:7d} {html + css + js:8d}"
              + ("  (status != 200 in-process)" if bad else ""))
    allc = [v for vs in lat.values() for v in vs]
    alls = [v for vs in server.values() for v in vs]
    print("-" * len(hdr))
    print(f"{'all':34} {total:5d} {total_err:4d} | {pct(allc, 50):7.1f}{pct(allc, 95):8.1f}{pct(allc, 99):8.1f} | "
          f"{pct(alls, 50):7.1f}{pct(alls, 95):8.1f}{pct(alls, 99):8.1f} |")
    print()
    print(f"throughput: {total / elapsed:.1f} requests/s over {elapsed:.1f} s ({args.users} users, gunicorn 3 workers x 2 threads, 2 cores shared with the client)")
    print("latency: client = wall time of requests on loopback (client in the same 2 cores); "
          "server = gunicorn access log %(D)s (time in the worker)")
    print("queries: small = 5 incidents / 10 checks / 10 deployments; full = 50 / 1,000 / 200 (viewer); lead = full, lead user")
    print("page weight: HTML of the page + the CSS and JS files it links (panels: their HTML fragment only)")
    print(f"queries growing with rows: {', '.join(growing) if growing else 'none'}")
    ok = worst_server_p95 < TARGET_P95_MS and total_err == 0 and not growing
    if moto is not None:
        moto.stop()
    sys.path.insert(0, str(ROOT / "bench"))
    from stack import figure, report

    worst_url = max(pages, key=lambda u: pct(server.get(u, []), 95) if server.get(u) else float("inf"))
    heaviest = max(pages, key=lambda u: sum(weights[u]))
    data = f"{50 * scale:,} open incidents, {1000 * scale:,} checks, {200 * scale:,} deployments, {days} d of rollups"
    report("pages", [
        figure(f"pages: worst server p95, {args.users} users ({data}; AWS {args.aws})", round(worst_server_p95, 1), "ms",
               TARGET_P95_MS, "<", f"worst: {worst_url}"),
        figure("pages: pages whose query count grows with the data", len(growing), "", 0, "<=", ", ".join(growing)),
        figure("pages: errors under load", total_err, "", 0),
        figure(f"pages: heaviest page weight ({heaviest})", round(sum(weights[heaviest]) / 1024, 1), "KiB"),
    ])
    print(f"target p95 < {TARGET_P95_MS:.0f} ms server side on every page: worst p95 {worst_server_p95:.1f} ms -> "
          f"{'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def run_load_with_epoch(base, users, pages, seconds):
    """run_load, with each request stamped so the access log lines can be told from warm-up ones."""
    import requests

    orig = requests.Session.request

    def stamped(self, method, url, **kw):
        headers = dict(kw.pop("headers", None) or {})
        headers["X-Bench-Epoch"] = f"{time.time():.3f}"
        return orig(self, method, url, headers=headers, **kw)

    requests.Session.request = stamped
    try:
        return run_load(base, users, pages, seconds)
    finally:
        requests.Session.request = orig


if __name__ == "__main__":
    sys.exit(main())
