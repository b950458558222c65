"""API and pages: scopes and roles, 409/422/403, confirmations, live regions."""

from __future__ import annotations

from deployments import cloudops, errors, services
from deployments.models import Rollback, ScaleAction
from deployments.rollback import rollback_advance
from deployments.tests.conftest import drive
from portal.audit.models import AuditEvent
from portal.cloud import aws


def _canary(env, responder, clock, until=("holding",)):
    dep = services.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    drive(dep, clock, until=until)
    return dep


def test_api_create_list_and_controls(aws_platform, strategies, fake_metrics, api_client, make_token, clock):
    token = make_token("actions")
    r = api_client.post("/api/v1/deployments", {"environment": "sandbox", "version": "v9", "strategy": "canary-quick",
                                                "launch_template_version": "$Latest"}, token=token)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["state"] == "pending" and body["to_colour"] == "green" and body["steps"] == 4
    r = api_client.post("/api/v1/deployments", {"environment": "sandbox", "version": "v10", "strategy": "canary",
                                                "launch_template_version": "1"}, token=token)
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    assert api_client.get("/api/v1/deployments", token=make_token("read")).json()[0]["version"] == "v9"
    r = api_client.post(f"/api/v1/deployments/{body['id']}/pause", {"reason": "look"}, token=token)
    assert r.status_code == 200 and r.json()["state"] == "paused"
    r = api_client.post(f"/api/v1/deployments/{body['id']}/abort", {}, token=token)
    assert r.status_code == 200 and r.json()["state"] == "aborted"
    assert api_client.post(f"/api/v1/deployments/{body['id']}/resume", {}, token=token).status_code == 409
    assert api_client.post("/api/v1/deployments/not-a-uuid/pause", {}, token=token).status_code == 404


def test_api_bad_input_is_422(aws_platform, strategies, api_client, make_token):
    token = make_token("actions")
    r = api_client.post("/api/v1/deployments", {"environment": "sandbox", "version": "v9"}, token=token)
    assert r.status_code == 422 and r.json()["error"] == "invalid"
    r = api_client.post("/api/v1/deployments", {"version": "v9", "launch_template_version": "x!"}, token=token)
    assert r.status_code == 422
    r = api_client.post("/api/v1/environments/sandbox/scale", {"colour": "purple", "desired": 2, "reason": "x"}, token=token)
    assert r.status_code == 422 and "blue or green" in r.json()["detail"]
    r = api_client.post("/api/v1/environments/sandbox/scale", {"colour": "blue", "desired": 3, "reason": ""}, token=token)
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    r = api_client.post("/api/v1/environments/sandbox/scale", {"colour": "blue"}, token=token)
    assert r.status_code == 422
    assert api_client.post("/api/v1/environments/nowhere/rollback", {}, token=token).status_code == 404


def test_api_rollback_202_then_409(aws_platform, strategies, fake_metrics, fast, clock, responder, api_client, make_token):
    env = aws_platform
    _canary(env, responder, clock)
    token = make_token("actions")
    assert api_client.post("/api/v1/environments/sandbox/rollback", {"reason": "x"}, token=make_token("read")).status_code == 403
    r = api_client.post("/api/v1/environments/sandbox/rollback", {"reason": "errors up"}, token=token)
    assert r.status_code == 202, r.content
    assert r.json()["to_colour"] == "blue" and r.json()["state"] == "requested"
    r2 = api_client.post("/api/v1/environments/sandbox/rollback", {"reason": "me too"}, token=token)
    assert r2.status_code == 409 and r2.json()["error"] == "conflict" and "already rolling back" in r2.json()["detail"]
    rollback_advance(rollback_id=Rollback.objects.get().pk)
    status = api_client.get("/api/v1/environments/sandbox/rollback", token=token).json()
    assert status["state"] == "completed" and status["weights_after"] == {"blue": 100, "green": 0}
    # Nothing left to roll back: still a 409, no second rollback, no second audit event.
    assert api_client.post("/api/v1/environments/sandbox/rollback", {}, token=token).status_code == 409
    assert AuditEvent.objects.filter(verb="environment.rollback").count() == 1


