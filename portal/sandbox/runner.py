"""Runs the sandbox: moto's server, the platform, the fake status pages and the simulator loop."""

from __future__ import annotations

import datetime as dt
import logging
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from django.db import close_old_connections, connection
from django.utils import timezone
from moto.cloudwatch.models import cloudwatch_backends
from moto.server import ThreadedMotoServer

from portal.cloud.errors import CloudError
from portal.cloud.models import Environment
from portal.sandbox.costs import costs_sync
from portal.sandbox.patches import install_moto_patches
from portal.sandbox.platform import alarms_sync, build_platform, register_environment
from portal.sandbox.simulator import tick
from portal.sandbox.statuspages import serve as serve_status

log = logging.getLogger(__name__)
RETENTION = dt.timedelta(hours=6)  # metrics older than this are dropped from the in-memory sandbox


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def is_moto(endpoint_url: str) -> bool:
    try:
        resp = requests.get(f"{endpoint_url}/moto-api/", timeout=3)
    except requests.RequestException:
        return False
    return resp.status_code == 200 and "moto" in resp.text.lower()


def _aware(ts: dt.datetime) -> dt.datetime:
    # moto keeps timestamps as they were sent: naive or aware depending on the caller.
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)


def prune_metrics(older_than: dt.datetime) -> int:
    """moto keeps every datapoint in memory; drop the old ones (this process runs the server)."""
    older_than = _aware(older_than)

    dropped = 0
    for _account, regions in list(cloudwatch_backends.items()):
        for _region, backend in list(regions.items()):
            kept = [m for m in backend.metric_data if _aware(m.timestamp) >= older_than]
            dropped += len(backend.metric_data) - len(kept)
            backend.metric_data = kept
    return dropped


@dataclass
class Sandbox:
    host: str = "127.0.0.1"
    port: int = 4566
    status_port: int | None = None
    interval: float = 5.0
    seed: int | None = None
    env_name: str = "sandbox"
    out: Any = None  # a writer with .write(str)
    server: Any = None
    status_server: Any = None
    env: Any = None
    names: dict = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text)
        else:
            log.info(text)

    def start(self, *, serve: bool = True) -> None:
        """Start moto (unless `serve` is False: reuse the server already on the port), build, register."""
        install_moto_patches()
        if serve:
            self.server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
            self.server.start()
            for _ in range(50):
                if port_in_use(self.host, self.port):
                    break
                time.sleep(0.1)
        t0 = time.monotonic()
        self.names = build_platform(endpoint_url=self.endpoint_url)
        status_port = None
        if serve and self.status_port:
            self.status_server = serve_status(self.host, self.status_port, self.env_name)
            status_port = self.status_port
        self.env = register_environment(self.names, endpoint_url=self.endpoint_url, name=self.env_name,
                                        status_port=status_port)
        alarms_sync(self.env)  # the plan built them; the thresholds stored now (a lead's edits) decide
        costs_sync(self.env)  # the build seeded the 300k-user table; Cost Explorer answers for the current phase
        self.say(f"AWS sandbox on {self.endpoint_url}: platform ready in {time.monotonic() - t0:.1f}s, "
                 f"environment '{self.env.name}' registered")

    def run(self, *, ticks: int | None = None, report_every: int = 12) -> int:
        """The simulator loop until stopped (or `ticks` ticks). Errors are logged, never fatal."""
        rng = random.Random(self.seed)
        done = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set() and (ticks is None or done < ticks):
            close_old_connections()
            try:
                env = Environment.objects.get(pk=self.env.pk)
                report = tick(env, rng=rng, interval=self.interval)
                if done % report_every == 0:
                    self.say(report.line())
            except CloudError as exc:
                self.say(f"simulator: {exc.words}")
            except Exception:  # noqa: BLE001 - the loop must survive anything a tick throws
                log.exception("simulator tick failed")
            done += 1
            if self.server is not None and done % 60 == 0:
                prune_metrics(timezone.now() - RETENTION)
            next_at += self.interval
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))
        close_old_connections()
        if threading.current_thread() is not threading.main_thread():
            connection.close()
        return done

    def stop(self) -> None:
        self.stop_event.set()
        if self.status_server is not None:
            self.status_server.shutdown()
            self.status_server.server_close()
        if self.server is not None:
            self.server.stop()
