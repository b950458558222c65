"""pytest fixtures for the AWS sandbox (a plugin registered by the root conftest.py; never installed).

- `aws_platform`: moto in process (`mock_aws`), the platform built, the `sandbox` Environment
  saved (empty endpoint_url: calls go to the in-process mock). Returns the Environment;
  `env.platform` holds the names and ARNs.
- `sandbox_server`: one moto server per test session, in its own process, on a free 127.0.0.1
  port with the platform built (never 4566). `sandbox_env`: the Environment pointing at it, saved for the test, with
  the listener back at blue 100 / green 0 and the groups back at their starting sizes.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from moto import mock_aws

from portal.cloud import aws
from portal.cloud.clients import reset_cache
from portal.plan.loader import load_plan
from portal.sandbox.patches import install_moto_patches
from portal.sandbox.platform import build_platform, register_environment

ROOT = Path(__file__).resolve().parent.parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plan_phase_bounds() -> dict[str, int]:
    phase = (load_plan().get("phases") or [{}])[0]
    return {"number": int(phase.get("number", 1)), "instances_min": int(phase.get("instances_min", 2)),
            "instances_max": int(phase.get("instances_max", 4)), "users_min": int(phase.get("users_min", 0)),
            "users_max": int(phase.get("users_max", 5000))}


@dataclass
class SandboxServer:
    host: str
    port: int
    names: dict = field(default_factory=dict)
    server: object = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"


def reset_platform(env, names: dict) -> None:
    """Back to the starting point: listener blue 100 / green 0, blue at the phase minimum, green empty."""
    aws.set_listener_weights(env, {"blue": 100, "green": 0})
    aws.set_desired_capacity(env, "blue", int(names.get("initial_blue", 2)))
    aws.set_desired_capacity(env, "green", 0)


@pytest.fixture
def aws_platform(db, growth_phases):
    install_moto_patches()
    reset_cache()
    with mock_aws():
        phase = plan_phase_bounds()
        names = build_platform(phase=phase)
        names["initial_blue"] = phase["instances_min"]
        env = register_environment(names, endpoint_url="")
        env.platform = names
        yield env
    reset_cache()


def _wait_for_port(port: int, proc, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the moto server process exited with {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the moto server did not listen on 127.0.0.1:{port} within {seconds:.0f}s")


@pytest.fixture(scope="session")
def sandbox_server():
    """A moto server in its own process (mock_aws in other tests resets moto's in-process state)."""
    port = free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "portal.settings_test")}
    proc = subprocess.Popen([sys.executable, "-m", "portal.sandbox.moto_process", "--port", str(port)],  # noqa: S603
                            env=env, cwd=str(ROOT),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, proc)
        info = SandboxServer(host="127.0.0.1", port=port, server=proc)
        phase = plan_phase_bounds()
        info.names = build_platform(endpoint_url=info.endpoint_url, phase=phase)
        info.names["initial_blue"] = phase["instances_min"]
        yield info
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def sandbox_env(db, growth_phases, sandbox_server):
    reset_cache()
    env = register_environment(sandbox_server.names, endpoint_url=sandbox_server.endpoint_url)
    env.platform = sandbox_server.names
    reset_platform(env, sandbox_server.names)
    yield env
    reset_cache()


@pytest.fixture
def cloudflare_edge(aws_platform):
    """The sandbox platform (moto in process) with CloudFlare in front of it and storage in R2, as
    `manage.py sandbox` has it: the environment, with `.platform` and `.standin` (the running stand-in)."""
    from portal.sandbox import cloudflare_standin
    from portal.sandbox.platform import DOMAIN, register_cloudflare

    server = cloudflare_standin.CloudflareStandIn("127.0.0.1", free_port())
    cloudflare_standin.seed_state(server.state, domain=DOMAIN, load_balancer_dns=aws_platform.platform["load_balancer_dns"],
                                  buckets=aws_platform.buckets)
    server.start()
    env = register_cloudflare(aws_platform, base_url=server.url, account_id=server.state.account_id, token=server.state.token)
    env.platform, env.standin = aws_platform.platform, server
    yield env
    server.stop()
