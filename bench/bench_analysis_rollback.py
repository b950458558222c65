"""From the start of an error drill on a canary's new colour to the listener read back at 100 % on the
old colour: p50/p95 over N drills (issue 19's goal: under the analysis interval + 5 s).

Everything is real except AWS: a moto server on a free 127.0.0.1 port with the sandbox platform built,
the sandbox's traffic simulator writing CloudWatch metrics every second in a thread, a throwaway SQLite
database, a Celery worker thread consuming the `actions` queue from an in-memory broker, the beat's
driver task called every half second, and the deployment started through the API. Each round: a
canary (the seeded `canary-quick` strategy, its `sandbox-quick` template) reaches its 5 % hold and one
clean analysis run; then an error drill starts on the new colour and the clock runs until the bench,
reading the listener itself, sees 100 % on the old colour. Between rounds the drilled minute ages out
of the analysis window (ALB metrics have one-minute resolution).

    .venv/bin/python bench/bench_analysis_rollback.py [--drills 20] [--rps 200] [--level 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PORTAL_ENV", "test")
os.environ["PORTAL_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-analysis-")
os.environ["DATABASE_URL"] = ""
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
    parser.add_argument("--drills", type=int, default=20)
    parser.add_argument("--rps", type=float, default=200.0, help="the simulator's traffic (requests/s over both colours)")
    parser.add_argument("--level", type=float, default=30.0, help="the drill's error rate on the new colour (%)")
    parser.add_argument("--cool", type=float, default=65.0, help="seconds for a drilled minute to leave the window")
    args = parser.parse_args()

    settings.ALLOWED_HOSTS = ["*"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SANDBOX_MIN_RPS = args.rps
    settings.SANDBOX_INTERVAL_SECONDS = 1.0
    settings.DEPLOYMENTS_ROLLBACK_POLL_SECONDS = 0.1
    settings.DEPLOYMENTS_WEIGHT_READBACK_DELAY = 0.1
    settings.DEPLOYMENTS_POLL_SECONDS = 0.5
    call_command("migrate", verbosity=0)

    import random

    from celery.contrib.testing.worker import start_worker
    from moto.server import ThreadedMotoServer

    from deployments.models import AnalysisTemplate, Deployment
    from deployments.tasks import deployments_drive
    from portal.accounts.services import api_token_create, user_create_or_update
    from portal.celery import app
    from portal.cloud import aws
    from portal.incidents.models import Incident
    from portal.incidents.services import incident_resolve
    from portal.sandbox import simulator
    from portal.sandbox.patches import install_moto_patches
    from portal.sandbox.platform import build_platform, register_environment
    from portal.sandbox.services import drill_start, drill_stop
    from tests.plugins.aws import free_port, plan_phase_bounds

    install_moto_patches()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    names = build_platform(endpoint_url=endpoint, phase=plan_phase_bounds())
    env = register_environment(names, endpoint_url=endpoint)
    call_command("seed_defaults", verbosity=0)  # phases, thresholds, strategies and their templates
    template = AnalysisTemplate.objects.get(slug="sandbox-quick")
    lead, _ = user_create_or_update(username="bench-lead", role="lead", password="bench-lead-password-1", validate=False)
    _, token = api_token_create(name="bench-analysis", scope="actions")
    http = Client()
    headers = {"Authorization": f"Bearer {token}"}

    app.conf.task_always_eager = False
    app.conf.broker_url = "memory://"
    app.conf.broker_transport_options = {"polling_interval": 0.05}
    app.conf.result_backend = "cache+memory://"

    stop = threading.Event()

    def traffic():
        rng = random.Random(5)
        while not stop.is_set():
            t = time.monotonic()
            try:
                simulator.tick(env, rng=rng, interval=1.0)
            except Exception as exc:  # noqa: BLE001 - a bench keeps going; the round that suffers says so
                print(f"simulator tick failed: {exc}", file=sys.stderr)
            stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    def driver():
        while not stop.is_set():
            try:
                deployments_drive.apply()
            except Exception as exc:  # noqa: BLE001
                print(f"driver failed: {exc}", file=sys.stderr)
            stop.wait(0.5)

    threads = [threading.Thread(target=traffic, daemon=True), threading.Thread(target=driver, daemon=True)]
    results: list[float] = []
    causes: list[str] = []
    with start_worker(app, pool="solo", concurrency=1, perform_ping_check=False, loglevel="WARNING", shutdown_timeout=10):
        for t in threads:
            t.start()
        time.sleep(3)  # traffic on the live colour before the first rollout
        for n in range(args.drills):
            r = http.post("/api/v1/deployments", data={"environment": env.name, "version": f"bench-{n}-{time.time_ns()}",
                                                       "strategy": "canary-quick", "launch_template_version": "$Latest"},
                          content_type="application/json", headers=headers)
            if r.status_code != 201:
                raise SystemExit(f"round {n}: HTTP {r.status_code} {r.content[:300]!r}")
            dep = Deployment.objects.get(public_id=r.json()["id"])
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                dep.refresh_from_db()
                if dep.state == "holding" and dep.analyses.exists():
                    break
                if dep.state not in ("pending", "preparing", "smoke", "shifting", "holding"):
                    raise SystemExit(f"round {n}: the canary went {dep.state} before the drill ({dep.failure_reason})")
                time.sleep(0.05)
            else:
                raise SystemExit(f"round {n}: never reached its first analysis run")
            old = dep.from_colour
            t0 = time.perf_counter()
            drill = drill_start(environment=env, kind="error-rate", colour=dep.to_colour, level=args.level, minutes=5, actor=lead)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if aws.get_listener_weights(env).get(old) == 100:
                    results.append(time.perf_counter() - t0)
                    break
                time.sleep(0.05)
            else:
                raise SystemExit(f"round {n}: listener never showed 100 % on {old}")
            drill_stop(drill=drill, actor=lead)
            while time.monotonic() < deadline and Deployment.objects.filter(pk=dep.pk, state="rolling_back").exists():
                time.sleep(0.05)
            dep.refresh_from_db()
            rb = dep.rollbacks.first()
            causes.append(rb.reason if rb else dep.failure_reason)
            print(f"  drill {n + 1}: {results[-1]:.2f} s ({causes[-1][:110]})", flush=True)
            # The rollback's incident freezes the environment until a person resolves it: the bench is that person.
            for incident in Incident.objects.exclude(status="resolved"):
                incident_resolve(incident=incident, actor=lead, reason="bench round over")
            time.sleep(args.cool)
        stop.set()
    server.stop()

    interval = template.interval_seconds
    p50, p95 = statistics.median(results), percentile(results, 95)
    print(f"AWS: moto server at {endpoint}; simulator {args.rps:g} requests/s (5 % step: {args.rps * 0.05:g}/s on the new colour), "
          f"drill {args.level:g} % errors on it; template {template.slug}: interval {interval} s, failure limit "
          f"{template.failure_limit}, alpha {template.alpha:g} per step; driver every 0.5 s, one worker thread")
    print(f"error drill on the new colour -> listener read back 100 % on the old colour, {len(results)} drills:")
    print(f"  p50 {p50:.2f} s   p95 {p95:.2f} s   min {min(results):.2f} s   max {max(results):.2f} s   "
          f"(goal p95 < interval + 5 s = {interval + 5} s: {'met' if p95 < interval + 5 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
