"""Rollback quiet and under load on the production shape, measured from outside.

The stack is bench/stack.py's: gunicorn, the Procfile's `worker`, its `actions` worker and beat, on
PostgreSQL and Redis; AWS is the sandbox platform on a moto server in a process of its own. A rollback
is bench_rollback's round (bench/stack.py RollbackRounds): traffic put back on the other colour, then
POST /api/v1/environments/sandbox/rollback, timed until the listener, read through boto3 every
`--poll` seconds, shows 100 % on the old colour.

    .venv/bin/python bench/bench_rollback_load.py [--rollbacks 50] [--alerts 100000] [--checks 5000] [--clients 20]

On one stack, in order:

1. quiet: `--rollbacks` rollbacks with nothing else running but beat's own schedule;
2. load: `--checks` HTTP checks every 60 s start polling (10 % hanging until their 10 s timeout), then
   `--alerts` alerts in payloads of 100 (bench_intake's batched storm, a tenth of the payloads resent)
   from `--clients` concurrent clients; once the storm's first alerts are stored, `--rollbacks` more.

Prints p50/p95 of both; where each rollback's time went (the POST's answer, the request to its task
starting, the task to the listener switched) and which worker ran the tasks; the storm's alerts stored
per second during the rollbacks and how many rollbacks it overlapped; the health checks run meanwhile;
CPU per process group; the knobs; and the BENCH line for `make bench` (target p95 < 300 ms both times).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from stack import (  # noqa: E402
    RollbackFailed,
    RollbackRounds,
    Stack,
    batched_sends,
    check_target,
    cpu_spent,
    figure,
    http_checks_create,
    machine_cpu,
    percentile,
    report,
    run_queue_wait,
    send_all,
)

TAG = "Storm"
OWNERS = ("web", "worker", "actions", "beat", "moto", "postgres", "bench", "other")


class Storm:
    """bench_intake's batched alerts sent on a thread; `active()` while sent or not yet processed."""

    def __init__(self, stack: Stack, token: str, alerts: int, clients: int, bases: list[str]):
        self.stack, self.bases = stack, bases
        self.sends, self.payloads, self.groups = batched_sends(alerts, 100, TAG)
        self.result: tuple[float, list[float], list[str]] | None = None
        self.sent_at = 0.0
        self.thread = threading.Thread(target=self._send, args=(token, clients), daemon=True)

    def _send(self, token: str, clients: int) -> None:
        self.result = send_all(self.bases, token, self.sends, clients)
        self.sent_at = time.time()

    def start(self) -> None:
        self.thread.start()

    def stored(self) -> int:
        return self.stack.sql(f"SELECT count(*) FROM incidents_alert WHERE fingerprint LIKE '{TAG}%'")[0][0]

    def active(self) -> bool:
        pending = self.stack.sql("SELECT count(*) FROM incidents_alertdelivery WHERE status = 'pending'")[0][0]
        return self.thread.is_alive() or pending > 0

    def finish(self, timeout: float = 900) -> dict:
        self.thread.join(timeout)
        deadline = time.time() + timeout
        while self.active() and time.time() < deadline:
            time.sleep(0.5)
        q = lambda sql: self.stack.sql(sql)[0][0]  # noqa: E731
        last = q("SELECT max(processed_at) FROM incidents_alertdelivery")
        first, latencies, failures = self.result or (float("nan"), [], ["the sender did not finish"])
        stored = self.stored()
        distinct = q(f"SELECT count(DISTINCT fingerprint) FROM incidents_alert WHERE fingerprint LIKE '{TAG}%'")
        return {"first": first, "last_processed": last.timestamp() if last else float("nan"), "sent_at": self.sent_at,
                "latencies": latencies, "failures": failures, "stored": stored, "duplicated": stored - distinct,
                "incidents": q(f"SELECT count(*) FROM incidents_incident WHERE grouping_key LIKE '%{TAG}%'")}


TASK_DONE = re.compile(r"^\[(\S+ \S+): INFO/(ForkPoolWorker-\d+)\] Task deployments\.tasks\.rollback_run\[[0-9a-f-]+\] succeeded in ([0-9.]+)s",
                       re.MULTILINE)


