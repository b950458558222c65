"""The edge verifications flip on real state: the CloudFlare stand-in (through the official library),
a real Prometheus, the listener's TLS policy in moto, a Grafana stand-in."""

import json
import os
import shutil
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from cloudflare import Cloudflare

from conftest import need
from portal.checklist.verify import run_check
from portal.cloud import cloudflare as cf
from portal.sandbox.platform import DOMAIN
from tests.plugins.aws import free_port


@pytest.fixture
def edge(cloudflare_edge):
    return cloudflare_edge


def _lib(env) -> Cloudflare:
    return Cloudflare(api_token=env.standin.state.token, base_url=env.standin.url)


def _move(env, host: str, **changes):
    lib = _lib(env)
    zone = cf.zone(env)
    rec = next(r for r in lib.dns.records.list(zone_id=zone.id) if r.name == host)
    values = {"type": rec.type, "name": rec.name, "content": rec.content, "proxied": rec.proxied, "ttl": 1, **changes}
    lib.dns.records.edit(rec.id, zone_id=zone.id, **values)


def test_dns_passes_through_cloudflare_and_fails_when_a_record_leaves_the_load_balancer(edge, items):
    r = run_check("dns", edge)
    assert r.outcome == "passing", r.summary
    assert r.evidence["provider"] == "cloudflare" and "proxied" in r.summary
    _move(edge, f"app.{DOMAIN}", content="old-server.example.net")
    r = run_check("dns", edge)
    assert r.outcome == "failing"
    assert f"app.{DOMAIN} points at old-server.example.net, not the load balancer" in r.summary


def test_dns_fails_when_the_record_is_dns_only(edge, items):
    _move(edge, DOMAIN, proxied=False)
    r = run_check("dns", edge)
    assert r.outcome == "failing" and "not proxied" in r.summary


def test_cdn_fails_when_the_video_host_is_not_proxied(edge, items):
    assert run_check("cdn", edge).outcome == "passing"
    _move(edge, f"videos.{DOMAIN}", proxied=False)
    r = run_check("cdn", edge)
    assert r.outcome == "failing" and f"videos.{DOMAIN} is not proxied" in r.summary


def test_dns_on_aws_still_reads_route53(aws_platform, items):
    r = run_check("dns", aws_platform)
    assert r.outcome == "passing" and "Route" not in r.summary and r.evidence.get("provider") is None


def _elb(env):
    from portal.cloud.clients import client

    return client(env, "elbv2")


def test_ssl_passes_on_tls13_and_fails_when_the_listener_is_switched_to_a_tls12_policy(edge, items):
    r = run_check("ssl", edge)
    assert r.outcome == "passing", r.summary
    assert "ELBSecurityPolicy-TLS13-1-2-2021-06" in r.summary
    _elb(edge).modify_listener(ListenerArn=edge.listener_arn, SslPolicy="ELBSecurityPolicy-TLS-1-2-2017-01")
    r = run_check("ssl", edge)
    assert r.outcome == "failing"
    assert "security policy is ELBSecurityPolicy-TLS-1-2-2017-01, not TLS 1.3" in r.summary
    tls = next(line for line in r.evidence["lines"] if line["check"] == "listener TLS")
    assert tls["evidence"]["listener"]["ssl_policy"] == "ELBSecurityPolicy-TLS-1-2-2017-01"
    assert next(line for line in r.evidence["lines"] if line["check"] == "certificate")["outcome"] == "passing"


def test_ssl_fails_when_the_listener_has_no_certificate_of_ours(edge, items):
    from portal.cloud.clients import client

    other = client(edge, "acm").request_certificate(DomainName="other.example")["CertificateArn"]
    _elb(edge).modify_listener(ListenerArn=edge.listener_arn, Certificates=[{"CertificateArn": other}])
    r = run_check("ssl", edge)
    assert r.outcome == "failing" and "not an issued, valid one" in r.summary