def test_scale_bounds_by_role_and_scope(aws_platform, strategies, api_client, make_token, responder, lead, settings):
    settings.DEPLOYMENTS_SCALE_COOLDOWN_SECONDS = 0
    env = aws_platform
    r = api_client.post("/api/v1/environments/sandbox/scale", {"colour": "blue", "desired": 3, "reason": "peak"},
                        token=make_token("actions"))
    assert r.status_code == 200 and r.json()["read_back"]["desired"] == 3
    # Phase 1 allows 4 per colour: a responder cannot go beyond it, a lead can.
    r = api_client.post("/api/v1/environments/sandbox/scale", {"colour": "blue", "desired": 6, "reason": "launch"},
                        token=make_token("actions"))
    assert r.status_code == 403 and "lead" in r.json()["detail"]
    assert aws.describe_groups(env)["blue"].desired == 3
    r = api_client.post("/api/v1/environments/sandbox/scale", {"colour": "blue", "desired": 6, "reason": "launch"},
                        token=make_token("lead"))
    assert r.status_code == 200 and r.json()["to_desired"] == 6 and r.json()["approved_by"].startswith("token:")
    # Services: the responder is refused, the lead's approval is recorded.
    try:
        services.environment_scale(environment=env, colour="green", desired=5, actor=responder, reason="x", approved_by=responder)
        raise AssertionError("a responder approved themselves")
    except errors.NeedsApproval:
        pass
    a = services.environment_scale(environment=env, colour="green", desired=5, actor=responder, reason="x", approved_by=lead)
    assert a.approved_by == lead and a.read_back["desired"] == 5


def test_scale_cooldown(aws_platform, strategies, responder, settings):
    settings.DEPLOYMENTS_SCALE_COOLDOWN_SECONDS = 60
    services.environment_scale(environment=aws_platform, colour="blue", desired=3, actor=responder, reason="peak")
    try:
        services.environment_scale(environment=aws_platform, colour="blue", desired=4, actor=responder, reason="more")
        raise AssertionError("cooldown ignored")
    except errors.CooldownActive as exc:
        assert "try again" in exc.detail
    assert ScaleAction.objects.count() == 1


def test_viewer_cannot_roll_back_or_scale(aws_platform, strategies, fake_metrics, fast, clock, client, viewer, responder):
    _canary(aws_platform, responder, clock)
    client.force_login(viewer)
    page = client.get("/deployments/")
    assert page.status_code == 200
    assert b'data-testid="rollback-button"' not in page.content
    assert client.post("/deployments/rollback/", {"environment": "sandbox"}).status_code == 403
    assert client.post("/deployments/scale/", {"environment": "sandbox", "colour": "blue", "desired": "3", "reason": "x"}).status_code == 403
    assert not Rollback.objects.exists()
    assert cloudops.read_weights(aws_platform)["green"] == 5


def test_responder_page_rollback_and_live_region(aws_platform, strategies, fake_metrics, fast, clock, client, responder,
                                                 django_capture_on_commit_callbacks):
    env = aws_platform
    dep = _canary(env, responder, clock)
    client.force_login(responder)
    page = client.get("/deployments/").content.decode()
    assert 'data-testid="rollback-button"' in page and "data-confirm=" in page and "back to blue" in page
    assert 'hx-trigger="every 2s"' in page and "v2" in page
    assert "<script>" not in page and 'style="' not in page
    with django_capture_on_commit_callbacks(execute=True):
        r = client.post("/deployments/rollback/", {"environment": "sandbox", "reason": "errors"})
    assert r.status_code == 302
    # The task ran after commit (eagerly in tests): weights are back on blue.
    assert cloudops.read_weights(env) == {"blue": 100, "green": 0}
    live = client.get("/deployments/live/?environment=sandbox", headers={"HX-Request": "true"}).content.decode()
    assert 'data-state="completed"' in live and "blue 100" in live
    detail = client.get(dep.get_absolute_url()).content.decode()
    assert "Rolled back" in detail and "environment.rollback" in detail and "oscar-oncall" in detail
    panel = client.get("/deployments/panel/").content.decode()
    assert "<html" not in panel and "rollback-button" in panel
    chart = client.get("/deployments/chart.json?environment=sandbox").json()
    assert chart["deployment"] == str(dep.public_id)
    assert [m["label"] for m in chart["marks"]][:1] == ["blue 95 / green 5"]
    assert chart["marks"][-1]["label"] == "rollback: blue 100"