def attribute(stack: Stack, rounds: list) -> list[str]:
    """Which process ran each round's rollback task, from the workers' own log lines (the one that ended
    within the round): `worker` or `actions`, its pool process, and * on that process's first one."""
    from datetime import datetime

    runs = []
    for name in ("worker0", "actions"):
        for at, child, _took in TASK_DONE.findall(stack.log(name)):
            when = datetime.strptime(at, "%Y-%m-%d %H:%M:%S,%f").timestamp()  # noqa: DTZ007 - the workers log local time
            runs.append((when, name.removesuffix("0"), child.rsplit("-", 1)[1]))
    runs.sort()
    seen: set = set()
    tagged = []
    for when, name, child in runs:
        tagged.append((when, f"{name}:{child}" + ("" if (name, child) in seen else "*")))
        seen.add((name, child))
    out = []
    for r in rounds:  # in order, each log line used once: a round's task may log just after the next round began
        while tagged and tagged[0][0] < r.started_at:
            tagged.pop(0)
        out.append(tagged.pop(0)[1] if tagged and tagged[0][0] <= r.finished_at + 0.5 else "?")
    return out


def breakdown(rounds: list) -> dict[str, list[float]]:
    """Per round, from the rollback's own row: POST -> request stored (the web tier), request -> its task's
    first pass (enqueue after commit, the broker, a free worker), that pass -> listener switched (AWS and
    the database in the worker, to its own read-back), that read-back -> seen by the bench (the listener poll;
    below 0 when the bench read the change before the worker's read-back returned)."""
    from deployments.models import Rollback

    rows = {str(r.public_id): r for r in Rollback.objects.filter(public_id__in=[x.rollback for x in rounds])}
    out: dict[str, list[float]] = {"POST answered": [], "POST -> request stored": [], "request -> task running": [],
                                   "task -> listener switched": [], "read back -> seen": []}
    for x in rounds:
        rb = rows[x.rollback]
        requested, task, switched = rb.requested_at.timestamp(), rb.capacity_ready_at.timestamp(), rb.switched_at.timestamp()
        out["POST answered"].append(x.post_seconds)
        out["POST -> request stored"].append(requested - x.started_at)
        out["request -> task running"].append(task - requested)
        out["task -> listener switched"].append(switched - task)
        out["read back -> seen"].append(x.started_at + x.seconds - switched)
    return out


def ms(v: float) -> str:
    return f"{v * 1000:.0f}"


def summary(label: str, rounds: list, ran_on: list[str]) -> None:
    if not rounds:
        print(f"[{label}] no rollback went through")
        return
    secs = [r.seconds for r in rounds]
    parts = breakdown(rounds)
    print(f"[{label}] {len(rounds)} rollbacks, POST -> listener 100 % on the old colour: p50 {ms(percentile(secs, .5))} ms, "
          f"p95 {ms(percentile(secs, .95))} ms, max {ms(max(secs))} ms")
    print(f"[{label}]   each in ms, total ({' / '.join(parts)}) and the process that ran the task "
          "(* its first rollback):")
    each = [f"{ms(r.seconds)} ({' / '.join(ms(v[i]) for v in parts.values())}) {ran_on[i]}" for i, r in enumerate(rounds)]
    for i in range(0, len(each), 4):
        print(f"[{label}]     " + ", ".join(each[i:i + 4]))
    for name, values in parts.items():
        print(f"[{label}]   {name:26s} p50 {ms(percentile(values, .5)):>5} ms   p95 {ms(percentile(values, .95)):>5} ms   "
              f"max {ms(max(values)):>5} ms")


class Window:
    """The machine's CPU over a stretch of the run: how busy its cores were and who spent it."""

    WAITERS = ("web", "actions", "moto")  # the processes a rollback goes through

    def __init__(self, stack: Stack):
        self.stack, self.t0, self.machine0, self.snap0 = stack, time.time(), machine_cpu(), stack.cpu_snapshot()
        self.wait0 = {g: run_queue_wait(stack.pids(g)) for g in self.WAITERS}

    def end(self) -> None:
        self.seconds, machine1 = time.time() - self.t0, machine_cpu()
        self.spent = cpu_spent(self.snap0, self.stack.cpu_snapshot())
        self.busy = (machine1[0] - self.machine0[0]) / max(1e-9, machine1[1] - self.machine0[1])
        self.waited = {g: run_queue_wait(self.stack.pids(g)) - self.wait0[g] for g in self.WAITERS}

    def __str__(self) -> str:
        return (f"CPU over {self.seconds:.1f} s: the cores {100 * self.busy:.0f} % busy; CPU seconds "
                + ", ".join(f"{k} {self.spent.get(k, 0.0):.1f}" for k in OWNERS)
                + "; waited for a core (s): " + ", ".join(f"{k} {v:.2f}" for k, v in self.waited.items()))


