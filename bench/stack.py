"""The production shape, started on this machine: gunicorn, the Procfile's Celery workers and beat, on
PostgreSQL and Redis, each in its own process group (stopped on exit, also on Ctrl-C or an error).

    with Stack(db="portal_bench_x", redis="redis://127.0.0.1:6379/2", webs=1, workers=1) as stack:
        stack.base_urls        # one per web process
        stack.token("alerts:write")
        stack.sql("SELECT count(*) FROM incidents_incident")

The commands are the Procfile's (`web`, `worker`, `actions`, `beat`), with the knobs the benches vary
(`webs` web processes, `workers` worker processes, each as Compose's `--scale` would run them).
Every bench prints one `BENCH {json}` line for `make bench` (bench/run_all.py), via `report()`.
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
import time
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
                 web_workers: int | None = None, threads: int = 4, env: dict | None = None, seed: bool = True):
        self.db, self.redis, self.webs, self.workers, self.beats, self.actions = db, redis, webs, workers, beats, actions
        self.web_workers, self.threads = web_workers, threads
        self.dsn = f"postgres://postgres@127.0.0.1:5432/{db}"
        self.data = Path(tempfile.mkdtemp(prefix="bench-stack-"))
        self.env = dict(os.environ, DATABASE_URL=self.dsn, CELERY_BROKER_URL=redis, CELERY_RESULT_BACKEND=redis,
                        PORTAL_ENV="development", DEBUG="false", LOG_LEVEL="WARNING", AXES_ENABLED="false",
                        PORTAL_DATA_DIR=str(self.data), DJANGO_SETTINGS_MODULE="portal.settings", **(env or {}))
        self.env["PATH"] = f"{BIN}:{self.env.get('PATH', '')}"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.base_urls: list[str] = []
        self.seed = seed
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
            self.base_urls.append(f"http://127.0.0.1:{port}")
        for i in range(self.workers):
            self._spawn(f"worker{i}", [*cmds["worker"], "-n", f"worker{i}-{os.getpid()}@127.0.0.1", "--without-gossip", "--without-mingle"])
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
            for pid in _group_pids(p.pid):
                try:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    total += (int(fields[11]) + int(fields[12])) / tick
                except (OSError, IndexError, ValueError):
                    continue
        return total


def moto_sandbox(name: str = "sandbox"):
    """The sandbox platform on a moto server in this process (Django set up): (environment, server,
    endpoint). Other processes (gunicorn's workers) reach it over HTTP as they would reach AWS."""
    from moto.server import ThreadedMotoServer

    from portal.sandbox.patches import install_moto_patches
    from portal.sandbox.platform import build_platform, register_environment
    from tests.plugins.aws import plan_phase_bounds

    install_moto_patches()
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    names = build_platform(endpoint_url=endpoint, phase=plan_phase_bounds())
    return register_environment(names, endpoint_url=endpoint, name=name), server, endpoint


def _group_pids(pgid: int) -> list[int]:
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
