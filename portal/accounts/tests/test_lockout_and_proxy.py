"""Wrong passwords lock the re-auth form like the login form; the lockout keys on the real client
address behind the proxy; /metrics and the API docs can be restricted."""

from __future__ import annotations

import time

import pytest
from django.test import RequestFactory

from portal.accounts.clientip import client_ip
from portal.accounts.reauth import AUTH_AT_KEY

PROXY = "10.0.0.2"


@pytest.fixture(autouse=True)
def _axes_on(settings):
    settings.AXES_ENABLED = True
    settings.TRUSTED_PROXIES = [PROXY]


def _old_login(client, user, settings):
    client.force_login(user)
    session = client.session
    session[AUTH_AT_KEY] = time.time() - settings.REAUTH_SECONDS - 60
    session.save()


def _reauth(client, password):
    return client.post("/accounts/reauth/", {"password": password, "next": "/", "what": "roll back production"})


def test_ten_wrong_reauth_passwords_lock_even_the_right_one(client, lead, settings):
    assert settings.AXES_FAILURE_LIMIT <= 10
    _old_login(client, lead, settings)
    statuses = [_reauth(client, f"wrong-{i}").status_code for i in range(10)]
    assert statuses[: settings.AXES_FAILURE_LIMIT - 1] == [400] * (settings.AXES_FAILURE_LIMIT - 1)
    assert set(statuses[settings.AXES_FAILURE_LIMIT:]) == {429}
    before = client.session[AUTH_AT_KEY]
    r = _reauth(client, lead.raw_password)
    assert r.status_code == 429
    assert client.session[AUTH_AT_KEY] == before  # not confirmed
    from portal.audit.models import AuditEvent

    assert AuditEvent.objects.filter(verb="user.reauth", result="ok").count() == 0


def test_reauth_failures_below_the_limit_do_not_lock(client, lead, settings):
    _old_login(client, lead, settings)
    for i in range(settings.AXES_FAILURE_LIMIT - 1):
        assert _reauth(client, f"wrong-{i}").status_code == 400
    r = _reauth(client, lead.raw_password)
    assert r.status_code == 302 and r["Location"] == "/"


def _login(client, user, password, **meta):
    return client.post("/accounts/login/", {"username": user.username, "password": password}, **meta)


def test_lockout_behind_the_proxy_does_not_lock_the_lead_out_from_another_client(client, lead, settings, django_user_model):
    attacker = {"REMOTE_ADDR": PROXY, "HTTP_X_FORWARDED_FOR": "203.0.113.5"}
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(client, lead, f"guess-{i}", **attacker)
    # The attacker's address is locked, even with the right password ...
    assert _login(client, lead, lead.raw_password, **attacker).status_code == 429
    # ... the lead at another address behind the same proxy logs in.
    from django.test import Client

    r = _login(Client(), lead, lead.raw_password, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert r.status_code == 302 and r["Location"] == "/"


def test_forged_forwarded_for_from_a_non_proxy_is_ignored(client, lead, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(client, lead, f"guess-{i}", REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR=f"198.51.100.{i + 10}")
    # A new forged address does not buy new tries: the failures counted against 192.0.2.9.
    r = _login(client, lead, lead.raw_password, REMOTE_ADDR="192.0.2.9", HTTP_X_FORWARDED_FOR="198.51.100.200")
    assert r.status_code == 429


@pytest.mark.parametrize(("remote", "header", "expected"), [
    (PROXY, "203.0.113.5", "203.0.113.5"),
    (PROXY, "6.6.6.6, 203.0.113.5", "203.0.113.5"),  # the client prepended a lie; the proxy appended the truth
    (PROXY, "203.0.113.5, 10.0.0.2", "203.0.113.5"),  # a second trusted hop is skipped
    (PROXY, "", PROXY),
    (PROXY, "not-an-ip", PROXY),
    ("192.0.2.9", "203.0.113.5", "192.0.2.9"),  # not from the proxy: the header is ignored
])
def test_client_ip_takes_the_rightmost_untrusted_address(remote, header, expected, settings):
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=header)
    assert client_ip(request) == expected


def test_metrics_open_by_default(client, db):
    assert client.get("/metrics").status_code == 200


def test_metrics_restricted_by_token(client, db, settings):
    settings.METRICS_TOKEN = "scrape-token-0123456789"
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-token-0123456789"}).status_code == 200


def test_metrics_restricted_by_address_seen_through_the_proxy(client, db, settings):
    settings.METRICS_ALLOWED_CIDRS = ["10.9.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.9.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="10.9.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.9.3.4").status_code == 403


def test_api_docs_open_by_default(client, db):
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_api_docs_restricted_to_tokens_users_and_addresses(client, db, settings, make_token, viewer):
    settings.API_DOCS_REQUIRE_TOKEN = True
    settings.API_DOCS_ALLOWED_CIDRS = ["10.9.0.0/16"]
    assert client.get("/api/v1/openapi.json").status_code == 403
    assert client.get("/api/v1/docs").status_code == 403
    token = make_token("read")
    assert client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert client.get("/api/v1/openapi.json", REMOTE_ADDR="10.9.0.5").status_code == 200
    client.force_login(viewer)
    assert client.get("/api/v1/docs").status_code == 200
