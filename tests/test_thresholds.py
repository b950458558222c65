"""One threshold source (issue 20 items 1 and 2): a change of one value reaches every reader, and a
share of requests needs its minimum evidence before it breaches."""

from __future__ import annotations

import io
import json
import shutil
import subprocess

import pytest
import yaml
from django.core.management import call_command

from conftest import need
from deployments import services as deployment_services
from deployments.models import Analysis, DeploymentEvent
from deployments.tests.conftest import clock, drive, fake_metrics, fast, strategies  # noqa: F401 - fixtures
from portal.audit.models import AuditEvent
from portal.checklist.verify import run_check as verify
from portal.cloud.clients import client
from portal.cloud.models import Environment
from portal.health import runners, thresholds
from portal.health.models import Check
from portal.health.seed import seed_thresholds
from portal.health.services import health_checks_ensure_for_environment
from portal.plan.loader import SeedStats, load_plan
from runbooks import checks as runbook_checks

pytestmark = pytest.mark.django_db


class Readings:
    """A metrics source with one error rate and one request count everywhere."""

    def __init__(self, error_rate: float, requests: float):
        self.error_rate_value, self.requests = error_rate, requests

    def value(self, metric, colour=None, minutes=5):
        return {"error_rate": self.error_rate_value, "requests": self.requests}.get(metric)

    def error_rate(self, colour, minutes):
        return self.error_rate_value

    def request_count(self, colour, minutes):
        return self.requests

    def series(self, metric, colour, minutes, period_seconds):
        return []


@pytest.fixture
def rules(db):
    seed_thresholds(load_plan(), reset=True, stats=SeedStats())


def put(api_client, token, metric, severity, body):
    return api_client.c.generic("PUT", f"/api/v1/thresholds/{metric}/{severity}", json.dumps(body),
                                content_type="application/json", headers=api_client._h(token))


def metric_check(env, slug):
    health_checks_ensure_for_environment(environment=env, actor="system:test")
    return Check.objects.select_related("rule", "environment").get(slug=f"{env.name}-{slug}")


def exported() -> dict[str, dict]:
    out = io.StringIO()
    call_command("export_alert_rules", stdout=out, stderr=io.StringIO())
    return {r["labels"]["rule"]: r for r in yaml.safe_load(out.getvalue())["groups"][0]["rules"]}


