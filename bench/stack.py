"""The production shape, started on this machine: gunicorn, the Procfile's Celery workers and beat, on
PostgreSQL and Redis, each in its own process group (stopped on exit, also on Ctrl-C or an error).

    with Stack(db="portal_bench_x", redis="redis://127.0.0.1:6379/2", webs=1, workers=1) as stack:
        stack.base_urls        # one per web process
        stack.token("alerts:write")
        stack.sql("SELECT count(*) FROM incidents_incident")

The commands are the Procfile's (`web`, `worker`, `actions`, `beat`), with the knobs the benches vary
(`webs` web processes, `workers` worker processes, each as Compose's `--scale` would run them).
Every bench prints one `BENCH {json}` line for `make bench` (bench/run_all.py), via `report()`.

The loads and probes the benches share live here too: Alertmanager payloads and the concurrent sender
(`alertmanager_payload`, `batched_sends`, `send_all`), HTTP checks against a local target with some
hanging (`check_target`, `http_checks_create`), the sandbox platform on moto (`moto_sandbox` in this
process, `Stack.sandbox` in a process of the stack's) and the rollback round (`RollbackRounds`).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
BIN = ROOT / ".venv" / "bin"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q * (len(ordered) - 1)))))]


def report(name: str, figures: list[dict]) -> None:
    """The line bench/run_all.py reads: each figure is {name, value, unit, target, op, met}."""
    print("BENCH " + json.dumps({"bench": name, "figures": figures}), flush=True)


def figure(name: str, value: float, unit: str, target: float | None = None, op: str = "<=", note: str = "") -> dict:
    met = None
    if target is not None and value == value:  # nan is never met
        met = {"<=": value <= target, "<": value < target, ">=": value >= target, ">": value > target}.get(op, value == target)
    elif target is not None:
        met = False
    return {"name": name, "value": value, "unit": unit, "target": target, "op": op, "met": met, "note": note}


def procfile() -> dict[str, list[str]]:
    """The Procfile's commands by process name, split as a shell would (variables at their defaults)."""
    out = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if ":" not in line or line.startswith("#"):
            continue
        name, cmd = line.split(":", 1)
        words = []
        for w in shlex.split(cmd):
            if w.startswith("${") and ":-" in w:
                w = w[w.index(":-") + 2:-1]
            words.append(w)
        out[name.strip()] = words
    return out