class Connections:
    """The most connections the stack's database had at once, sampled every half second on a thread."""

    def __init__(self, stack: Stack):
        import psycopg

        self.conn = psycopg.connect(stack.dsn.replace("postgres://", "postgresql://"), autocommit=True)
        self.stack, self.db, self.most, self.holders = stack, stack.db, 0, {}
        self.limit = int(self.conn.execute("SHOW max_connections").fetchone()[0])
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopped.wait(0.5):
            n = self.conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.db]).fetchone()[0]
            if n > self.most:
                self.most, self.holders = n, self.stack.db_connections()

    def take(self) -> tuple[int, dict[str, int]]:
        """The most since the last take, and which processes held them then."""
        most, holders, self.most, self.holders = self.most, self.holders, 0, {}
        return most, holders

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()
        self.conn.close()


def rounds_of(rollbacks: RollbackRounds, first: int, count: int, failures: list[str], after=None, give_up: int = 3) -> list:
    """`count` rounds from round number `first`; a failed one is noted in `failures` and the next goes on,
    until `give_up` fail in a row (a rollback left stuck refuses every next one)."""
    out: list = []
    in_row = 0
    for n in range(first, first + count):
        try:
            out.append(rollbacks.run(n))
        except RollbackFailed as exc:
            failures.append(str(exc))
            print(f"  {exc}", flush=True)
            in_row += 1
            if in_row >= give_up:
                print(f"  gave up after {give_up} failed rollbacks in a row ({first + count - n - 1} not tried)", flush=True)
                break
            continue
        in_row = 0
        if after is not None:
            after(out[-1])
    return out


def calm(stack: Stack, *, below: float = 0.15, most: float = 45) -> float:
    """Wait until the stack's processes use less than `below` of a core over a second (its start-up work,
    beat's first ticks and the seeded simulations, done), at most `most` seconds; returns the wait."""
    t0 = time.time()
    while time.time() - t0 < most:
        before = sum(stack.cpu_seconds(g) for g in OWNERS[:5])
        time.sleep(1.0)
        if sum(stack.cpu_seconds(g) for g in OWNERS[:5]) - before < below:
            break
    return time.time() - t0


