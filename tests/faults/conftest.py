"""Fixtures of the fault tests: this machine's servers, and a portal stack in real processes per test.

These tests stop PostgreSQL and Redis for real, so they run in a pytest session of their own
(`pytest --faults tests/faults`, which scripts/test.sh does in CI or with PORTAL_FAULT_TESTS=1) and
always bring the servers back, whatever happens.
"""

from __future__ import annotations

import os

import pytest

from conftest import need
from tests.faults.stack import Postgres, Redis, Stack


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture
def pg():
    server = Postgres()
    need(server.available, f"needs PostgreSQL cluster {server.version}/{server.name} on 127.0.0.1:{server.port} and pg_ctlcluster")
    yield server
    server.start()  # back up whatever the test did


@pytest.fixture
def redis_server():
    server = Redis()
    need(server.available, f"needs redis-server and Redis on 127.0.0.1:{server.port}")
    yield server
    server.start()


@pytest.fixture
def make_stack(request, tmp_path, pg, redis_server):
    stacks: list[Stack] = []

    def make(**extra_env) -> Stack:
        name = request.node.name.removeprefix("test_")[:30].lower()
        stack = Stack(name=f"{name}_{os.getpid()}", workdir=tmp_path / "stack", pg=pg, redis=redis_server,
                      redis_db=6 + len(stacks), extra_env={k: str(v) for k, v in extra_env.items()})
        stacks.append(stack)
        stack.setup()
        return stack

    yield make
    report = getattr(request.node, "report_call", None)
    for stack in stacks:
        pg.start()
        redis_server.start()
        if report is None or report.failed:
            print(stack.log_tails())  # what each process said, to tell why
        stack.close()