def test_one_change_of_the_critical_error_rate_reaches_every_reader(
        aws_platform, rules, strategies, fake_metrics, fast, clock, responder, make_token, api_client,  # noqa: F811
        django_capture_on_commit_callbacks, monkeypatch, tmp_path):
    env = aws_platform
    four_percent = Readings(error_rate=4.0, requests=1000)
    monkeypatch.setattr(runners, "metrics_source", lambda env: four_percent)
    monkeypatch.setattr(runbook_checks.cloud_metrics, "metrics_source", lambda env: four_percent)
    check = metric_check(env, "error-rate-critical")
    # Before: 4 % is under the critical 5 % for the health check and the runbook level.
    assert runners.run_check(check).ok is True
    assert runbook_checks.run_check("error_rate_now_vs_hour_ago", environment=env)["status"] == "warning"

    with django_capture_on_commit_callbacks(execute=True):
        r = put(api_client, make_token("lead"), "error_rate", "critical", {"value": 3})
    assert r.status_code == 200, r.content
    assert r.json()["value"] == 3 and r.json()["min_requests"] == 100
    assert "Rollout analysis" in r.json()["readers"] and "Sandbox CloudWatch alarms" in r.json()["readers"]
    audit = AuditEvent.objects.get(verb="health.threshold.update")
    assert audit.before["value"] == 5 and audit.after["value"] == 3 and audit.actor_label.startswith("token:")

    # The health check's verdict.
    check.refresh_from_db()
    outcome = runners.run_check(Check.objects.select_related("rule", "environment").get(pk=check.pk))
    assert outcome.ok is False and "above 3%" in outcome.reason
    # A new runbook step's level.
    assert runbook_checks.run_check("error_rate_now_vs_hour_ago", environment=env)["status"] == "critical"
    # The sandbox's alarm in moto, put again by the sandbox's listener.
    (alarm,) = client(env, "cloudwatch").describe_alarms(AlarmNames=["ftw-error-rate-critical"])["MetricAlarms"]
    assert alarm["Threshold"] == 3.0
    # The checklist's verification reads the new value and finds the alarm at it.
    result = verify("alert-rules", env)
    assert result.outcome == "passing", result.summary
    assert result.evidence["values"]["error-rate-critical"] == 3.0
    # The Prometheus rules, which promtool accepts.
    rule = exported()["error-rate-critical"]
    assert rule["expr"].endswith(") > 3")
    promtool = shutil.which("promtool")
    need(promtool is not None, "promtool is not installed (Debian package: prometheus)")
    target = tmp_path / "rules.yml"
    call_command("export_alert_rules", "--output", str(target), stderr=io.StringIO())
    proc = subprocess.run([promtool, "check", "rules", str(target)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The rollout analysis record: 4 % on both colours is within the margin, but above the critical 3 %.
    for colour in ("blue", "green"):
        fake_metrics.values[colour]["error_rate"] = 4.0
    dep = deployment_services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                                launch_template_version="$Latest", actor=responder)
    assert drive(dep, clock) == "rolling_back"
    failed = Analysis.objects.get(deployment=dep, decision="critical")
    assert any("above the critical 3 %" in reason for reason in failed.reasons), failed.reasons
    assert failed.thresholds["critical_error_rate"] == 3.0
    event = DeploymentEvent.objects.filter(deployment=dep, kind="analysis").order_by("-at", "-id").first()
    assert event.data["thresholds"]["critical_error_rate"] == 3.0


def test_a_lead_token_is_needed_and_an_unknown_pair_is_404(rules, api_client, make_token):
    assert put(api_client, make_token("actions"), "error_rate", "critical", {"value": 1}).status_code == 403
    assert put(api_client, make_token("lead"), "queue_depth", "critical", {"value": 1}).status_code == 404
    # A threshold applies to production too: a lead token without a production grant is refused.
    Environment.objects.create(name="production", is_production=True)
    refused = put(api_client, make_token("lead"), "error_rate", "critical", {"value": 1})
    assert refused.status_code == 403 and "production" in refused.json()["detail"]
    listed = api_client.get("/api/v1/thresholds", token=make_token("read")).json()
    assert {(t["metric"], t["severity"]) for t in listed} >= {("error_rate", "critical"), ("cpu", "warning")}
    assert not AuditEvent.objects.filter(verb="health.threshold.update").exists()


def test_two_errors_in_twenty_requests_do_not_breach_twenty_in_four_hundred_do(rules, aws_platform, monkeypatch):
    warning = thresholds.threshold("error_rate", "warning")
    critical = thresholds.threshold("error_rate", "critical")
    assert warning.min_requests == critical.min_requests == 100
    assert not warning.breached(100 * 2 / 20, requests=20) and not critical.breached(100 * 2 / 20, requests=20)
    assert warning.breached(100 * 20 / 400, requests=400)

    check = metric_check(aws_platform, "error-rate-warning")
    monkeypatch.setattr(runners, "metrics_source", lambda env: Readings(error_rate=10.0, requests=20))
    quiet = runners.run_check(check)
    assert quiet.ok is True and "over only 20 requests" in quiet.reason
    monkeypatch.setattr(runners, "metrics_source", lambda env: Readings(error_rate=5.0, requests=400))
    assert runners.run_check(check).ok is False
    monkeypatch.setattr(runbook_checks.cloud_metrics, "metrics_source", lambda env: Readings(error_rate=10.0, requests=20))
    assert runbook_checks.run_check("error_rate_now_vs_hour_ago", environment=aws_platform)["status"] == "ok"
    # The export and the sandbox alarm carry the same evidence.
    rule = exported()["error-rate-warning"]
    assert "and on() (sum(increase(http_requests_total" in rule["expr"] and ">= 100) > 2" in rule["expr"]


def test_the_thresholds_page_says_who_reads_each_value(rules, client, viewer):
    client.force_login(viewer)
    page = client.get("/health/thresholds/").content.decode()
    for reader in ("Health checks", "Rollout analysis", "Autoscaler", "Runbook check levels", "Checklist verification",
                   "Prometheus rules export", "Sandbox CloudWatch alarms"):
        assert reader in page, reader
    assert "deployments.autoscale" in page
