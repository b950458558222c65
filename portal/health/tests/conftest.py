"""Fixtures for the health tests: a threaded local HTTP server and check factories."""

from __future__ import annotations

import pytest
from pytest_httpserver import HTTPServer


@pytest.fixture
def local_server():
    """A threaded pytest-httpserver on 127.0.0.1, so a hanging handler does not block the others."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def make_check(db):
    from portal.health.models import Check

    counter = {"n": 0}

    def make(**kw):
        counter["n"] += 1
        defaults = {
            "slug": f"check-{counter['n']}",
            "name": f"Check {counter['n']}",
            "kind": Check.Kind.HTTP,
            "group": Check.Group.EXTERNAL,
            "config": {},
            "interval_seconds": 60,
            "timeout_seconds": 2,
            "fail_threshold": 3,
            "recover_threshold": 2,
            "severity": "warning",
        }
        defaults.update(kw)
        return Check.objects.create(**defaults)

    return make


@pytest.fixture
def private_env(db):
    """An environment whose outbound policy allows 127.0.0.1, as the local sandbox's does."""
    from portal.cloud.models import Environment
    from portal.health.models import OutboundPolicy

    env = Environment.objects.create(name="local-sandbox", credentials_mode="static")
    OutboundPolicy.objects.create(environment=env, allow_private_targets=True)
    return env


@pytest.fixture
def public_env(db):
    """A production-like environment: no outbound policy row, so only public addresses are reached."""
    from portal.cloud.models import Environment

    return Environment.objects.create(name="production", is_production=True, credentials_mode="role")
