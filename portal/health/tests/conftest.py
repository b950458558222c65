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
