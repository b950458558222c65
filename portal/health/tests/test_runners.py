"""HTTP and Statuspage checks against a local server: healthy, failing, slow, hanging and garbage answers."""

from __future__ import annotations

import time

import pytest
from werkzeug import Response

from portal.cloud.models import Environment
from portal.health.models import Check, OutboundPolicy
from portal.health.runners import run_check
from tests.plugins.aws import free_port

OPERATIONAL = {"page": {"id": "x", "name": "Demo"}, "status": {"indicator": "none", "description": "All Systems Operational"}}


def sandbox():
    """The local sandbox's environment: its outbound policy lets its checks reach 127.0.0.1."""
    env = Environment(name="sandbox", credentials_mode="static")
    env.outbound_policy = OutboundPolicy(allow_private_targets=True)
    return env


def http_check(url, **config):
    timeout = config.pop("timeout", 2)
    return Check(slug="t", name="t", kind=Check.Kind.HTTP, group=Check.Group.EXTERNAL, environment=sandbox(),
                 config={"url": url, **config}, timeout_seconds=timeout)


def status_check(url, **config):
    timeout = config.pop("timeout", 2)
    return Check(slug="s", name="s", kind=Check.Kind.STATUSPAGE, group=Check.Group.EXTERNAL, environment=sandbox(),
                 config={"url": url, **config}, timeout_seconds=timeout)


def slow(seconds, body="ok"):
    def handler(request):
        time.sleep(seconds)
        return Response(body, status=200)

    return handler


# --- plain HTTP -----------------------------------------------------------------------------


def test_http_healthy_with_body_and_latency(local_server):
    local_server.expect_request("/").respond_with_data("Stripe status: all good", status=200)
    out = run_check(http_check(local_server.url_for("/"), body_contains="all good", latency_ms_max=2000))
    assert out.ok, out.reason
    assert "answered HTTP 200" in out.reason
    assert out.latency_ms is not None and out.latency_ms < 2000


def test_http_unexpected_status_fails_with_words(local_server):
    local_server.expect_request("/").respond_with_data("boom", status=500)
    out = run_check(http_check(local_server.url_for("/")))
    assert not out.ok
    assert "answered HTTP 500" in out.reason and "expected 200" in out.reason


def test_http_method_and_expected_status_list(local_server):
    local_server.expect_request("/ping", method="HEAD").respond_with_data("", status=204)
    out = run_check(http_check(local_server.url_for("/ping"), method="HEAD", expect_status=[200, 204]))
    assert out.ok, out.reason


def test_http_body_missing_text_fails(local_server):
    local_server.expect_request("/").respond_with_data("maintenance page", status=200)
    out = run_check(http_check(local_server.url_for("/"), body_contains="All Systems Operational"))
    assert not out.ok
    assert "does not contain 'All Systems Operational'" in out.reason


def test_http_slower_than_latency_limit_fails(local_server):
    local_server.expect_request("/").respond_with_handler(slow(0.3))
    out = run_check(http_check(local_server.url_for("/"), latency_ms_max=100))
    assert not out.ok
    assert "slower than the 100 ms limit" in out.reason


def test_http_hanging_server_times_out_within_its_timeout(local_server):
    local_server.expect_request("/").respond_with_handler(slow(2.0))
    start = time.monotonic()
    out = run_check(http_check(local_server.url_for("/"), timeout=0.5))
    assert time.monotonic() - start < 1.5
    assert not out.ok
    assert "timed out after 0.5 s" in out.reason


def test_http_connection_refused_in_words():
    out = run_check(http_check(f"http://127.0.0.1:{free_port()}/"))
    assert not out.ok
    assert "connection refused by 127.0.0.1" in out.reason


def test_http_unresolvable_host_in_words():
    # The test guard refuses any name but 127.0.0.1, like a closed network without DNS.
    out = run_check(http_check("https://status.example.invalid/"))
    assert not out.ok
    assert "DNS lookup failed for status.example.invalid" in out.reason


