"""The sandbox's Prometheus: Debian's binary loading the rules the portal exports, named on the
environment, so "Alert rules configured" compares real loaded rules; a threshold change reaches it."""

from __future__ import annotations

import json
import time

import pytest
import requests
from django.db import connection

from conftest import need
from portal.checklist.verify import run_check as verify
from portal.health.seed import seed_thresholds
from portal.plan.loader import SeedStats, load_plan
from portal.sandbox import prometheus
from tests.plugins.aws import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def loaded_rules(url: str) -> dict[str, dict]:
    groups = requests.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    return {r["labels"].get("rule"): r for g in groups for r in g["rules"]}


def wait_for(condition, what: str):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def sandbox_prometheus(aws_platform, settings, tmp_path):
    need(prometheus.binary() is not None, "needs Debian's prometheus binary (apt-get install -y prometheus)")
    settings.DATA_DIR = tmp_path
    seed_thresholds(load_plan(), reset=True, stats=SeedStats())
    prom = prometheus.SandboxPrometheus("127.0.0.1", free_port())
    assert prom.start(aws_platform), (tmp_path / "prometheus" / "prometheus.log").read_text()
    try:
        yield prometheus.register(aws_platform, prom.url), prom
    finally:
        prom.stop()


def test_the_checklist_compares_the_rules_the_sandbox_prometheus_loaded_and_follows_a_threshold_change(
        sandbox_prometheus, make_token, api_client):
    env, prom = sandbox_prometheus
    assert env.prometheus_url == prom.url
    rules = loaded_rules(prom.url)
    assert rules["error-rate-critical"]["query"].endswith("> 5")
    result = verify("alert-rules", env)
    assert result.outcome == "passing", result.summary
    assert "Prometheus has the" in result.summary

    r = api_client.c.generic("PUT", "/api/v1/thresholds/error_rate/critical", json.dumps({"value": 3}),
                             content_type="application/json", headers=api_client._h(make_token("lead")))
    assert r.status_code == 200, r.content
    assert "Sandbox Prometheus rules" in r.json()["readers"]
    connection.close()  # the listener ran on commit; its reload is asynchronous in Prometheus
    wait_for(lambda: loaded_rules(prom.url)["error-rate-critical"]["query"].endswith("> 3"),
             "Prometheus to load the rule at 3 %")
    result = verify("alert-rules", env)
    assert result.outcome == "passing", result.summary


def test_a_rule_edited_behind_the_portal_fails_the_check_naming_it(sandbox_prometheus):
    env, prom = sandbox_prometheus
    path = prometheus.rules_path()
    path.write_text(path.read_text().replace(") > 5\n", ") > 50\n", 1))
    assert requests.post(f"{prom.url}/-/reload", timeout=5).status_code == 200
    wait_for(lambda: loaded_rules(prom.url)["error-rate-critical"]["query"].endswith("> 50"), "the edited rule")
    result = verify("alert-rules", env)
    assert result.outcome == "failing"
    assert "error-rate-critical" in result.summary and "> 50" in result.summary