class Stack:
    def __init__(self, *, db: str, redis: str, webs: int = 1, workers: int = 1, beats: int = 0, actions: bool = True,
                 web_workers: int | None = None, threads: int = 4, env: dict | None = None, seed: bool = True,
                 worker_queues: str | None = None, worker_nice: int = 0):
        self.db, self.redis, self.webs, self.workers, self.beats, self.actions = db, redis, webs, workers, beats, actions
        self.web_workers, self.threads, self.worker_queues, self.worker_nice = web_workers, threads, worker_queues, worker_nice
        self.dsn = f"postgres://postgres@127.0.0.1:5432/{db}"
        self.data = Path(tempfile.mkdtemp(prefix="bench-stack-"))
        self.env = dict(os.environ, DATABASE_URL=self.dsn, CELERY_BROKER_URL=redis, CELERY_RESULT_BACKEND=redis,
                        PORTAL_ENV="development", DEBUG="false", LOG_LEVEL="WARNING", AXES_ENABLED="false",
                        PORTAL_DATA_DIR=str(self.data), DJANGO_SETTINGS_MODULE="portal.settings", **(env or {}))
        self.env["PATH"] = f"{BIN}:{self.env.get('PATH', '')}"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.base_urls: list[str] = []
        self.seed = seed
        self.web_cmd: list[str] = []
        self._sql = None

    # -- setup
    def manage(self, *args: str) -> str:
        return subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=self.env, check=True, capture_output=True, text=True).stdout

    def token(self, scope: str) -> str:
        return self.manage("create_api_token", "--name", f"bench-{scope}", "--scope", scope).strip().splitlines()[-1]

    def sql(self, query: str, params=None):
        if self._sql is None:
            self._sql = psycopg.connect(self.dsn.replace("postgres://", "postgresql://"), autocommit=True)
        return self._sql.execute(query, params).fetchall()

    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen:
        log = open(self.data / f"{name}.log", "w")
        p = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((name, p))
        return p

    def __enter__(self) -> Stack:
        admin = psycopg.connect(PG_ADMIN, autocommit=True)
        admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{self.db}"')
        admin.close()
        import redis as redis_lib

        redis_lib.Redis.from_url(self.redis).flushdb()
        self.manage("migrate", "--noinput", "-v0")
        if self.seed:
            self.manage("seed_defaults")
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def start(self) -> None:
        cmds = procfile()
        for i in range(self.webs):
            port = free_port()
            web = [*cmds["web"]]
            web[web.index("--bind") + 1] = f"127.0.0.1:{port}"
            if self.web_workers is not None:
                web[web.index("--workers") + 1] = str(self.web_workers)
            web += ["--threads", str(self.threads), "--log-level", "warning"]
            if "--access-logfile" in web:
                web[web.index("--access-logfile") + 1] = str(self.data / f"access-{i}.log")
            self._spawn(f"web{i}", web)
            self.web_cmd = web
            self.base_urls.append(f"http://127.0.0.1:{port}")
        worker = [*cmds["worker"]]
        if self.worker_queues:  # a bench trying another split of the queues than the Procfile's
            worker[worker.index("-Q") + 1] = self.worker_queues
        if self.worker_nice:  # ... or the worker below the other processes for the CPU (`nice -n N` before it)
            worker = ["nice", "-n", str(self.worker_nice), *worker]
        for i in range(self.workers):
            self._spawn(f"worker{i}", [*worker, "-n", f"worker{i}-{os.getpid()}@127.0.0.1", "--without-gossip", "--without-mingle"])
        if self.actions:
            cmd = [w for w in cmds["actions"] if not w.startswith("actions@")]
            cmd = [w for i, w in enumerate(cmd) if not (w == "-n")]
            self._spawn("actions", [*cmd, "-n", f"actions-{os.getpid()}@127.0.0.1", "--without-gossip", "--without-mingle"])
        for i in range(self.beats):
            self._spawn(f"beat{i}", [*cmds["beat"], "--loglevel", "WARNING"])
        for base in self.base_urls:
            wait_http(base + "/healthz")
        self.wait_workers()

    def wait_workers(self, timeout: float = 120) -> None:
        """Until every worker answers a ping (a cold worker imports the whole portal first)."""
        from celery import Celery

        app = Celery("bench", broker=self.redis, backend=self.redis)
        want = self.workers + (1 if self.actions else 0)
        deadline = time.time() + timeout
        while time.time() < deadline:
            replies = app.control.ping(timeout=1.0) or []
            if len(replies) >= want:
                return
            for name, p in self.procs:
                if p.poll() is not None:
                    raise SystemExit(f"{name} exited: {(self.data / f'{name}.log').read_text()[-2000:]}")
        raise SystemExit(f"only some of {want} workers answered a ping within {timeout:.0f} s")

    def sandbox(self, name: str = "sandbox"):
        """The sandbox platform on a moto server in a process of the stack's (`moto`: stopped with the rest,
        its CPU apart), as AWS is apart from the portal; the caller has Django set up on this stack's
        database. Returns (environment, endpoint)."""
        port = free_port()
        self._spawn("moto", [PY, "-m", "portal.sandbox.moto_process", "--port", str(port)])
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(endpoint + "/moto-api/")
        return sandbox_platform(endpoint, name), endpoint

    def knobs(self) -> dict:
        """What the running processes were started with: gunicorn's processes and threads (its command
        line) and each Celery worker's queues, pool, concurrency and prefetch (as the worker reports them)."""
        from celery import Celery

        def arg(flag: str, default: str) -> str:
            return self.web_cmd[self.web_cmd.index(flag) + 1] if flag in self.web_cmd else default

        app = Celery("bench", broker=self.redis, backend=self.redis)
        inspect = app.control.inspect(timeout=2)
        stats, queues = inspect.stats() or {}, inspect.active_queues() or {}
        workers = {}
        for host, st in sorted(stats.items()):
            workers[host.split("@")[0]] = {
                "queues": ",".join(q["name"] for q in queues.get(host, [])),
                "pool": st["pool"]["implementation"].split(":")[0].rsplit(".", 1)[-1],
                "concurrency": st["pool"].get("max-concurrency"), "prefetch": st.get("prefetch_count")}
        return {"web": {"processes": self.webs, "workers": int(arg("--workers", "1")), "threads": int(arg("--threads", "1"))},
                "workers": workers}

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self._sql is not None:
            self._sql.close()
            self._sql = None
        for _, p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for _, p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        self.procs.clear()

    def log(self, name: str) -> str:
        return (self.data / f"{name}.log").read_text(errors="replace")

    def cpu_seconds(self, prefix: str) -> float:
        """User+system CPU of the processes named `prefix*` and their children, from /proc (Linux)."""
        total = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for name, p in self.procs:
            if not name.startswith(prefix):
                continue
            for pid in group_pids(p.pid):
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / tick
                except (OSError, IndexError, ValueError):
                    continue
        return total

    def pids(self, prefix: str) -> list[int]:
        """The processes of the groups named `prefix*` (a worker's pool processes with it)."""
        return [pid for name, p in self.procs if name.startswith(prefix) for pid in group_pids(p.pid)]

    def db_connections(self) -> dict[str, int]:
        """Open TCP connections to PostgreSQL (port 5432) held by each process group of the stack's
        (`web`, `worker`, ...), from /proc/net/tcp and each process's file descriptors (Linux)."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[2].endswith(":1538") and fields[3] == "01":  # remote port 5432, ESTABLISHED
                    inodes.add(fields[9])
        out: dict[str, int] = {}
        for name, p in self.procs:
            group = name.rstrip("0123456789")
            for pid in group_pids(p.pid):
                try:
                    links = [os.readlink(f) for f in Path(f"/proc/{pid}/fd").iterdir()]
                except OSError:
                    continue
                out[group] = out.get(group, 0) + sum(1 for link in links if link.startswith("socket:[") and link[8:-1] in inodes)
        return out

    def cpu_snapshot(self) -> dict[int, tuple[str, float]]:
        """CPU seconds so far of every process on the machine, by whose it is: a group of the stack's
        (`web`, `worker`, `actions`, `beat`, `moto`), `postgres` (a backend on this stack's database),
        `bench` (this process) or `other` (the rest of the machine). Two snapshots go to cpu_spent()."""
        groups = {p.pid: name.rstrip("0123456789") for name, p in self.procs}
        tick = os.sysconf("SC_CLK_TCK")
        out = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                owner = groups.get(int(fields[2]))
                if owner is None:
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    owner = ("bench" if int(entry.name) == os.getpid() else
                             "postgres" if cmd.startswith("postgres:") and f" {self.db} " in cmd else "other")
                out[int(entry.name)] = (owner, (int(fields[11]) + int(fields[12])) / tick)
            except (OSError, IndexError, ValueError):
                continue
        return out


def run_queue_wait(pids: list[int]) -> float:
    """Seconds the threads of these processes have spent runnable but waiting for a core, from
    /proc/<pid>/task/*/schedstat (Linux): the time CPU contention added to them."""
    total = 0
    for pid in pids:
        try:
            tasks = list(Path(f"/proc/{pid}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                total += int((task / "schedstat").read_text().split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return total / 1e9


def cpu_spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each owner spent between two Stack.cpu_snapshot()s (a process started meanwhile: all of it)."""
    out: dict[str, float] = {}
    for pid, (owner, cpu) in after.items():
        out[owner] = out.get(owner, 0.0) + cpu - (before[pid][1] if pid in before and before[pid][0] == owner else 0.0)
    return out


def machine_cpu() -> tuple[float, float]:
    """(busy, all) CPU seconds of the machine's cores since boot, from /proc/stat (busy: not idle or iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - values[3] - values[4]) / tick, sum(values) / tick


def moto_sandbox(name: str = "sandbox"):
    """The sandbox platform on a moto server in this process (Django set up): (environment, server,
    endpoint). Other processes (gunicorn's workers) reach it over HTTP as they would reach AWS."""
    from moto.server import ThreadedMotoServer

    from portal.sandbox.patches import install_moto_patches

    install_moto_patches()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    return sandbox_platform(endpoint, name), server, endpoint


def sandbox_platform(endpoint: str, name: str = "sandbox"):
    """Build the plan's platform on the moto server at `endpoint` and register it as environment `name`."""
    from portal.sandbox.platform import build_platform, register_environment
    from tests.plugins.aws import plan_phase_bounds

    names = build_platform(endpoint_url=endpoint, phase=plan_phase_bounds())
    return register_environment(names, endpoint_url=endpoint, name=name)


# ---------------------------------------------------------------------------------------- alert storms


def alertmanager_payload(alerts: list[int], group: int, tag: str) -> dict:
    """One Alertmanager webhook: alerts numbered `alerts` (fingerprints tag + number) in group `group`."""
    return {
        "receiver": "portal", "status": "firing", "version": "4", "truncatedAlerts": 0,
        "groupKey": f'{{}}:{{alertname="{tag}{group}"}}', "groupLabels": {"alertname": f"{tag}{group}"},
        "commonLabels": {"alertname": f"{tag}{group}"}, "commonAnnotations": {}, "externalURL": "http://am:9093",
        "alerts": [
            {"status": "firing",
             "labels": {"alertname": f"{tag}{group}", "instance": f"10.2.{i // 250}.{i % 250}:9100",
                        "severity": "critical" if i % 10 == 0 else "warning", "service": "api"},
             "annotations": {"summary": f"{tag} alert {i}"}, "startsAt": "2026-11-27T18:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom:9090/graph", "fingerprint": f"{tag}{i:08d}"}
            for i in alerts
        ],
    }


def batched_sends(total: int, batch: int, tag: str, group_size: int = 100) -> tuple[list[bytes], int, int]:
    """`total` alerts in payloads of `batch` (each group `group_size` alerts), a tenth of the payloads sent
    a second time a little later, as Alertmanager does after a timeout. Returns (the bodies in the
    order to send them, payloads without the resends, groups)."""
    bodies = [alertmanager_payload(list(range(start, min(start + batch, total))), start // group_size, tag)
              for start in range(0, total, batch)]
    sends = []
    for i, b in enumerate(bodies):
        sends.append(json.dumps(b).encode())
        if i >= 3 and i % 10 == 9:
            sends.append(json.dumps(bodies[i - 3]).encode())
    return sends, len(bodies), (total + group_size - 1) // group_size


class AlertSender:
    """POSTs bodies to /api/v1/alerts/alertmanager from any number of threads, each on a keep-alive session
    of its own, and keeps every latency, every failure and the wall-clock time of the first send."""

    def __init__(self, token: str, timeout: float = 60):
        self.token, self.timeout = token, timeout
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.first: float | None = None
        self._lock, self._local = threading.Lock(), threading.local()

    def post(self, base: str, body: bytes) -> None:
        s = getattr(self._local, "s", None)
        if s is None:
            s = self._local.s = requests.Session()
        if self.first is None:
            self.first = time.time()
        t = time.perf_counter()
        try:
            r = s.post(base + "/api/v1/alerts/alertmanager", data=body, timeout=self.timeout,
                       headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
            ok, detail = r.status_code == 200, f"{r.status_code} {r.text[:200]}"
        except requests.RequestException as exc:
            ok, detail = False, repr(exc)
        elapsed = time.perf_counter() - t
        with self._lock:
            self.latencies.append(elapsed)
            if not ok:
                self.failures.append(detail)


def send_all(bases: list[str], token: str, bodies: list[bytes], clients: int) -> tuple[float, list[float], list[str]]:
    """POST every body, `clients` at a time as fast as they are answered, alternating between `bases`;
    returns the wall-clock time of the first send, the latencies and the failures."""
    sender = AlertSender(token)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(lambda ib: sender.post(bases[ib[0] % len(bases)], ib[1]), enumerate(bodies)))
    return sender.first or float("nan"), sender.latencies, sender.failures


# ------------------------------------------------------------------------------------- health checks

CHECK_TARGET = r"""
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path.startswith("/hang"):
            time.sleep(float(sys.argv[2]))
        body = b"OK all systems operational"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:
            pass

class S(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512

S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def check_target(hang_seconds: float) -> tuple[subprocess.Popen, int]:
    """A status page for HTTP checks on a free 127.0.0.1 port: /ok/... answers at once, /hang/... after
    `hang_seconds`. Returns (its process, which the caller terminates, its port)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", CHECK_TARGET, str(port), str(hang_seconds)])
    deadline = time.time() + 5
    while time.time() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    return proc, port


def http_checks_create(*, checks: int, hanging: float, port: int, interval: int = 60, timeout: float = 10.0,
                       start_in: float = 3.0, environment: str = "bench-health-local") -> set[int]:
    """`checks` HTTP checks (Django set up) of the check_target at `port`, every `hanging` fraction of them
    hanging, their first runs spread over one interval from `start_in` seconds on, as a long-running
    portal's are. Their environment's outbound policy allows 127.0.0.1, as the sandbox's does (without it
    every check is refused before it connects, and measures nothing). Returns the hanging checks' ids."""
    from datetime import timedelta

    from django.utils import timezone

    from portal.cloud.models import Environment
    from portal.health.models import Check, OutboundPolicy

    env, _ = Environment.objects.get_or_create(name=environment)
    OutboundPolicy.objects.update_or_create(environment=env, defaults={"allow_private_targets": True})
    every = round(1 / hanging) if hanging > 0 else 0
    start = timezone.now() + timedelta(seconds=start_in)
    rows = []
    for i in range(checks):
        slug = f"bench-{i:04d}"
        rows.append(Check(
            slug=slug, name=f"Bench {i}", kind=Check.Kind.HTTP, group=Check.Group.EXTERNAL, environment=env,
            config={"url": f"http://127.0.0.1:{port}/{'hang' if every and i % every == 0 else 'ok'}/{slug}", "expect_status": 200},
            interval_seconds=interval, timeout_seconds=timeout, fail_threshold=3, recover_threshold=2,
            next_due_at=start + timedelta(seconds=interval * i / checks),
        ))
    Check.objects.bulk_create(rows)
    return {pk for pk, cfg in Check.objects.filter(environment=env).values_list("pk", "config") if "/hang/" in cfg["url"]}


# ------------------------------------------------------------------------------------------ rollback


class RollbackFailed(RuntimeError):
    """A round whose POST was refused or whose listener never showed the old colour at 100 %."""


@dataclass
class RollbackRound:
    n: int
    seconds: float  # POST sent -> the listener read back at 100 % on the old colour
    post_seconds: float  # POST sent -> its 202
    started_at: float  # wall clock of the POST
    rollback: str  # the rollback's public id
    finished_at: float = 0.0  # wall clock when the round's rollback was done (the next round may start)


class RollbackRounds:
    """The rollback round of bench_rollback, for any client (Django set up on the portal's database).

    Each round puts the traffic on one colour with a completed deployment from the other (warm: both
    colours at 2 instances; cold: the old colour at 0), POSTs the rollback through `post(reason) ->
    (status, body)`, and times from the POST until the listener, read through boto3 (DescribeListeners
    on the sandbox's endpoint) every `poll` seconds, shows 100 % on the old colour. Then it waits until
    the rollback is finished, so the next round is not refused as already in progress (a round after a
    failed one waits for it first). Colours alternate by round number; a failed round raises
    RollbackFailed."""

    COLOURS = ("green", "blue")

    def __init__(self, env, post: Callable[[str], tuple[int, str]], *, poll: float = 0.05, strategy: str = "canary-quick"):
        from deployments.models import Strategy

        self.env, self.post, self.poll = env, post, poll
        self.strategy = Strategy.objects.get(slug=strategy)

    def prepare(self, n: int, live: str, old: str, *, cold: bool) -> None:
        from deployments.models import Deployment, Release
        from portal.cloud import aws

        aws.set_desired_capacity(self.env, live, 2)
        aws.set_desired_capacity(self.env, old, 0 if cold else 2)
        aws.set_listener_weights(self.env, {live: 100, old: 0})
        release = Release.objects.create(environment=self.env, version=f"bench-{n}-{time.time_ns()}", launch_template_version="$Latest")
        Deployment.objects.create(environment=self.env, release=release, strategy=self.strategy, from_colour=old, to_colour=live,
                                  state="completed", weights={live: 100, old: 0}, created_by_label="bench")

    def run(self, n: int, *, cold: bool = False, timeout: float = 60) -> RollbackRound:
        from deployments.models import ACTIVE_ROLLBACK_STATES, Rollback
        from portal.cloud import aws

        def settled(until: float) -> None:
            while Rollback.objects.filter(environment=self.env, state__in=ACTIVE_ROLLBACK_STATES).exists() \
                    and time.perf_counter() < until:
                time.sleep(0.02)

        live, old = self.COLOURS[n % 2], self.COLOURS[(n + 1) % 2]
        settled(time.perf_counter() + timeout)
        self.prepare(n, live, old, cold=cold)
        wall, t0 = time.time(), time.perf_counter()
        try:
            status, body = self.post(f"bench {n}")
        except Exception as exc:  # noqa: BLE001 - a transport error is this round's result
            raise RollbackFailed(f"rollback {n}: {exc!r}"[:300]) from exc
        posted = time.perf_counter() - t0
        if status != 202:
            raise RollbackFailed(f"rollback {n}: HTTP {status} {body[:300]}")
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if aws.get_listener_weights(self.env).get(old) == 100:
                out = RollbackRound(n, time.perf_counter() - t0, posted, wall, json.loads(body)["id"])
                settled(deadline)
                out.finished_at = time.time()
                return out
            time.sleep(self.poll)
        raise RollbackFailed(f"rollback {n}: listener never showed 100 % on {old} within {timeout:.0f} s")


def group_pids(pgid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                out.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def wait_http(url: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up within {timeout:.0f} s")


if __name__ == "__main__":
    print(procfile())
    sys.exit(0)