def test_missing_url_is_a_failed_result():
    out = run_check(http_check(""))
    assert not out.ok and out.reason == "no URL configured"


# --- Statuspage v2 --------------------------------------------------------------------------


def test_statuspage_operational(local_server):
    local_server.expect_request("/api/v2/status.json").respond_with_json(OPERATIONAL)
    out = run_check(status_check(local_server.url_for("/api/v2/status.json")))
    assert out.ok, out.reason
    assert out.reason == "All Systems Operational"
    assert out.detail["indicator"] == "none"


def test_statuspage_minor_is_ok_with_a_note(local_server):
    local_server.expect_request("/api/v2/status.json").respond_with_json(
        {"status": {"indicator": "minor", "description": "Partially Degraded Service"}})
    out = run_check(status_check(local_server.url_for("/api/v2/status.json")))
    assert out.ok
    assert out.reason == "minor: Partially Degraded Service"


@pytest.mark.parametrize("indicator", ["major", "critical"])
def test_statuspage_major_and_critical_fail(local_server, indicator):
    local_server.expect_request("/api/v2/status.json").respond_with_json(
        {"status": {"indicator": indicator, "description": "Service Outage"}})
    out = run_check(status_check(local_server.url_for("/api/v2/status.json")))
    assert not out.ok
    assert out.reason == f"{indicator}: Service Outage"


def test_statuspage_component_outage_fails(local_server):
    local_server.expect_request("/api/v2/status.json").respond_with_json(OPERATIONAL)
    local_server.expect_request("/api/v2/components.json").respond_with_json({"components": [
        {"name": "SMS", "status": "partial_outage"}, {"name": "Voice", "status": "operational"}]})
    out = run_check(status_check(local_server.url_for("/api/v2/status.json"), components=["SMS", "Voice"]))
    assert not out.ok
    assert "SMS: partial outage" in out.reason
    assert out.detail["components"] == {"SMS": "partial_outage", "Voice": "operational"}


def test_statuspage_answering_html(local_server):
    local_server.expect_request("/api/v2/status.json").respond_with_data(
        "<!doctype html><html><body>Status</body></html>", content_type="text/html")
    out = run_check(status_check(local_server.url_for("/api/v2/status.json")))
    assert not out.ok
    assert out.reason == "the status page answered HTML instead of Statuspage JSON"


def test_statuspage_invalid_json(local_server):
    local_server.expect_request("/api/v2/status.json").respond_with_data('{"status": {"indicator": ', content_type="application/json")
    out = run_check(status_check(local_server.url_for("/api/v2/status.json")))
    assert not out.ok
    assert out.reason.startswith("the status page answered invalid JSON (")


def test_statuspage_server_error(local_server):
    local_server.expect_request("/api/v2/status.json").respond_with_data("oops", status=500)
    out = run_check(status_check(local_server.url_for("/api/v2/status.json")))
    assert not out.ok
    assert out.reason == "the status page answered HTTP 500 INTERNAL SERVER ERROR"


def test_statuspage_json_of_another_shape(local_server):
    local_server.expect_request("/api/v2/status.json").respond_with_json({"ok": True})
    out = run_check(status_check(local_server.url_for("/api/v2/status.json")))
    assert not out.ok
    assert "no status.indicator" in out.reason


def test_statuspage_timeout(local_server):
    local_server.expect_request("/api/v2/status.json").respond_with_handler(slow(2.0))
    out = run_check(status_check(local_server.url_for("/api/v2/status.json"), timeout=0.4))
    assert not out.ok
    assert "timed out after 0.4 s" in out.reason


def test_unknown_kind_and_aws_without_environment():
    assert run_check(Check(slug="x", kind="nope", config={})).reason == "unknown check kind 'nope'"
    out = run_check(Check(slug="x", kind=Check.Kind.RDS, config={}))
    assert not out.ok and out.reason == "this AWS check has no environment"
