"""Sandbox bench: can the simulator keep its interval, and how fast does the portal read metrics
when moto holds an hour of them?

    .venv/bin/python bench/bench_cloud.py [--ticks 720] [--interval 5]

Starts moto (with the sandbox's patches) in its own process on a free 127.0.0.1 port, builds the
platform, runs `--ticks` simulator ticks with simulated time advancing `--interval` seconds each
(720 x 5 s = one hour of metrics), then times the portal's reads. Uses a throwaway SQLite
database under a temp dir. Exit status 1 when a tick's p95 exceeds the interval or the p95 of a
5-minute metric read exceeds 2 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PORTAL_DATA_DIR", tempfile.mkdtemp(prefix="bench-cloud-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values)) - 1))]


def timed(fn, repeat=5):
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=720)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from portal.cloud import aws
    from portal.cloud.metrics import CloudWatchSource
    from portal.sandbox.platform import build_platform, register_environment
    from portal.sandbox.simulator import tick
    from tests.plugins.aws import _wait_for_port, free_port, plan_phase_bounds

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "portal.sandbox.moto_process", "--port", str(port)], cwd=str(ROOT),  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        endpoint = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        names = build_platform(endpoint_url=endpoint, phase=plan_phase_bounds())
        build_s = time.perf_counter() - t0
        env = register_environment(names, endpoint_url=endpoint)
        aws.set_desired_capacity(env, "green", 2)
        aws.set_listener_weights(env, {"blue": 90, "green": 10})

        rng = random.Random(7)
        start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=args.interval * args.ticks)
        durations = []
        for i in range(args.ticks):
            t = time.perf_counter()
            tick(env, now=start + dt.timedelta(seconds=args.interval * i), rng=rng, interval=args.interval)
            durations.append(time.perf_counter() - t)

        src = CloudWatchSource(env)
        reads = {
            "error_rate(green, 5 min)": timed(lambda: src.error_rate("green", 5)),
            "p95_latency(None, 5 min)": timed(lambda: src.p95_latency(None, 5)),
            "cpu(None, 5 min)": timed(lambda: src.cpu(None, 5)),
            "series(requests, 60 min, 60 s)": timed(lambda: src.series("requests", None, 60, 60)),
            "describe_groups": timed(lambda: aws.describe_groups(env)),
            "get_listener_weights": timed(lambda: aws.get_listener_weights(env)),
        }
        # weights -> metrics: one tick after a change, CloudWatch shows the new split
        aws.set_listener_weights(env, {"blue": 0, "green": 100})
        after = tick(env, rng=rng, interval=args.interval)
    finally:
        proc.terminate()
        proc.wait(10)

    print(f"platform built in {build_s:.1f} s")
    print(f"ticks: {len(durations)} (simulated {args.ticks * args.interval / 60:.0f} min); "
          f"p50 {statistics.median(durations) * 1000:.0f} ms, p95 {pct(durations, 95) * 1000:.0f} ms, "
          f"max {max(durations) * 1000:.0f} ms (interval {args.interval * 1000:.0f} ms)")
    for name, values in reads.items():
        print(f"{name:34s} p50 {statistics.median(values) * 1000:7.0f} ms   max {max(values) * 1000:7.0f} ms")
    print(f"after switching to green 100: blue requests {after.requests['blue']}, green {after.requests['green']}")
    failed = pct(durations, 95) > args.interval or pct(reads["error_rate(green, 5 min)"], 95) > 2.0 \
        or after.requests["blue"] != 0
    print("FAIL" if failed else "OK")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
