"""Freeze windows: a deployment inside one is refused with its reason (service, API 409, page), a rollback in
the same freeze runs, a lead overrides with a reason (audited), recurring windows, automatic freezes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from deployments import freezes, services
from deployments.errors import NeedsApproval
from deployments.freezes import Frozen
from deployments.models import Deployment, FreezeWindow, Rollback
from deployments.rollback import rollback_advance
from portal.audit.models import AuditEvent
from portal.cloud import aws
from portal.cloud.models import Environment
from portal.incidents.models import Incident

# Thursday 3 and Friday 4 December 2026.
THURSDAY_16 = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
FRIDAY_16 = datetime(2026, 12, 4, 16, 0, tzinfo=UTC)
FRIDAY_14 = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)


@pytest.fixture
def plain_env(db):
    return Environment.objects.create(name="freeze-env", region="us-east-1", endpoint_url="http://127.0.0.1:9")


def _freeze_now(env, actor, reason="release party: no deployments", **kw):
    now = timezone.now()
    return freezes.freeze_create(environment=env, starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(hours=2),
                                 reason=reason, actor=actor, **kw)


def _deploy(env, actor, version, **kw):
    return services.deployment_create(environment=env, version=version, strategy="canary-quick",
                                      launch_template_version="$Latest", actor=actor, **kw)


def test_deployment_in_a_freeze_is_refused_with_the_reason_and_a_rollback_in_it_runs(
        aws_platform, strategies, responder, api_client, make_token):
    env = aws_platform
    dep = _deploy(env, responder, "v2")
    aws.set_listener_weights(env, {"blue": 75, "green": 25})  # the rollout had moved a quarter of the traffic
    _freeze_now(env, responder)

    # The rollback in the same freeze runs to the end: blue has all the traffic again, read back.
    r = api_client.post("/api/v1/environments/sandbox/rollback", {"reason": "errors on green"}, token=make_token("actions"))
    assert r.status_code == 202, r.content
    assert rollback_advance(rollback_id=Rollback.objects.get().pk) == "completed"
    assert Rollback.objects.get().weights_after == {"blue": 100, "green": 0}
    assert Deployment.objects.get(pk=dep.pk).state == "rolled_back"

    # A new deployment is refused, naming the freeze's reason: by the service ...
    with pytest.raises(Frozen) as refused:
        _deploy(env, responder, "v3")
    assert "release party: no deployments" in refused.value.detail and refused.value.status == 409
    # ... and by the API, 409 with the reason.
    r = api_client.post("/api/v1/deployments", {"environment": "sandbox", "version": "v3", "strategy": "canary-quick",
                                                "launch_template_version": "$Latest"}, token=make_token("actions"))
    assert r.status_code == 409, r.content
    assert r.json()["error"] == "frozen" and "release party: no deployments" in r.json()["detail"]
    assert not Deployment.objects.filter(release__version="v3").exists()


def test_a_lead_overrides_a_freeze_with_a_reason_audited_a_responder_cannot(aws_platform, strategies, responder, lead,
                                                                             api_client, make_token):
    env = aws_platform
    _freeze_now(env, responder)
    with pytest.raises(NeedsApproval):
        _deploy(env, responder, "v3", override_freeze_reason="I am sure")
    r = api_client.post("/api/v1/deployments", {"environment": "sandbox", "version": "v3", "strategy": "canary-quick",
                                                "launch_template_version": "$Latest", "override_freeze_reason": "hotfix"},
                        token=make_token("actions"))
    assert r.status_code == 403 and "only a lead" in r.json()["detail"]
    assert not Deployment.objects.exists()

    dep = _deploy(env, lead, "v3", override_freeze_reason="security hotfix for the login page")
    assert dep.freeze_override_reason == "security hotfix for the login page"
    row = AuditEvent.objects.get(verb="deployment.freeze_override")
    assert row.actor_label == lead.username
    assert row.extra["override_reason"] == "security hotfix for the login page"
    assert row.extra["freeze_reason"] == "freeze: release party: no deployments"
    assert row.extra["version"] == "v3"


def test_recurring_friday_after_15_freeze(plain_env, responder):
    w = FreezeWindow.objects.create(environment=plain_env, starts_at=datetime(2026, 11, 6, 15, 0, tzinfo=UTC),
                                    ends_at=datetime(2026, 11, 7, 0, 0, tzinfo=UTC), rrule="FREQ=WEEKLY;BYDAY=FR",
                                    reason="Fridays after 15:00")
    on = freezes.active_freeze(plain_env, FRIDAY_16)
    assert on is not None and on.kind == "window" and on.window == w
    assert on.until == datetime(2026, 12, 5, 0, 0, tzinfo=UTC)
    assert "Fridays after 15:00" in on.reason
    assert freezes.active_freeze(plain_env, THURSDAY_16) is None
    assert freezes.active_freeze(plain_env, FRIDAY_14) is None
    # Lifted: no Friday is frozen any more.
    w.ended_at = datetime(2026, 12, 1, tzinfo=UTC)
    w.save(update_fields=["ended_at"])
    assert freezes.active_freeze(plain_env, FRIDAY_16) is None


def test_an_open_critical_incident_freezes_automatically(plain_env):
    now = timezone.now()
    warning = Incident.objects.create(grouping_key="w", source="internal", severity="warning", environment=plain_env,
                                      title="CPU high", opened_at=now)
    assert freezes.active_freeze(plain_env) is None
    inc = Incident.objects.create(grouping_key="c", source="internal", severity="critical", environment=plain_env,
                                  title="Error rate above 5 % on green", opened_at=now)
    on = freezes.active_freeze(plain_env)
    assert on is not None and on.kind == "incident" and on.incident == inc
    assert "Error rate above 5 % on green" in on.reason
    inc.status = Incident.Status.RESOLVED
    inc.resolved_at = timezone.now()
    inc.save(update_fields=["status", "resolved_at"])
    assert warning.is_open and freezes.active_freeze(plain_env) is None


def test_a_spent_uptime_error_budget_freezes_automatically(plain_env):
    from portal.health.models import Slo

    slo = Slo.objects.create(slug="uptime-x", name="Uptime", kind=Slo.Kind.AVAILABILITY, metric="error_rate",
                             comparison="gte", target=99.9, environment=plain_env, budget_remaining_pct=12.0)
    assert freezes.active_freeze(plain_env) is None
    slo.budget_remaining_pct = -40.0
    slo.save(update_fields=["budget_remaining_pct"])
    on = freezes.active_freeze(plain_env)
    assert on is not None and on.kind == "slo" and "error budget is spent" in on.reason


def test_freeze_api_create_list_lift_and_bad_input(plain_env, api_client, make_token):
    actions, lead = make_token("actions"), make_token("lead")
    url = "/api/v1/environments/freeze-env/freezes"
    bad = [
        ({"starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z", "reason": "x"}, "after starts_at"),
        ({"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z", "reason": "  "}, "reason"),
        ({"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z", "reason": "x", "rrule": "FREQ=SECONDLY"},
         "FREQ"),
        ({"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z", "reason": "x",
          "rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"}, "no occurrence"),
        ({"starts_at": "not a time", "ends_at": "2030-01-01T01:00:00Z", "reason": "x"}, "starts_at"),
    ]
    for body, words in bad:
        r = api_client.post(url, body, token=actions)
        assert r.status_code == 422, (body, r.content)
        assert words in r.json()["detail"], (body, r.json())
    assert not FreezeWindow.objects.exists()

    now = timezone.now()
    r = api_client.post(url, {"starts_at": (now - timedelta(minutes=5)).isoformat(), "ends_at": (now + timedelta(hours=1)).isoformat(),
                              "reason": "black friday"}, token=actions)
    assert r.status_code == 201, r.content
    created = r.json()
    assert created["active"] is True and created["created_by"].startswith("token:")
    listed = api_client.get(url, token=make_token("read")).json()
    assert listed["frozen"] is True and listed["active"][0]["kind"] == "window"
    assert [w["reason"] for w in listed["windows"]] == ["black friday"]

    lift = f"{url}/{created['id']}"
    assert api_client.c.delete(lift, headers={"Authorization": f"Bearer {actions}"}).status_code == 403
    r = api_client.c.delete(lift, headers={"Authorization": f"Bearer {lead}"})
    assert r.status_code == 200 and r.json()["lifted_at"] is not None
    assert api_client.get(url, token=lead).json()["frozen"] is False
    assert AuditEvent.objects.filter(verb="freeze.lift", extra__freeze=created["id"]).count() == 1


def test_freeze_page_roles_and_banner(plain_env, client, viewer, responder, lead, settings):
    settings.DEFAULT_ENVIRONMENT = "freeze-env"
    form = {"environment": "freeze-env", "starts_at": "2020-01-03T15:00", "ends_at": "2020-01-04T00:00",
            "rrule": "FREQ=WEEKLY;BYDAY=FR", "reason": "Friday afternoons"}
    client.force_login(viewer)
    assert client.post("/deployments/freezes/new/", form).status_code == 403
    assert not FreezeWindow.objects.exists()
    assert client.get("/deployments/freezes/?environment=freeze-env").status_code == 200

    client.force_login(responder)
    assert client.post("/deployments/freezes/new/", form).status_code == 302
    w = FreezeWindow.objects.get()
    assert w.rrule == "FREQ=WEEKLY;BYDAY=FR" and w.created_by_label == responder.username
    assert client.post(f"/deployments/freezes/{w.public_id}/lift/").status_code == 403

    now = timezone.now()
    _freeze_now(plain_env, responder, reason="database migration")
    banner = client.get("/deployments/banner/").content.decode()
    assert "Deployments are frozen on freeze-env" in banner and "database migration" in banner
    page = client.get("/deployments/freezes/").content.decode()
    assert "database migration" in page and "Friday afternoons" in page

    client.force_login(lead)
    assert client.post(f"/deployments/freezes/{w.public_id}/lift/").status_code == 302
    assert FreezeWindow.objects.get(pk=w.pk).ended_at >= now
    assert AuditEvent.objects.filter(verb="freeze.lift", actor_label=lead.username).count() == 1
