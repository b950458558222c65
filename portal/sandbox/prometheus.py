"""The sandbox's Prometheus: Debian's `prometheus` binary loading the rules the portal exports.

The plan monitors the platform with Prometheus + Grafana. When the binary is on this machine
(`apt-get install prometheus`), `manage.py sandbox` starts one on 127.0.0.1 (SANDBOX_PROMETHEUS_PORT)
with the rules file `manage.py export_alert_rules` writes for the sandbox environment, and names it as
the environment's Prometheus. The product then reads it as it reads any Prometheus: "Alert rules
configured" compares the loaded rules (`/api/v1/rules`) with the thresholds. When a threshold changes,
`rules_sync` writes the file again and asks Prometheus to reload it (`POST /-/reload`), as an operator's
deploy pipeline would. Without the binary nothing starts and the check reads CloudWatch alone.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.db import transaction

from portal.audit.services import audit_record
from portal.cloud.models import Environment
from portal.health.management.commands.export_alert_rules import build_rules, write_rules

log = logging.getLogger(__name__)

READY_SECONDS = 30.0


def binary() -> str | None:
    return settings.SANDBOX_PROMETHEUS_BINARY or shutil.which("prometheus")


def home() -> Path:
    return Path(settings.DATA_DIR) / "prometheus"


def rules_path() -> Path:
    return home() / "ftw-portal.yml"


def write_environment_rules(env: Environment) -> Path:
    """The sandbox environment's rules, exported from the thresholds stored now."""
    path = rules_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    doc, _skipped = build_rules(env)
    write_rules(path, doc)
    (home() / "environment").write_text(env.name, encoding="utf-8")  # whose rules these are, for rules_sync
    return path


class SandboxPrometheus:
    """One Prometheus process on 127.0.0.1 with the portal's rules; `start()` returns False when it cannot run."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.url = f"http://{host}:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, env: Environment) -> bool:
        exe = binary()
        if not exe:
            return False
        write_environment_rules(env)
        config = home() / "prometheus.yml"
        config.write_text("global:\n  evaluation_interval: 15s\n"
                          f"rule_files:\n  - {rules_path()}\n", encoding="utf-8")
        self.proc = subprocess.Popen(  # noqa: S603 - a fixed binary with arguments the sandbox writes
            [exe, f"--config.file={config}", f"--storage.tsdb.path={home() / 'data'}",
             f"--web.listen-address={self.host}:{self.port}", "--web.enable-lifecycle", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=(home() / "prometheus.log").open("ab"))
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log.warning("sandbox Prometheus exited (%s); see %s", self.proc.returncode, home() / "prometheus.log")
                return False
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        return False

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def register(env: Environment, url: str, actor: Any = "system:sandbox") -> Environment:
    """Name the sandbox's Prometheus on the environment (audited when it changes)."""
    with transaction.atomic():
        env = Environment.objects.select_for_update().get(pk=env.pk)
        if env.prometheus_url != url:
            before = env.prometheus_url
            env.prometheus_url = url
            env.save(update_fields=["prometheus_url", "updated_at"])
            audit_record(actor=actor, verb="environment.register", target=env, before={"prometheus_url": before},
                         after={"prometheus_url": url}, extra={"source": "sandbox", "part": "prometheus"})
    return env


def rules_sync() -> bool:
    """A threshold changed: write the sandbox environment's rules again and reload its Prometheus.
    False when the sandbox runs no Prometheus (nothing to do)."""
    marker = home() / "environment"
    if not marker.exists():
        return False
    env = Environment.objects.filter(name=marker.read_text(encoding="utf-8").strip()).first()
    if env is None or not env.prometheus_url:
        return False
    write_environment_rules(env)
    resp = requests.post(f"{env.prometheus_url.rstrip('/')}/-/reload", timeout=5)
    resp.raise_for_status()
    return True
