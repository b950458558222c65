"""Debian's prometheus-alertmanager, configured with a bearer token, delivers to the portal: an incident
appears with its runbook, and resolves when the alert resolves."""

import datetime as dt
import shutil
import subprocess
import time

import pytest
import requests

from conftest import need
from portal.incidents.models import AlertDelivery, Incident
from portal.incidents.seed import seed
from portal.plan.loader import load_plan
from tests.plugins.aws import free_port

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(predicate, timeout=40.0, step=0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


@pytest.fixture
def alertmanager(live_server, make_token, tmp_path):
    need(BINARY is not None, "needs Debian's prometheus-alertmanager")
    token = make_token("alerts:write")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text(f"""
route:
  receiver: portal
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: portal
    webhook_configs:
      - url: {live_server.url}/api/v1/alerts/alertmanager
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: {token}
""")
    proc = subprocess.Popen(
        [BINARY, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    ready = wait_for(lambda: _ok(base + "/-/ready"), timeout=20)
    if not ready:
        proc.kill()
        pytest.fail(f"alertmanager did not start: {proc.stderr.read()[:500] if proc.stderr else ''}")
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def _ok(url):
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _post_alert(base, ends_at=None):
    now = dt.datetime.now(dt.UTC)
    alert = {
        "labels": {"alertname": "DatabaseConnectionsHigh", "severity": "critical", "service": "api"},
        "annotations": {"summary": "RDS connections above 80%"},
        "generatorURL": "http://prometheus:9090/graph?g0.expr=pg_connections",
        "startsAt": (now - dt.timedelta(seconds=30)).isoformat().replace("+00:00", "Z"),
    }
    if ends_at is not None:
        alert["endsAt"] = ends_at.isoformat().replace("+00:00", "Z")
    r = requests.post(base + "/api/v2/alerts", json=[alert], timeout=5)
    assert r.status_code == 200, r.text


def test_real_alertmanager_opens_and_resolves_an_incident(alertmanager):
    seed(load_plan(), reset=False)
    _post_alert(alertmanager)
    incident = wait_for(lambda: Incident.objects.filter(title__startswith="DatabaseConnectionsHigh").first())
    assert incident is not None, "no incident arrived from Alertmanager"
    assert incident.severity == "critical" and incident.runbook_slug == "database-issues"
    assert incident.alerts.get().generator_url.startswith("http://prometheus:9090/graph")
    delivery = AlertDelivery.objects.first()
    assert delivery.payload["version"] == "4" and delivery.status == "processed"

    _post_alert(alertmanager, ends_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    resolved = wait_for(lambda: Incident.objects.filter(pk=incident.pk, status="resolved").first())
    assert resolved is not None, "the incident did not resolve when the alert resolved"
    assert Incident.objects.count() == 1
