"""Really stops this machine's Redis (the broker) and checks what people would notice.

Redis is restarted by the test with the same command the machine uses, whatever happens.
"""

import os
import shutil
import subprocess
import time

import pytest

from conftest import need

pytestmark = [pytest.mark.slow, pytest.mark.redis]

REDIS_START = ["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no"]


def _redis_up() -> bool:
    r = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"], capture_output=True, text=True, timeout=5)
    return r.stdout.strip() == "PONG"


def _start_redis():
    subprocess.run(REDIS_START, check=False, timeout=10)
    for _ in range(50):
        if _redis_up():
            return
        time.sleep(0.1)
    raise RuntimeError("Redis did not come back")


@pytest.fixture
def stoppable_redis():
    need(shutil.which("redis-cli") is not None and shutil.which("redis-server") is not None, "needs redis-server and redis-cli")
    need(_redis_up(), "needs Redis on 127.0.0.1:6379")
    if not (os.environ.get("CI") or os.environ.get("PORTAL_FAULT_TESTS")):
        pytest.skip("stops the machine's Redis: runs in CI or with PORTAL_FAULT_TESTS=1")
    yield
    if not _redis_up():
        _start_redis()


def test_readyz_reports_broker_down_and_recovers(client, db, settings, stoppable_redis):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    assert client.get("/readyz").status_code == 200
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"], capture_output=True, timeout=10)
    for _ in range(50):
        if not _redis_up():
            break
        time.sleep(0.1)
    started = time.monotonic()
    r = client.get("/readyz")
    elapsed = time.monotonic() - started
    assert r.status_code == 503
    assert r.json()["broker"] == "down" and r.json()["database"] == "ok"
    assert elapsed < 5, f"/readyz took {elapsed:.1f}s with the broker down"
    # Pages keep working without the broker.
    assert client.get("/healthz").status_code == 200
    _start_redis()
    assert client.get("/readyz").status_code == 200
