"""Outbound requests (SSRF): checks outside the sandbox never reach loopback, private or metadata
addresses, by address literal, by name or by redirect; the sandbox's checks still reach 127.0.0.1;
secret headers stay encrypted and unseen; URLs with credentials are redacted where shown."""

from __future__ import annotations

import socket

import pytest
from werkzeug import Response

from portal import outbound
from portal.health.models import Check, OutboundPolicy
from portal.health.runners import run_check

FAKE_PUBLIC = "93.184.216.34"  # what the patched resolver answers for public.example.test


@pytest.fixture
def listener():
    """A bare listening socket on 127.0.0.1: `connected()` tells whether anyone connected to it."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.3)

    class L:
        port = srv.getsockname()[1]

        @staticmethod
        def connected() -> bool:
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                return False
            conn.close()
            return True

    yield L
    srv.close()


@pytest.fixture
def connects(monkeypatch):
    """Every TCP connect attempted in the test (address literal), after the network guard."""
    seen = []
    real = socket.socket.connect

    def spy(self, address, *args):
        seen.append(address)
        return real(self, address, *args)

    monkeypatch.setattr(socket.socket, "connect", spy)
    return seen


@pytest.fixture
def fake_public_dns(monkeypatch):
    """public.example.test resolves to a public address; connecting there reaches `target` on 127.0.0.1."""
    where = {}
    real_resolve = outbound.resolve

    def resolve(host, port):
        if host == "public.example.test":
            return [(socket.AF_INET, (FAKE_PUBLIC, port))]
        return real_resolve(host, port)

    real_connect = outbound.connect

    def connect(family, sockaddr, timeout):
        where.setdefault("pinned", []).append(sockaddr)
        if sockaddr[0] == FAKE_PUBLIC:
            return real_connect(socket.AF_INET, ("127.0.0.1", where["port"]), timeout)
        return real_connect(family, sockaddr, timeout)

    monkeypatch.setattr(outbound, "resolve", resolve)
    monkeypatch.setattr(outbound, "connect", connect)
    return where


def _check(make_check, env, url, **config):
    return make_check(environment=env, config={"url": url, **config}, timeout_seconds=2)


# --- refusal ---------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_check_at_loopback_outside_the_sandbox_never_connects(make_check, public_env, listener, host):
    out = run_check(_check(make_check, public_env, f"http://{host}:{listener.port}/health"))
    assert not out.ok
    assert out.reason.startswith(f"refused to connect to {host}:") and "loopback address" in out.reason
    assert not listener.connected()


def test_check_at_the_metadata_service_never_connects(make_check, public_env, connects):
    out = run_check(_check(make_check, public_env, "http://169.254.169.254/latest/meta-data/iam/security-credentials/"))
    assert not out.ok
    assert "169.254.169.254 is a link-local (cloud metadata service range) address" in out.reason
    assert connects == []


def test_check_without_an_environment_is_public_only(make_check, listener):
    out = run_check(make_check(config={"url": f"http://127.0.0.1:{listener.port}/"}))
    assert not out.ok and "loopback address" in out.reason
    assert not listener.connected()


def test_cert_expiry_probe_is_refused_too(listener):
    from portal.health.httpclient import certificate_days_left

    days, why = certificate_days_left(f"https://127.0.0.1:{listener.port}/", allow_private=False, timeout=1)
    assert days is None and "loopback address" in why
    assert not listener.connected()


@pytest.mark.parametrize("address", [
    "127.0.0.1", "127.8.9.10", "::1", "10.0.0.5", "172.16.3.4", "192.168.1.1", "100.64.0.1", "169.254.169.254",
    "169.254.170.2", "fe80::1", "fc00::1", "fd00:ec2::254", "224.0.0.1", "ff02::1", "0.0.0.0", "::",  # noqa: S104
    "::ffff:127.0.0.1", "::ffff:169.254.169.254", "192.0.2.1", "240.0.0.1",
])
def test_non_public_addresses_are_refused(address):
    assert outbound.address_refusal(address)


@pytest.mark.parametrize("address", [FAKE_PUBLIC, "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert outbound.address_refusal(address) is None


def test_a_name_with_any_private_answer_is_refused(monkeypatch, listener):
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [(socket.AF_INET, (FAKE_PUBLIC, port)),
                                                                 (socket.AF_INET, ("127.0.0.1", port))])
    with pytest.raises(outbound.OutboundRefused) as info:
        outbound.request("GET", f"http://rebind.example.test:{listener.port}/", allow_private=False, timeout=1)
    assert info.value.reason == "127.0.0.1 is a loopback address"
    assert not listener.connected()


# --- pinning and redirects -------------------------------------------------------------------


def test_public_name_connects_to_the_address_it_resolved(make_check, public_env, local_server, fake_public_dns):
    fake_public_dns["port"] = local_server.port
    local_server.expect_request("/up").respond_with_data("up")
    out = run_check(_check(make_check, public_env, f"http://public.example.test:{local_server.port}/up"))
    assert out.ok, out.reason
    assert fake_public_dns["pinned"] == [(FAKE_PUBLIC, local_server.port)]
    assert local_server.log[0][0].headers["Host"] == f"public.example.test:{local_server.port}"


def test_redirect_to_loopback_is_not_followed_outside_the_sandbox(make_check, public_env, local_server, listener,
                                                                   fake_public_dns):
    fake_public_dns["port"] = local_server.port
    local_server.expect_request("/").respond_with_response(
        Response(status=302, headers={"Location": f"http://127.0.0.1:{listener.port}/admin"}))
    out = run_check(_check(make_check, public_env, f"http://public.example.test:{local_server.port}/"))
    assert not out.ok
    assert "refused to connect to 127.0.0.1" in out.reason and "loopback address" in out.reason
    assert len(local_server.log) == 1
    assert not listener.connected()


def test_redirect_to_the_metadata_service_by_name_is_not_followed(public_env, local_server, fake_public_dns, connects):
    fake_public_dns["port"] = local_server.port
    local_server.expect_request("/").respond_with_response(
        Response(status=301, headers={"Location": "http://169.254.169.254/latest/meta-data/"}))
    with pytest.raises(outbound.OutboundRefused):
        outbound.request("GET", f"http://public.example.test:{local_server.port}/", allow_private=False, timeout=1)
    assert all(a[0] != "169.254.169.254" for a in connects)


# --- the sandbox -----------------------------------------------------------------------------


def test_sandbox_checks_still_reach_its_local_endpoints(make_check, private_env, local_server):
    local_server.expect_request("/stripe/").respond_with_data("Stripe is up (sandbox)")
    out = run_check(_check(make_check, private_env, local_server.url_for("/stripe/"), body_contains="up"))
    assert out.ok, out.reason


def test_sandbox_registration_allows_private_targets_and_only_there(db, public_env):
    from portal.sandbox.platform import ENV_FIELDS, register_environment

    env = register_environment(dict.fromkeys(ENV_FIELDS, ""), endpoint_url="http://127.0.0.1:9")
    assert OutboundPolicy.objects.get(environment=env).allow_private_targets is True
    assert outbound.allows_private_targets(env) is True
    assert outbound.allows_private_targets(public_env) is False


def test_cross_origin_redirect_drops_the_secret_headers(make_check, private_env, local_server):
    from pytest_httpserver import HTTPServer

    other = HTTPServer(host="127.0.0.1", port=0)
    other.start()
    try:
        other.expect_request("/landing").respond_with_data("ok")
        local_server.expect_request("/").respond_with_response(
            Response(status=302, headers={"Location": other.url_for("/landing")}))
        check = _check(make_check, private_env, local_server.url_for("/"))
        check.secret_headers = '{"Authorization": "Bearer s3cr3t-token"}'
        out = run_check(check)
        assert out.ok, out.reason
        assert local_server.log[0][0].headers["Authorization"] == "Bearer s3cr3t-token"
        assert "Authorization" not in other.log[0][0].headers
    finally:
        other.stop()


# --- secrets shown nowhere -------------------------------------------------------------------


SECRET = "Bearer tok_live_9f8e7d6c5b4a"


@pytest.fixture
def secret_check(make_check, private_env):
    return make_check(slug="api-with-key", environment=private_env,
                      config={"url": "https://ops:hunter2@api.example.test/health?api_key=abc123&x=1"},
                      secret_headers=f'{{"Authorization": "{SECRET}"}}')


def test_secret_headers_are_encrypted_in_the_row(secret_check):
    from django.db import connection

    with connection.cursor() as c:
        c.execute("SELECT secret_headers FROM health_check WHERE id = %s", [secret_check.pk])
        raw = c.fetchone()[0]
    assert raw.startswith("enc:") and "tok_live" not in raw
    assert Check.objects.get(pk=secret_check.pk).request_headers() == {"Authorization": SECRET}


def test_read_token_sees_no_secret_header_or_url_credential(secret_check, api_client, make_token):
    token = make_token("read")
    detail = api_client.get(f"/api/v1/health/checks/{secret_check.slug}", token=token)
    listing = api_client.get("/api/v1/health/checks", token=token)
    for resp in (detail, listing):
        assert resp.status_code == 200
        text = resp.content.decode()
        assert "tok_live" not in text and "hunter2" not in text and "abc123" not in text
    cfg = detail.json()["config"]
    assert cfg["headers"] == {"Authorization": "***"}
    assert cfg["url"] == "https://***@api.example.test/health?api_key=***&x=1"


def test_viewer_page_shows_no_secret_header_or_url_credential(secret_check, client, viewer):
    client.force_login(viewer)
    resp = client.get(secret_check.get_absolute_url())
    assert resp.status_code == 200
    text = resp.content.decode()
    assert "tok_live" not in text and "hunter2" not in text and "abc123" not in text
    assert "Authorization: ***" in text


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.slack.com/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX", "https://hooks.slack.com/services/***"),
    ("https://user:pw@example.test/a?token=t&page=2", "https://***@example.test/a?token=***&page=2"),
    ("https://discord.com/api/webhooks/123/abcDEF", "https://discord.com/api/webhooks/***"),
    ("https://status.example.test/api/v2/status.json", "https://status.example.test/api/v2/status.json"),
    ("https://example.test/hook/a1b2c3d4e5f6a7b8c9d0e1f2a3b4", "https://example.test/hook/***"),
])
def test_redact_url(url, shown):
    assert outbound.redact_url(url) == shown


@pytest.mark.django_db(transaction=True)
def test_seeded_service_check_reaches_the_sandbox_status_server_by_its_policy(local_server):
    """The seeded Stripe check (public URL, no environment) is pointed at the sandbox's status server
    once, when the sandbox registers its environment (the poll does not rewrite it); the sandbox
    environment's policy, from data, lets that request reach 127.0.0.1."""
    from django.utils import timezone

    from portal.audit.models import AuditEvent
    from portal.health import dispatch, services
    from portal.health.models import CheckResult
    from portal.health.seed import seed_services
    from portal.plan.loader import SeedStats, load_plan
    from portal.sandbox.platform import ENV_FIELDS, register_environment

    seed_services(load_plan(), reset=False, stats=SeedStats())
    public_url = Check.objects.get(slug="service-stripe").config["url"]
    Check.objects.exclude(slug="service-stripe").update(enabled=False)
    Check.objects.filter(slug="service-stripe").update(next_due_at=timezone.now())
    names = {k: {} if k == "buckets" else f"test-{k}" for k in ENV_FIELDS}
    env = register_environment(names, endpoint_url="http://127.0.0.1:1", status_port=local_server.port, actor="system:test")
    stripe = Check.objects.get(slug="service-stripe")
    assert stripe.config["url"] == f"http://127.0.0.1:{local_server.port}/stripe/"
    assert stripe.config["public_url"] == public_url and stripe.config["url_environment_id"] == env.pk
    local_server.expect_request("/stripe/").respond_with_data("Stripe is up (sandbox)")

    services.outbound_policy_set(environment=env, allow_private_targets=True, actor="system:test")
    dispatch.poll_once(wait=True)
    result = CheckResult.objects.get(check_obj__slug="service-stripe")
    assert result.ok, result.reason

    services.outbound_policy_set(environment=env, allow_private_targets=False, actor="system:test")
    Check.objects.filter(slug="service-stripe").update(next_due_at=timezone.now())
    dispatch.poll_once(wait=True)
    latest = CheckResult.objects.filter(check_obj__slug="service-stripe").order_by("-created_at").first()
    assert not latest.ok and "loopback address" in latest.reason
    assert len(local_server.log) == 1
    assert AuditEvent.objects.filter(verb="health.check.point_url", target_id=stripe.slug).count() == 1
    assert Check.objects.get(slug="service-stripe").config == stripe.config