def os_threads(stack: Stack, prefix: str) -> list[int]:
    """OS threads of each process of the groups named `prefix*` (a prefork child holds its check pool)."""
    out = []
    for pid in stack.pids(prefix):
        try:
            found = re.search(r"Threads:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
        except OSError:  # gone meanwhile
            continue
        out.append(int(found.group(1)) if found else 0)
    return sorted(out, reverse=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rollbacks", type=int, default=50, help="rollbacks quiet, and as many under load")
    ap.add_argument("--alerts", type=int, default=100_000, help="the storm: alerts in payloads of 100")
    ap.add_argument("--clients", type=int, default=20, help="the storm's concurrent clients")
    ap.add_argument("--checks", type=int, default=5000, help="HTTP checks polling every --interval s")
    ap.add_argument("--hanging", type=float, default=0.10)
    ap.add_argument("--interval", type=int, default=60)
    ap.add_argument("--timeout", type=float, default=10.0, help="the checks' timeout (the hanging ones hang 5 s longer)")
    ap.add_argument("--poll", type=float, default=0.05, help="seconds between the bench's listener reads")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds of polling before the storm starts")
    ap.add_argument("--threads", type=int, default=4, help="gunicorn threads a web process")
    ap.add_argument("--web-workers", type=int, default=None, help="gunicorn processes (default: the Procfile's)")
    ap.add_argument("--check-threads", type=int, default=None, help="HEALTH_POLL_THREADS (default: the portal's)")
    ap.add_argument("--worker-queues", default=None,
                    help="the `worker` process's queues instead of the Procfile's (e.g. default,polling: actions to `actions` alone)")
    ap.add_argument("--worker-nice", type=int, default=0,
                    help="start the `worker` process under `nice -n N` (intake and polling below web and `actions` for the CPU)")
    ap.add_argument("--intake-web", action="store_true",
                    help="the storm on a web process of its own (as a load balancer rule for /api/v1/alerts/* would route it)")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/9")
    ap.add_argument("--db", default="portal_bench_rollback_load")
    args = ap.parse_args()

    extra = {"AWS_EC2_METADATA_DISABLED": "true"}
    if args.check_threads:
        extra["HEALTH_POLL_THREADS"] = str(args.check_threads)
    stack = Stack(db=args.db, redis=args.redis, webs=2 if args.intake_web else 1, workers=1, beats=1, web_workers=args.web_workers,
                  threads=args.threads, env=extra, worker_queues=args.worker_queues,
                  worker_nice=args.worker_nice)
    os.environ.update(stack.env)  # this process reads and writes the stack's database through Django
    with stack:
        import django

        django.setup()  # once the stack made its database: an app's start-up reads it
        from django.db import close_old_connections
        from django.utils import timezone

        from portal.health.models import CheckResult

        env, endpoint = stack.sandbox()
        session = requests.Session()
        headers = {"Authorization": f"Bearer {stack.token('actions')}"}
        url = f"{stack.base_urls[0]}/api/v1/environments/{env.name}/rollback"

        def post(reason: str) -> tuple[int, str]:
            r = session.post(url, json={"reason": reason}, headers=headers, timeout=60)
            return r.status_code, r.text

        rollbacks = RollbackRounds(env, post, poll=args.poll)
        knobs = stack.knobs()
        waited = calm(stack)
        print(f"stack up: {stack.base_urls[0]}, AWS sandbox on moto at {endpoint} (its own process); its start-up work "
              f"done after {waited:.0f} s", flush=True)

        connections = Connections(stack)
        failed: dict[str, list[str]] = {"quiet": [], "load": []}
        quiet_cpu = Window(stack)
        quiet = rounds_of(rollbacks, 0, args.rollbacks, failed["quiet"])
        quiet_cpu.end()
        quiet_connections = connections.take()
        summary("quiet", quiet, attribute(stack, quiet))
        print(f"[quiet] {quiet_cpu}", flush=True)

        target, port = check_target(args.timeout + 5)
        try:
            hang_ids = http_checks_create(checks=args.checks, hanging=args.hanging, port=port, interval=args.interval,
                                          timeout=args.timeout)
            print(f"[load] {args.checks:,} HTTP checks every {args.interval} s ({len(hang_ids)} hanging past their "
                  f"{args.timeout:g} s timeout); {args.settle:g} s of polling before the storm", flush=True)
            time.sleep(args.settle)
            storm = Storm(stack, stack.token("alerts:write"), args.alerts, args.clients,
                          stack.base_urls[-1:] if args.intake_web else stack.base_urls)
            storm.start()
            while storm.stored() == 0 and storm.thread.is_alive():
                time.sleep(0.1)
            close_old_connections()
            load_cpu = Window(stack)
            w0, stored0 = time.time(), storm.stored()
            window_from = timezone.now()
            connections.take()
            during: list[bool] = []
            load = rounds_of(rollbacks, args.rollbacks, args.rollbacks, failed["load"],
                             after=lambda _: during.append(storm.active()))
            w1, stored1 = time.time(), storm.stored()
            most_connections = {"quiet": quiet_connections, "load": connections.take()}
            window_to = timezone.now()
            load_cpu.end()
            results = CheckResult.objects.filter(created_at__gte=window_from, created_at__lte=window_to,
                                                 check_obj__environment__name="bench-health-local").count()
            threads = os_threads(stack, "worker")
            print("[load] the rollbacks are done; the storm runs to its end ...", flush=True)
            # A stack that stopped answering (rollbacks gave up) does not finish its storm either.
            s = storm.finish(timeout=30 if len(load) < args.rollbacks else 600)
        finally:
            target.terminate()
            connections.stop()
        refused = sum(stack.log(name).count("too many clients") + stack.log(name).count("remaining connection slots")
                      for name, _ in stack.procs)
        ran_on = attribute(stack, quiet + load)
        summary("load", load, ran_on[len(quiet):])

    window = w1 - w0
    overlapped = sum(1 for r, busy in zip(load, during, strict=True) if busy and r.started_at >= s["first"])
    while_sending = sum(1 for r in load if r.started_at < s["sent_at"])
    rate = (stored1 - stored0) / window
    expected = args.checks * window / args.interval
    storm_took = s["last_processed"] - s["first"]
    print(f"[load] storm: {args.alerts:,} alerts in {storm.payloads:,} payloads (+{len(storm.sends) - storm.payloads} resent) "
          f"from {args.clients} clients; stored {s['stored']:,}, duplicated {s['duplicated']}, incidents {s['incidents']} "
          f"(expected {storm.groups}), failed sends {len(s['failures'])}" + (f" e.g. {s['failures'][0][:120]}" if s["failures"] else ""))
    print(f"[load] storm: first send to last delivery processed {storm_took:.1f} s (sending took {s['sent_at'] - s['first']:.1f} s); "
          f"webhook p50 {ms(percentile(s['latencies'], .5))} ms, p99 {ms(percentile(s['latencies'], .99))} ms")
    print(f"[load] during the {window:.1f} s of rollbacks: {stored1 - stored0:,} storm alerts stored ({rate:,.0f}/s; "
          f"{stored0:,} before, {s['stored'] - stored1:,} after), the storm still running at the end of {overlapped} "
          f"of {len(load)} rollbacks ({while_sending} of them started while its webhooks were still being sent)")
    print(f"[load] during the rollbacks: {results:,} health check results stored ({results / window:.1f}/s; the schedule asks "
          f"{expected / window:.1f}/s)")
    print(f"rollback tasks run by `worker`: {sum(r.startswith('worker') for r in ran_on)} of {len(ran_on)}; "
          f"by `actions`: {sum(r.startswith('actions') for r in ran_on)}")
    print(f"[load] {load_cpu}; OS threads of `worker`'s processes {threads}")
    held = {phase: f"{n} ({', '.join(f'{g} {k}' for g, k in sorted(by.items(), key=lambda x: -x[1]) if k)})"
            for phase, (n, by) in most_connections.items()}
    print(f"database connections at most (and which processes held them): quiet {held['quiet']}, under load {held['load']}; "
          f"max_connections {connections.limit}; connections refused in the stack's logs: {refused}")
    for phase, errors in failed.items():
        if errors:
            print(f"[{phase}] {len(errors)} rollbacks failed, e.g. {errors[0]}")
    web = knobs["web"]
    workers = "; ".join(f"`{name.split('-')[0]}` queues {w['queues']}, {w['pool']} x{w['concurrency']}, prefetch {w['prefetch']}"
                        for name, w in knobs["workers"].items())
    knob_line = (f"web {web['processes']}{' (the storm on the second)' if args.intake_web else ''} x gunicorn {web['workers']} processes x {web['threads']} threads; {workers}; "
                 + (f"`worker` at nice {args.worker_nice}; " if args.worker_nice else "")
                 + f"check threads HEALTH_POLL_THREADS {args.check_threads or 'default'} a worker process; "
                 f"listener read every {args.poll * 1000:.0f} ms")
    print(f"knobs: {knob_line}")

    quiet_s, load_s = [r.seconds for r in quiet], [r.seconds for r in load]
    where = "PostgreSQL + Redis, production shape"
    under = f"{args.alerts:,}-alert storm + {args.checks:,} checks polling"
    def at(values: list[float], q: float) -> float:  # ms, nan when no round went through
        v = percentile(values, q)
        return round(v * 1000) if v == v else v

    report("rollback-load", [
        figure(f"rollback POST to listener 100 % on old colour, p95 of {len(quiet)}, quiet ({where})",
               at(quiet_s, .95), "ms", 300, "<", knob_line),
        figure(f"rollback p95 of {len(load)} during a {under}", at(load_s, .95), "ms", 300, "<", knob_line),
        figure("rollback p50, quiet", at(quiet_s, .5), "ms"),
        figure(f"rollback p50 during a {under}", at(load_s, .5), "ms"),
        figure("storm alerts stored per second during the rollbacks", round(rate), "/s"),
        figure("rollbacks that failed (refused, or the listener never read back), quiet + under load",
               len(failed["quiet"]) + len(failed["load"]), "", 0, "==",
               "; ".join(x for x in [(failed["quiet"] + failed["load"] + [""])[0][:160],
                                     f"PostgreSQL refused {refused} connections (too many clients)" if refused else ""] if x)),
        figure(f"rollbacks of {args.rollbacks} that went through and ended while the storm still ran", overlapped, "",
               args.rollbacks, ">="),
        figure("health check results during the rollbacks, % of the schedule", round(100 * results / max(1, expected), 1), "%"),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
