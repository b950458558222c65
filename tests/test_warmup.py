"""A web process does the first request's imports and connections before it takes traffic."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
import portal.wsgi  # what gunicorn loads in each worker before accepting
print(json.dumps({m: m in sys.modules for m in sys.argv[1:]}))
"""


def _load_wsgi(tmp_path, **env_extra):
    env = {**os.environ, "PORTAL_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings", **env_extra}
    env.pop("DATABASE_URL", None)
    modules = ["portal.incidents.api", "portal.incidents.tasks", "deployments.tasks", "portal.health.tasks"]
    out = subprocess.run([sys.executable, "-c", PROBE, *modules], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


def test_loading_the_wsgi_module_imports_the_views_and_the_tasks(tmp_path):
    loaded, _ = _load_wsgi(tmp_path, CELERY_BROKER_URL="filesystem://")
    assert all(loaded.values()), loaded


def test_a_broker_down_at_boot_is_logged_and_the_process_still_starts(tmp_path):
    # Nothing listens on port 9: the broker step fails, the others still run, the module loads.
    loaded, stderr = _load_wsgi(tmp_path, CELERY_BROKER_URL="redis://127.0.0.1:9/0", LOG_LEVEL="INFO")
    assert all(loaded.values()), loaded
    assert "warm-up step broker failed" in stderr


def test_warmup_can_be_turned_off(tmp_path):
    loaded, _ = _load_wsgi(tmp_path, CELERY_BROKER_URL="filesystem://", PORTAL_WARMUP="0")
    assert not loaded["portal.incidents.tasks"]


def test_the_rollback_clients_of_every_environment_are_built_before_the_first_rollback(db):
    from portal.cloud import clients
    from portal.cloud.clients import ROLLBACK_SERVICES, warm_clients
    from portal.cloud.models import Environment

    Environment.objects.create(name="warm-a", region="us-east-1", credentials_mode="static", endpoint_url="http://127.0.0.1:9")
    Environment.objects.create(name="warm-b", region="eu-west-1", credentials_mode="static", endpoint_url="http://127.0.0.1:9")
    clients.reset_cache()
    warm_clients()  # builds clients only: no call reaches the (closed) endpoint
    built = {(key[1]) for key in clients._clients}
    assert set(ROLLBACK_SERVICES) <= built
    assert len(clients._clients) == 2 * len(ROLLBACK_SERVICES)
    first = clients.raw_client(Environment.objects.get(name="warm-a"), "elbv2")
    assert first is clients.raw_client(Environment.objects.get(name="warm-a"), "elbv2")
    clients.reset_cache()