def test_page_forms_create_scale_automation(aws_platform, strategies, fake_metrics, client, responder, lead, settings):
    settings.DEPLOYMENTS_SCALE_COOLDOWN_SECONDS = 0
    client.force_login(responder)
    r = client.post("/deployments/new/", {"environment": "sandbox", "version": "v7", "strategy": "canary-quick",
                                          "launch_template_version": "$Latest"}, follow=True)
    assert b"Deployment of v7 to green started" in r.content
    r = client.post("/deployments/scale/", {"environment": "sandbox", "colour": "blue", "desired": "9", "reason": "peak"}, follow=True)
    assert b"a lead must approve" in r.content
    r = client.post("/deployments/scale/", {"environment": "sandbox", "colour": "blue", "desired": "9", "reason": "peak",
                                            "request_approval": "1"}, follow=True)
    action = ScaleAction.objects.get(state="awaiting_approval")
    assert client.post(f"/deployments/scale/{action.public_id}/approve/").status_code == 403
    client.force_login(lead)
    client.post(f"/deployments/scale/{action.public_id}/approve/")
    action.refresh_from_db()
    assert action.state == "applied" and action.approved_by == lead and aws.describe_groups(aws_platform)["blue"].desired == 9
    r = client.post("/deployments/automation/", {"environment": "sandbox", "paused": "1", "reason": "incident"}, follow=True)
    assert b'data-testid="automation-banner"' in r.content
    r = client.post("/deployments/automation/", {"environment": "sandbox", "paused": "0", "reason": ""}, follow=True)
    assert b"reason is required" in r.content


def test_automation_banner_on_every_page(aws_platform, client, viewer, lead):
    client.force_login(viewer)
    assert 'hx-get="/deployments/banner/"' in client.get("/").content.decode()
    assert b"automation-paused" not in client.get("/deployments/banner/").content
    services.automation_set(environment=aws_platform, paused=True, actor=lead, reason="incident 42")
    body = client.get("/deployments/banner/", headers={"HX-Request": "true"}).content.decode()
    assert "Automation is paused on sandbox" in body and "incident 42" in body
    audit = AuditEvent.objects.get(verb="environment.automation")
    assert audit.after == {"automation_paused": True, "dry_run": False} and audit.extra["reason"] == "incident 42"


def test_viewers_share_one_aws_reading_and_see_its_age_while_it_is_read_again(aws_platform, client, viewer, monkeypatch):
    import time

    from django.core.cache import cache

    from deployments import views

    env = aws_platform
    key = views._cloud_state_key(env)
    cache.delete(key)
    reads = []

    def read(e):
        reads.append(time.time())
        return {"error": "", "weights": {"blue": 100, "green": 0},
                "groups": [{"colour": "blue", "desired": 2, "in_service": 2, "healthy": len(reads), "weight": 100}]}

    monkeypatch.setattr(views, "_read_cloud_state", read)
    client.force_login(viewer)
    assert client.get("/deployments/").status_code == 200
    client.get("/deployments/panel/", headers={"HX-Request": "true"})
    assert len(reads) == 1  # a fresh reading serves every page and panel

    reading = cache.get(key)
    reading["read_at"] -= 30
    cache.set(key, reading, 60)
    cache.add(f"{key}:lock", 1, 10)  # another request is reading AWS right now
    body = client.get("/deployments/").content.decode()
    assert len(reads) == 1
    assert 'data-testid="cloud-age">As AWS answered 30 s ago' in body
    assert 'data-testid="weight-blue">100 %' in body

    cache.delete(f"{key}:lock")  # that request is gone: the next page reads again and the age goes
    body = client.get("/deployments/").content.decode()
    assert len(reads) == 2 and 'data-testid="cloud-age"' not in body
    cache.delete(key)
