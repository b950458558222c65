import socket
import time

import pytest
from django.core.management import call_command

from portal.accounts.models import ApiToken
from portal.audit.models import AppendOnlyError, AuditEvent
from portal.audit.services import audit_record

PAGES = ["/", "/audit/"]


def test_network_guard_blocks_outside_addresses():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with pytest.raises(RuntimeError, match="127.0.0.1"):
        s.connect(("93.184.216.34", 80))
    s.close()
    with pytest.raises(RuntimeError):
        socket.getaddrinfo("example.com", 443)


def test_healthz_and_readyz(client, db):
    assert client.get("/healthz").status_code == 200
    r = client.get("/readyz")
    assert r.status_code == 200, r.content
    assert r.json()["database"] == "ok" and r.json()["broker"] == "ok"


def test_readyz_names_the_broker_when_redis_is_unreachable(client, db, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["broker"] == "down" and body["database"] == "ok"
    assert "broker" in body["problems"]


def test_metrics_exposes_requests_and_queues(client, db):
    client.get("/healthz")
    body = client.get("/metrics").content.decode()
    assert 'portal_http_requests_total{method="GET",route="healthz",status="200"}' in body
    assert "portal_http_request_duration_seconds_bucket" in body
    assert "portal_celery_queue_depth" in body


def test_anonymous_goes_to_login(client, db):
    for url in PAGES:
        r = client.get(url)
        assert r.status_code == 302 and r["Location"].startswith("/accounts/login/"), url


def test_htmx_anonymous_is_told_to_redirect(client, db):
    r = client.get("/", headers={"HX-Request": "true"})
    assert r.status_code == 401 and r["HX-Redirect"] == "/accounts/login/"


@pytest.mark.parametrize("role,expected", [("viewer", 200), ("responder", 200), ("lead", 200), ("admin", 200)])
def test_dashboard_by_role(client, users_by_role, role, expected):
    client.force_login(users_by_role[role])
    r = client.get("/")
    assert r.status_code == expected
    assert b"On-call dashboard" in r.content
    assert f'<span class="role badge">{role}</span>'.encode() in r.content  # the top bar names the role
    for label in (b"Incidents", b"Deployments", b"Runbooks", b"Health", b"Checklist", b"Phases", b"Audit"):
        assert label in r.content


@pytest.mark.parametrize("role,expected", [("viewer", 403), ("responder", 403), ("lead", 200), ("admin", 200)])
def test_audit_page_is_for_leads_and_admins(client, users_by_role, role, expected):
    client.force_login(users_by_role[role])
    assert client.get("/audit/").status_code == expected


def test_audit_page_filters(client, lead):
    audit_record(actor=lead, verb="deployment.rollback", target=("deployment", "d1"), after={"weights": {"blue": 100}})
    audit_record(actor=lead, verb="checklist.sign_off", target=("checklist", "backups"))
    client.force_login(lead)
    body = client.get("/audit/?verb=deployment").content.decode()
    assert "deployment.rollback" in body and "checklist.sign_off" not in body


def test_audit_rows_are_append_only(db, lead):
    event = audit_record(actor=lead, verb="test.thing", target=("x", "1"), before={"a": 1}, after={"a": 2})
    assert event.actor_label == lead.username
    event.verb = "changed"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(verb="x")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.get(pk=event.pk).verb == "test.thing"


def test_audit_records_request_id_and_address(client, admin_user):
    from portal.accounts.services import api_token_create

    # A request through the middleware stack carries its id into rows written during it.
    client.force_login(admin_user)
    r = client.get("/audit/", headers={"X-Request-ID": "req-123"})
    assert r["X-Request-ID"] == "req-123"
    token, _ = api_token_create(name="ctx", scope="read", actor=admin_user)
    row = AuditEvent.objects.get(verb="api_token.create", target_id=str(token.public_id))
    assert row.actor_label == "ada-admin"


def test_create_user_command(db, monkeypatch, capsys):
    monkeypatch.setenv("PORTAL_PASSWORD", "a-long-enough-secret-1")
    call_command("create_user", "nina", "--role", "responder")
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="nina")
    assert user.check_password("a-long-enough-secret-1")
    assert user.has_perm("accounts.respond") and not user.has_perm("accounts.sign_off")
    assert AuditEvent.objects.filter(verb="user.create", target_id=str(user.pk)).count() == 1


def test_create_user_refuses_without_password(db, monkeypatch):
    from django.core.management.base import CommandError

    monkeypatch.delenv("PORTAL_PASSWORD", raising=False)
    with pytest.raises(CommandError, match="PORTAL_PASSWORD"):
        call_command("create_user", "nina", "--role", "viewer")


def test_create_api_token_prints_once_and_stores_hash(db, capsys):
    call_command("create_api_token", "--name", "alertmanager", "--scope", "alerts:write")
    raw = capsys.readouterr().out.strip()
    token = ApiToken.objects.get(name="alertmanager")
    assert raw.startswith("ftw_") and raw not in token.token_hash and len(token.token_hash) == 64
    assert token.grants("alerts:write") and not token.grants("read")


def test_api_requires_token_and_scope(api_client, make_token, lead):
    audit_record(actor=lead, verb="x.y")
    r = api_client.get("/api/v1/audit")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert api_client.get("/api/v1/audit", token="ftw_wrong").status_code == 401
    r = api_client.get("/api/v1/audit", token=make_token("read"))
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = api_client.get("/api/v1/audit", token=make_token("lead"))
    assert r.status_code == 200 and "x.y" in [e["verb"] for e in r.json()["results"]]


def test_api_ignores_session_cookies(client, admin_user):
    client.force_login(admin_user)
    assert client.get("/api/v1/audit").status_code == 401


def test_openapi_document(client, db):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.") and "/api/v1/audit" in doc["paths"]


def test_login_logout_and_throttle(client, lead, settings):
    r = client.post("/accounts/login/", {"username": lead.username, "password": lead.raw_password})
    assert r.status_code == 302
    assert client.get("/").status_code == 200
    client.post("/accounts/logout/")
    assert client.get("/").status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/accounts/login/", {"username": lead.username, "password": "wrong-password"})
    # Locked now: even the right password is refused for this username+address.
    r = client.post("/accounts/login/", {"username": lead.username, "password": lead.raw_password})
    assert r.status_code in (403, 429)
    assert client.get("/").status_code == 302


def test_session_absolute_lifetime(client, responder, settings):
    client.force_login(responder)
    assert client.get("/").status_code == 200
    session = client.session
    session["portal_login_at"] = time.time() - settings.SESSION_ABSOLUTE_SECONDS - 5
    session.save()
    r = client.get("/")
    assert r.status_code == 302 and "expired=1" in r["Location"]
    assert client.get("/").status_code == 302


def test_deactivated_user_session_ends(client, responder):
    client.force_login(responder)
    assert client.get("/").status_code == 200
    responder.is_active = False
    responder.save()
    assert client.get("/").status_code == 302


def test_security_headers(client, viewer):
    client.force_login(viewer)
    r = client.get("/")
    assert "script-src 'self'" in r["Content-Security-Policy"]
    assert r["X-Frame-Options"] == "DENY"
    assert r["X-Content-Type-Options"] == "nosniff"
    assert b"<script>" not in r.content  # no inline scripts: the CSP would block them


def test_request_body_limit_allows_5mb(settings):
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= 5 * 1024 * 1024
