"""The portal as operators run it, in real processes, for the fault tests.

`Stack` gives each test its own PostgreSQL database on this machine's server, its own Redis
database, and starts gunicorn, Celery workers, beat and (when asked) the AWS sandbox on 127.0.0.1,
exactly as the Procfile does. `Postgres` and `Redis` stop and start this machine's servers with the
same commands an operator uses (pg_ctlcluster; redis-cli shutdown / redis-server).

Which servers: PostgreSQL cluster FAULTS_PG_CLUSTER ("15/main" by default: the first installed
version, cluster main) on FAULTS_PG_PORT (5432); Redis on FAULTS_REDIS_PORT (6379). A developer can
point these at a spare cluster and Redis so the machine's own keep running.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import requests

from tests.plugins.aws import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".venv" / "bin"
PY = str(BIN / "python")


def wait_for(predicate, *, timeout: float, what: str, every: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - the condition may raise while a part is still down
            last_exc = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


class Postgres:
    def __init__(self) -> None:
        self.port = int(os.environ.get("FAULTS_PG_PORT", "5432"))
        cluster = os.environ.get("FAULTS_PG_CLUSTER", "")
        if not cluster:
            versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
            cluster = f"{versions[0]}/main" if versions else ""
        self.version, _, self.name = cluster.partition("/")

    @property
    def available(self) -> bool:
        return bool(self.version) and shutil.which("pg_ctlcluster") is not None and self.up()

    def dsn(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def up(self) -> bool:
        try:
            psycopg.connect(self.dsn(), connect_timeout=2).close()
            return True
        except psycopg.Error:
            return False

    def _ctl(self, action: str, *extra: str) -> None:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, action, *extra],
                       check=True, capture_output=True, text=True, timeout=120)

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")
        wait_for(lambda: not self.up(), timeout=30, what="PostgreSQL to stop")

    def start(self) -> None:
        if not self.up():
            self._ctl("start")
        wait_for(self.up, timeout=60, what="PostgreSQL to accept connections")


class Redis:
    def __init__(self) -> None:
        self.port = int(os.environ.get("FAULTS_REDIS_PORT", "6379"))

    @property
    def available(self) -> bool:
        return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None and self.up()

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def up(self) -> bool:
        r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "ping"], capture_output=True, text=True, timeout=5)
        return r.stdout.strip() == "PONG"

    def stop(self) -> None:
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), "shutdown", "nosave"], capture_output=True, timeout=10)
        wait_for(lambda: not self.up(), timeout=15, what="Redis to stop")

    def start(self) -> None:
        if not self.up():
            subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(self.port),
                            "--save", "", "--appendonly", "no"], check=True, capture_output=True, timeout=15)
        wait_for(self.up, timeout=15, what="Redis to answer PING")


@dataclass
class Stack:
    name: str
    workdir: Path
    pg: Postgres
    redis: Redis
    redis_db: int = 5
    extra_env: dict = field(default_factory=dict)
    procs: dict = field(default_factory=dict)
    web_port: int = 0
    password: str = "fault-Tests-only-9"  # noqa: S105 - a throwaway account in a throwaway database

    # -- set-up -----------------------------------------------------------------------------------

    @property
    def db(self) -> str:
        return f"portal_faults_{self.name}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:{self.pg.port}/{self.db}",
            "CELERY_BROKER_URL": self.redis.url(self.redis_db),
            "PORTAL_ENV": "development", "DEBUG": "false", "LOG_LEVEL": "INFO",
            "PORTAL_DATA_DIR": str(self.workdir / "data"),
            "PYTHONUNBUFFERED": "1",
            # No SMTP catcher runs in this stack: mail goes to the log, as it did before the sandbox's
            # stand-ins became the embedded default (a failing mail retried with a countdown, and the
            # worker held that unacknowledged message when Redis went away; see the operating guide).
            "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
            **self.extra_env,
        }

    def setup(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with psycopg.connect(self.pg.dsn(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{self.db}"')
        import redis as redis_lib

        redis_lib.Redis.from_url(self.redis.url(self.redis_db)).flushdb()
        self.manage("migrate", "--noinput", "-v0")
        self.manage("seed_defaults")
        self.manage("create_user", "lead", "--role", "lead", "--password", self.password)

    def manage(self, *args: str, timeout: float = 300) -> str:
        r = subprocess.run([PY, "manage.py", *args], cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"manage.py {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")
        return r.stdout

    def shell(self, code: str) -> str:
        """Run Python inside the portal (Django set up, same database) and return what it printed."""
        return self.manage("shell", "-c", code)

    def api_token(self, scope: str) -> str:
        return self.manage("create_api_token", "--name", f"faults-{scope}", "--scope", scope).strip().splitlines()[-1]

    def start_alert_intake(self) -> requests.Session:
        """Web, a worker and beat with only the outbox sweep scheduled; returns a session that sends
        webhooks as Alertmanager does (bearer token of scope alerts:write)."""
        self.only_periodic("portal.incidents.tasks.sweep_deliveries")
        token = self.api_token("alerts:write")
        self.start_web()
        self.start_worker()
        self.start_beat()
        hook = requests.Session()
        hook.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        return hook

    def only_periodic(self, *tasks: str) -> None:
        """Keep the beat entries this test is about; the others would call out to services nobody runs here."""
        with self.sql_conn() as c:
            c.execute("UPDATE django_celery_beat_periodictask SET enabled = (task = ANY(%s)) "
                      "WHERE name <> 'celery.backend_cleanup'", (list(tasks),))
            c.execute("UPDATE django_celery_beat_periodictasks SET last_update = now()")

    # -- processes --------------------------------------------------------------------------------

    def _spawn(self, key: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{key}.log", "a")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[key] = proc
        return proc

    def start_web(self, workers: int = 2, threads: int = 4) -> None:
        self.web_port = free_port()
        self._spawn("web", [str(BIN / "gunicorn"), "portal.wsgi:application", "-b", f"127.0.0.1:{self.web_port}",
                            "-w", str(workers), "--threads", str(threads), "--timeout", "30", "--no-control-socket",
                            "--access-logfile", "-"])
        wait_for(lambda: requests.get(self.base + "/healthz", timeout=2).status_code == 200, timeout=60, what="gunicorn")

    def start_worker(self, key: str = "worker", queues: str = "default,polling,actions", concurrency: int = 2) -> subprocess.Popen:
        proc = self._spawn(key, [str(BIN / "celery"), "-A", "portal", "worker", "-Q", queues, "-c", str(concurrency),
                                 "-l", "INFO", "--without-gossip", "--without-mingle", "-n", f"{key}-{self.name}-{os.getpid()}@127.0.0.1"])
        wait_for(lambda: "ready." in self.log(key), timeout=60, what=f"Celery worker {key} to be ready")
        return proc

    def start_beat(self, key: str = "beat") -> None:
        self._spawn(key, [str(BIN / "celery"), "-A", "portal", "beat", "--scheduler",
                             "portal.beat:PortalScheduler", "-l", "INFO",
                             "--schedule", str(self.workdir / f"{key}-schedule")])

    def start_sandbox(self, port: int, interval: float = 1.0) -> str:
        self._spawn("sandbox", [PY, "manage.py", "sandbox", "--port", str(port), "--status-port", "0", "--seed", "7",
                                "--interval", str(interval)])
        wait_for(lambda: "sandbox" in self.sql("SELECT string_agg(name, ',') FROM cloud_environment") or "",
                 timeout=120, what="the sandbox to register its environment")
        return f"http://127.0.0.1:{port}"

    def sigkill(self, key: str) -> None:
        """SIGKILL the process and all its children (a worker's pool goes with it), as the OOM killer would."""
        proc = self.procs[key]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def alive(self, key: str) -> bool:
        return self.procs[key].poll() is None

    def log(self, key: str) -> str:
        path = self.workdir / f"{key}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_tails(self, lines: int = 40) -> str:
        out = []
        for key in self.procs:
            tail = self.log(key).splitlines()[-lines:]
            out.append(f"---- {key}.log (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self.pg.up():
            with psycopg.connect(self.pg.dsn(), autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    # -- reading state ----------------------------------------------------------------------------

    def sql_conn(self):
        return psycopg.connect(self.pg.dsn(self.db), autocommit=True, connect_timeout=3)

    def sql(self, query: str, *params):
        with self.sql_conn() as c:
            row = c.execute(query, params or None).fetchone()
            return row[0] if row else None

    # -- talking to it like a person --------------------------------------------------------------

    def login(self, username: str = "lead") -> requests.Session:
        s = requests.Session()
        page = s.get(self.base + "/accounts/login/", timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        r = s.post(self.base + "/accounts/login/", data={"username": username, "password": self.password,
                                                           "csrfmiddlewaretoken": token},
                   headers={"Referer": self.base + "/accounts/login/"}, timeout=10, allow_redirects=False)
        assert r.status_code == 302, f"login failed: {r.status_code} {r.text[:300]}"
        return s


def alertmanager_body(group: str, fingerprints: list[str], status: str = "firing") -> dict:
    """One Alertmanager webhook (version 4) for alert group `group` with one alert per fingerprint."""
    return {
        "receiver": "portal", "status": status, "version": "4", "truncatedAlerts": 0,
        "groupKey": f'{{}}:{{alertname="{group}"}}', "groupLabels": {"alertname": group},
        "commonLabels": {"alertname": group}, "commonAnnotations": {}, "externalURL": "http://am:9093",
        "alerts": [
            {"status": status,
             "labels": {"alertname": group, "instance": f"10.2.{i // 250}.{i % 250}:9100", "severity": "critical", "service": "api"},
             "annotations": {"summary": f"{group} {fp}"}, "startsAt": "2026-11-27T18:00:00Z",
             "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom:9090/graph", "fingerprint": fp}
            for i, fp in enumerate(fingerprints)
        ],
    }


def integrity(stack: Stack, prefix: str) -> dict:
    """What was kept of the alerts whose fingerprints start with `prefix`: the numbers a responder would check."""
    q = stack.sql
    return {
        "deliveries": q("SELECT count(*) FROM incidents_alertdelivery"),
        "pending": q("SELECT count(*) FROM incidents_alertdelivery WHERE status = 'pending'"),
        "not_processed": q("SELECT count(*) FROM incidents_alertdelivery WHERE status <> 'processed'"),
        "alerts": q("SELECT count(*) FROM incidents_alert WHERE fingerprint LIKE %s", prefix + "%"),
        "distinct_alerts": q("SELECT count(DISTINCT fingerprint) FROM incidents_alert WHERE fingerprint LIKE %s", prefix + "%"),
        "unattached": q("SELECT count(*) FROM incidents_alert WHERE incident_id IS NULL AND fingerprint LIKE %s", prefix + "%"),
        "incidents": q("SELECT count(*) FROM incidents_incident"),
        "grouping_keys": q("SELECT count(DISTINCT grouping_key) FROM incidents_incident"),
        "firing_entries": q("SELECT count(*) FROM incidents_timelineentry WHERE kind = 'alert_firing'"),
    }
