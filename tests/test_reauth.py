"""A production rollback or failover asks for the password again when the login is old."""

import time

import pytest

from portal.accounts.reauth import AUTH_AT_KEY
from portal.audit.models import AuditEvent
from portal.cloud.models import Environment


@pytest.fixture
def production(db):
    return Environment.objects.create(name="production", is_production=True, region="us-east-1",
                                      endpoint_url="http://127.0.0.1:9")  # nothing listens: AWS calls fail fast


def _age_login(client, seconds):
    session = client.session
    session[AUTH_AT_KEY] = time.time() - seconds
    session.save()


def test_fresh_login_is_not_asked_again(client, lead, production):
    client.force_login(lead)
    r = client.post("/deployments/rollback/?environment=production", {"reason": "bad deploy"})
    assert not r["Location"].startswith("/accounts/reauth/")


def test_old_login_must_confirm_password_before_production_rollback(client, lead, production, settings):
    client.force_login(lead)
    _age_login(client, settings.REAUTH_SECONDS + 60)
    before = AuditEvent.objects.filter(verb__startswith="deployment").count() + AuditEvent.objects.filter(verb__contains="rollback").count()
    r = client.post("/deployments/rollback/?environment=production", {"reason": "bad deploy"})
    assert r.status_code == 302 and r["Location"].startswith("/accounts/reauth/")
    # Nothing was attempted.
    after = AuditEvent.objects.filter(verb__startswith="deployment").count() + AuditEvent.objects.filter(verb__contains="rollback").count()
    assert after == before
    page = client.get(r["Location"])
    assert b"Confirm your password" in page.content and b"roll back production" in page.content
    wrong = client.post("/accounts/reauth/", {"password": "nope", "next": "/deployments/?environment=production", "what": "roll back production"})
    assert wrong.status_code == 400
    assert AuditEvent.objects.filter(verb="user.reauth", result="denied").count() == 1
    ok = client.post("/accounts/reauth/", {"password": lead.raw_password, "next": "/deployments/?environment=production", "what": "roll back production"})
    assert ok.status_code == 302 and ok["Location"] == "/deployments/?environment=production"
    r = client.post("/deployments/rollback/?environment=production", {"reason": "bad deploy"})
    assert not r["Location"].startswith("/accounts/reauth/")


def test_old_login_must_confirm_before_failover(client, lead, production, settings):
    client.force_login(lead)
    _age_login(client, settings.REAUTH_SECONDS + 60)
    r = client.post("/deployments/rds-failover/?environment=production", {"reason": "primary down"})
    assert r.status_code == 302 and r["Location"].startswith("/accounts/reauth/")


def test_non_production_never_asks(client, lead, db, settings):
    Environment.objects.create(name="staging", is_production=False, endpoint_url="http://127.0.0.1:9")
    client.force_login(lead)
    _age_login(client, settings.REAUTH_SECONDS + 60)
    r = client.post("/deployments/rollback/?environment=staging", {"reason": "x"})
    assert not r["Location"].startswith("/accounts/reauth/")


def test_reauth_refuses_offsite_next(client, lead, db):
    client.force_login(lead)
    r = client.post("/accounts/reauth/", {"password": lead.raw_password, "next": "https://evil.example/"})
    assert r["Location"] == "/"
