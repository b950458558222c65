"""Tokens have a life: expiry, revocation (401 at once), last use, list and revoke commands, the admin
action; actions/lead tokens change production only with a grant; no one approves their own request."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from portal.accounts.models import ApiToken
from portal.accounts.services import api_token_create
from portal.cloud.models import Environment


def _call(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_revoked_token_gets_401_at_once(api_client, make_token):
    raw = make_token("read", name="ci-reader")
    assert api_client.get("/api/v1/deployments", token=raw).status_code == 200
    assert "revoked token ci-reader" in _call("revoke_api_token", "ci-reader")
    r = api_client.get("/api/v1/deployments", token=raw)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    assert "already revoked" in _call("revoke_api_token", "ci-reader")
    from portal.audit.models import AuditEvent

    assert AuditEvent.objects.filter(verb="api_token.revoke", target_label__startswith="ci-reader").count() == 1


def test_expired_token_gets_401(api_client, make_token):
    raw = make_token("read", name="short-lived")
    assert api_client.get("/api/v1/deployments", token=raw).status_code == 200
    ApiToken.objects.filter(name="short-lived").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert api_client.get("/api/v1/deployments", token=raw).status_code == 401


def test_revoke_unknown_token_is_an_error(db):
    with pytest.raises(CommandError, match="no token named"):
        _call("revoke_api_token", "nope")


def test_create_with_expiry_and_grant_then_list(db):
    Environment.objects.create(name="production", is_production=True, endpoint_url="http://127.0.0.1:9")
    raw = _call("create_api_token", "--name", "deployer", "--scope", "actions", "--expires-days", "7",
                "--environment", "production").strip()
    assert raw.startswith("ftw_")
    token = ApiToken.objects.get(name="deployer")
    assert token.environments == ["production"]
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)
    api_token_create(name="reader", scope="read")
    ApiToken.objects.filter(name="reader").update(revoked_at=timezone.now())
    listing = _call("list_api_tokens")
    lines = listing.splitlines()
    assert lines[0].split() == ["NAME", "SCOPE", "ENVIRONMENTS", "PREFIX", "CREATED", "LAST", "USED", "EXPIRES", "REVOKED"]
    deployer = next(line for line in lines if line.startswith("deployer"))
    assert "actions" in deployer and "production" in deployer and "never" in deployer  # never used
    assert token.expires_at.strftime("%Y-%m-%d") in deployer
    reader = next(line for line in lines if line.startswith("reader"))
    assert timezone.now().strftime("%Y-%m-%d") in reader.split("never")[-1]  # revoked today
    assert raw not in listing


def test_create_refuses_unknown_environment_and_bad_days(db):
    with pytest.raises(CommandError, match="no environment named"):
        _call("create_api_token", "--name", "x", "--scope", "actions", "--environment", "nowhere")
    with pytest.raises(CommandError, match="1 or more"):
        _call("create_api_token", "--name", "y", "--scope", "read", "--expires-days", "0")


def test_last_used_is_touched_at_most_once_a_minute(api_client, make_token, django_assert_num_queries):
    raw = make_token("read", name="poller")
    api_client.get("/api/v1/deployments", token=raw)
    first = ApiToken.objects.get(name="poller").last_used_at
    assert first is not None
    api_client.get("/api/v1/deployments", token=raw)
    assert ApiToken.objects.get(name="poller").last_used_at == first
    ApiToken.objects.filter(name="poller").update(last_used_at=first - timedelta(minutes=2))
    api_client.get("/api/v1/deployments", token=raw)
    assert ApiToken.objects.get(name="poller").last_used_at > first


def test_admin_revokes_from_the_admin_site(client, admin_user, api_client, make_token):
    raw = make_token("read", name="leaked")
    token = ApiToken.objects.get(name="leaked")
    client.force_login(admin_user)
    page = client.get("/admin/accounts/apitoken/")
    assert page.status_code == 200 and b"leaked" in page.content
    r = client.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [token.pk]})
    assert r.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert api_client.get("/api/v1/deployments", token=raw).status_code == 401


def test_admin_page_is_for_admins_only(client, lead):
    client.force_login(lead)
    assert client.get("/admin/accounts/apitoken/").status_code in (302, 403)


# ---------------------------------------------------------------------------------------------- grants


@pytest.fixture
def production(aws_platform):
    aws_platform.is_production = True
    aws_platform.save(update_fields=["is_production"])
    return aws_platform


def test_production_actions_token_without_a_grant_gets_403(api_client, production):
    from deployments.models import Rollback

    _, raw = api_token_create(name="ungranted", scope="actions")
    r = api_client.post(f"/api/v1/environments/{production.name}/rollback", {"reason": "bad"}, token=raw)
    assert r.status_code == 403 and r.json()["error"] == "forbidden" and "grant" in r.json()["detail"]
    r = api_client.post(f"/api/v1/environments/{production.name}/scale", {"colour": "blue", "desired": 3, "reason": "x"},
                        token=raw)
    assert r.status_code == 403
    assert not Rollback.objects.exists()
    # Reading is unchanged.
    assert api_client.get(f"/api/v1/deployments?environment={production.name}", token=raw).status_code == 200


def test_production_lead_token_without_a_grant_gets_403(api_client, production):
    _, raw = api_token_create(name="ungranted-lead", scope="lead")
    r = api_client.post(f"/api/v1/environments/{production.name}/rollback", {"reason": "bad"}, token=raw)
    assert r.status_code == 403


def test_production_actions_token_with_a_grant_proceeds(api_client, production):
    from deployments.models import Rollback

    _, raw = api_token_create(name="granted", scope="actions", environments=[production.name])
    r = api_client.post(f"/api/v1/environments/{production.name}/rollback", {"reason": "bad"}, token=raw)
    assert r.status_code in (202, 409), r.content
    assert r.status_code == 409 or Rollback.objects.filter(environment=production).exists()


def test_grant_for_another_environment_is_no_grant(api_client, production):
    Environment.objects.create(name="production-eu", is_production=True, endpoint_url="http://127.0.0.1:9")
    _, raw = api_token_create(name="eu-only", scope="actions", environments=["production-eu"])
    r = api_client.post(f"/api/v1/environments/{production.name}/rollback", {"reason": "bad"}, token=raw)
    assert r.status_code == 403


# ---------------------------------------------------------------------------------------------- four eyes


def _request(env, actor):
    from deployments import services

    return services.scale_request_approval(environment=env, colour="blue", desired=9, reason="peak", actor=actor)


def test_requester_cannot_approve_their_own_scale_request(aws_platform, lead, lead2):
    from deployments import services
    from deployments.models import ScaleAction

    action = _request(aws_platform, lead)
    with pytest.raises(services.NeedsApproval, match="another lead"):
        services.scale_approve(action=action, actor=lead)
    action.refresh_from_db()
    assert action.state == ScaleAction.State.AWAITING_APPROVAL and action.approved_by is None
    done = services.scale_approve(action=action, actor=lead2)
    assert done.state == ScaleAction.State.APPLIED and done.approved_by == lead2


def test_requesting_token_cannot_approve_its_own_request(aws_platform):
    from deployments import services

    token, _ = api_token_create(name="autoscaler-bot", scope="lead")
    action = _request(aws_platform, token)
    with pytest.raises(services.NeedsApproval):
        services.scale_approve(action=action, actor=token)


def test_requester_cannot_approve_on_the_page(aws_platform, client, responder, settings):
    """A responder asks, is then made a lead, and tries to approve what they asked for."""
    from django.contrib.auth.models import Group

    from deployments.models import ScaleAction

    action = _request(aws_platform, responder)
    responder.groups.set([Group.objects.get(name="lead")])
    client.force_login(responder)
    r = client.post(f"/deployments/scale/{action.public_id}/approve/", follow=True)
    assert b"another lead must approve" in r.content
    action.refresh_from_db()
    assert action.state == ScaleAction.State.AWAITING_APPROVAL