def test_security_audit_passes_with_each_line_and_its_evidence(edge, items):
    r = run_check("security-audit", edge)
    assert r.outcome == "passing", r.summary
    lines = {line["check"]: line for line in r.evidence["lines"]}
    assert set(lines) == {"RDS encryption", "ElastiCache encryption", "S3 encryption", "R2 encryption", "Secrets Manager",
                          "Rate limiting"}
    assert all(line["outcome"] == "passing" for line in lines.values())
    assert lines["RDS encryption"]["evidence"]["storage_encrypted"] is True
    assert {s["name"] for s in lines["Secrets Manager"]["evidence"]["secrets"]} == {
        "ftw/database", "ftw/cache-auth-token", "ftw/django-secret-key"}


def test_security_audit_fails_on_an_unencrypted_bucket_a_missing_secret_and_no_rate_limits(edge, items):
    from portal.cloud.clients import client

    photos = edge.buckets["photos"]
    client(edge, "s3").delete_bucket_encryption(Bucket=photos)
    client(edge, "secretsmanager").delete_secret(SecretId="ftw/database", ForceDeleteWithoutRecovery=True)
    zone = cf.zone(edge)
    _lib(edge).rulesets.phases.update("http_ratelimit", zone_id=zone.id, rules=[])
    r = run_check("security-audit", edge)
    assert r.outcome == "failing"
    lines = {line["check"]: line for line in r.evidence["lines"]}
    assert lines["S3 encryption"]["summary"] == f"No default encryption on {photos} (photos)"
    assert lines["Secrets Manager"]["summary"] == "ftw/database is not in Secrets Manager"
    assert "no per-user rate limit" in lines["Rate limiting"]["summary"]
    assert lines["RDS encryption"]["outcome"] == "passing"


# --- Prometheus (Debian's binary, loading the exported rules file) ---------------------------------

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def _wait(condition, what: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _get(url: str):
    try:
        return requests.get(url, timeout=1)
    except requests.RequestException:
        return None


@pytest.fixture
def prometheus(tmp_path):
    # Skipped on a machine without it; a failure in CI, which installs it (.ci/run).
    need(os.path.exists(PROMETHEUS), "needs Debian's prometheus binary (apt-get install -y prometheus)")
    port = free_port()
    rules = tmp_path / "ftw-portal.yml"
    rules.write_text("groups: []\n")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  evaluation_interval: 1s\nrule_files:\n  - {rules}\n")
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",  # noqa: S603
                             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: proc.poll() is None and (r := _get(f"{url}/-/ready")) is not None and r.status_code == 200,
              "Prometheus to be ready")

        def loaded() -> dict[str, dict]:
            r = _get(f"{url}/api/v1/rules")
            groups = r.json()["data"]["groups"] if r is not None and r.status_code == 200 else []
            return {x["labels"].get("rule"): x for g in groups for x in g["rules"]}

        def load(text: str, expect):
            rules.write_text(text)
            assert requests.post(f"{url}/-/reload", timeout=5).status_code == 200
            _wait(lambda: expect(loaded()), f"Prometheus to load the rules (has {sorted(loaded())})")

        yield url, load
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_alert_rules_compare_prometheus_and_fail_naming_a_rule_at_50_instead_of_5(aws_platform, items, prometheus):
    from portal.health.management.commands.export_alert_rules import build_rules, render

    url, load = prometheus
    env = aws_platform
    env.prometheus_url = url
    env.save(update_fields=["prometheus_url"])
    doc, _ = build_rules(env)
    load(render(doc), lambda have: "error-rate-critical" in have)
    r = run_check("alert-rules", env)
    assert r.outcome == "passing", r.summary
    assert "Prometheus has the" in r.summary

    rule = next(x for x in doc["groups"][0]["rules"] if x["labels"]["rule"] == "error-rate-critical")
    assert rule["expr"].endswith("> 5")
    rule["expr"] = rule["expr"][: -len("> 5")] + "> 50"
    slow = next(x for x in doc["groups"][0]["rules"] if x["labels"]["rule"] == "cpu-critical")
    slow["for"] = "15m"
    load(render(doc), lambda have: have["error-rate-critical"]["query"].endswith("> 50"))
    r = run_check("alert-rules", env)
    assert r.outcome == "failing"
    assert "FtwErrorRateCritical (error-rate-critical) fires at > 50, the threshold is > 5%" in r.summary
    assert "FtwCpuUsageCritical (cpu-critical) waits 15m, the threshold's window is 5m" in r.summary
    lines = {line["check"]: line for line in r.evidence["lines"]}
    assert lines["CloudWatch alarms"]["outcome"] == "passing"
    compared = {row["threshold"]: row for row in lines["Prometheus rules"]["evidence"]["compared"]}
    assert compared["error-rate-critical"]["rule_value"] == 50 and compared["error-rate-critical"]["value"] == 5

    doc["groups"][0]["rules"] = [x for x in doc["groups"][0]["rules"] if x["labels"]["rule"] != "p95-critical"]
    load(render(doc), lambda have: "p95-critical" not in have)
    r = run_check("alert-rules", env)
    assert "p95-critical: no rule loaded in Prometheus" in r.summary


