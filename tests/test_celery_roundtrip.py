"""A task makes the round trip through a real worker: once on the embedded broker, once on Redis."""

import os
import subprocess
import sys
import time

import pytest
from celery import Celery

pytestmark = [pytest.mark.real_broker, pytest.mark.slow]


def _worker(env_extra, tmp_path):
    env = {**os.environ, **env_extra, "PORTAL_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings"}
    env.pop("DATABASE_URL", None)
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", "default", "--pool", "solo", "--loglevel", "WARNING"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _roundtrip(app, proc):
    try:
        result = app.send_task("portal.ping", args=["hello"], queue="default", routing_key="default", exchange="default")
        # A bound, not a wait: get() returns as soon as the worker answers (a cold worker on a busy
        # 2-core machine, importing the whole portal, has been seen to need more than a minute).
        assert result.get(timeout=180) == "hello"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        print(out)


# Celery lets the CELERY_BROKER_URL environment variable override an app's broker argument, so
# the client side sets it to the broker under test.


def test_roundtrip_embedded_broker(tmp_path, monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", "filesystem://")
    queue = tmp_path / "broker" / "queue"
    control = tmp_path / "broker" / "control"
    results = tmp_path / "results"
    for d in (queue, control, results):
        d.mkdir(parents=True, exist_ok=True)
    proc = _worker({"CELERY_BROKER_URL": "filesystem://", "CELERY_RESULT_BACKEND": f"file://{results}"}, tmp_path)
    app = Celery("client", broker="filesystem://", backend=f"file://{results}")
    app.conf.broker_transport_options = {"data_folder_in": str(queue), "data_folder_out": str(queue),
                                         "control_folder": str(control), "polling_interval": 0.1}
    app.conf.task_serializer = "json"
    _roundtrip(app, proc)


def test_roundtrip_redis(tmp_path, redis_url, monkeypatch):
    monkeypatch.setenv("CELERY_BROKER_URL", redis_url)
    proc = _worker({"CELERY_BROKER_URL": redis_url, "CELERY_RESULT_BACKEND": redis_url}, tmp_path)
    app = Celery("client", broker=redis_url, backend=redis_url)
    app.conf.task_serializer = "json"
    time.sleep(0.5)
    _roundtrip(app, proc)