# --- Grafana (a tiny local stand-in of its search API) ----------------------------------------------

class _Grafana(BaseHTTPRequestHandler):
    dashboards: list = []
    token = "glsa_test"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802
        url = urlsplit(self.path)
        if self.headers.get("Authorization") != f"Bearer {self.token}":
            body, status = {"message": "Unauthorized"}, 401
        elif url.path == "/api/search" and parse_qs(url.query).get("type") == ["dash-db"]:
            body, status = self.server.dashboards, 200
        else:
            body, status = {"message": "Not found"}, 404
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def grafana():
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Grafana)
    server.dashboards = [
        {"uid": "perf", "title": "Page load and API response", "type": "dash-db", "url": "/d/perf", "tags": ["ftw"]},
        {"uid": "jobs", "title": "Job posting end-to-end", "type": "dash-db", "url": "/d/jobs", "tags": []},
        {"uid": "slo", "title": "SLOs", "type": "dash-db", "url": "/d/slo", "tags": ["uptime", "error-rate"]},
        {"uid": "f1", "title": "A folder", "type": "dash-folder", "url": "/f/1", "tags": ["api-p95"]},
    ]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def grafana_env(db, grafana):
    from portal.cloud.models import Environment
    from portal.health.services import outbound_policy_set

    env = Environment.objects.create(name="grafana-env", grafana_url=f"http://127.0.0.1:{grafana.server_address[1]}",
                                     grafana_token=_Grafana.token)
    outbound_policy_set(environment=env, allow_private_targets=True, actor="system:test")
    return env


def test_dashboards_pass_when_grafana_has_one_per_target_and_fail_naming_the_missing_one(grafana_env, grafana, items):
    r = run_check("dashboards", grafana_env)
    assert r.outcome == "passing", r.summary
    assert {d["uid"] for d in r.evidence["dashboards"]} == {"perf", "jobs", "slo"}  # the folder is not a dashboard
    grafana.dashboards = [d for d in grafana.dashboards if d["uid"] != "jobs"]
    r = run_check("dashboards", grafana_env)
    assert r.outcome == "failing" and r.summary == "No dashboard for: Job posting end-to-end max (job-posting)"


def test_dashboards_with_a_wrong_token_could_not_be_checked(grafana_env, items):
    grafana_env.grafana_token = "wrong"
    r = run_check("dashboards", grafana_env)
    assert r.outcome == "error" and "check the token" in r.summary


def test_dashboards_without_grafana_stay_with_people(db, items):
    from portal.cloud.models import Environment

    r = run_check("dashboards", Environment.objects.create(name="no-grafana"))
    assert r.outcome == "error" and "signed off by people only" in r.summary
