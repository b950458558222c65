"""Step-up everywhere: every production change asks an old login for the password, and changes nothing first."""

from __future__ import annotations

import time

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from portal.accounts.reauth import AUTH_AT_KEY
from portal.accounts.roles import ADMINISTER, APPROVE, RESPOND
from portal.audit.models import AuditEvent
from portal.cloud.models import Environment

# Changing views that never change production, and why (a new changing view must be listed here or use @step_up).
NO_STEP_UP = {
    "health:run_now": "runs a read-only check on the next poll",
    "runbooks:start": "opens a run; its actions ask",
    "runbooks:step_record": "records an observation",
    "runbooks:step_escalate": "pages a person",
    "runbooks:run_abandon": "closes a run",
    "cloud:drills": "a page (GET)",
    "cloud:drill_start": "drills run only on static-credential environments, never production",
    "cloud:drill_stop": "stops a drill",
    "cloud:drills_stop_all": "stops drills",
    # Records kept by the portal itself: they change no environment.
    "checklist:add_evidence": "a checklist record", "checklist:mark_ready": "a checklist record",
    "checklist:load_test": "a checklist record (a load-test result kept as evidence)",
    "checklist:verify": "reads the cloud to verify", "checklist:verify_all": "reads the cloud to verify",
    "incidents:acknowledge": "an incident record", "incidents:assign": "an incident record",
    "incidents:note": "an incident record", "incidents:postmortem": "an incident record",
    "incidents:reopen": "an incident record", "incidents:resolve": "an incident record",
    "phases:focus": "a launch-plan to-do item",
    # On-call records: who carries the pager changes no environment (audited by the oncall services).
    "oncall:take": "an override of the rota", "oncall:override_delete": "an override of the rota",
    "oncall:schedule_feed_reset": "a calendar feed's token",
    "handoff:note_write": "a handoff note", "incidents:bulk": "incident records, one by one",
    "sandbox:message_answer": "the sandbox's phone stand-in answering a page",
    # Outgoing webhook endpoints: where the portal tells others of events; no environment changes.
    "webhooks:list": "a page", "webhooks:create": "an outgoing webhook endpoint",
    "webhooks:delete": "an outgoing webhook endpoint", "webhooks:enable": "an outgoing webhook endpoint",
    # Noise controls: audited and time-bounded records of the portal's own paging; no environment changes.
    "heartbeats:pause": "a heartbeat record", "heartbeats:resume": "a heartbeat record",
    "incidents:silence_create": "a silence (bounded in time, audited)", "incidents:silence_delete": "ends a silence",
    "incidents:maintenance_create": "a maintenance window (a scheduled silence)",
    "incidents:maintenance_delete": "ends a maintenance window",
    "deployments:freeze_create": "a freeze window: it only refuses deployments (lifting one asks)",
    # Incident command: records of people running an incident; they change no environment.
    "command:declare": "an incident record (a SEV1 pages the commander)", "command:role_take": "an incident record",
    "command:sev_change": "an incident record", "command:promote": "an incident record", "command:merge": "incident records",
    "command:update_post": "a stakeholder update (mailed to its subscribers)", "command:subscriber_add": "a subscriber",
    "command:action_add": "an action item", "command:action_state": "an action item",
}


def _walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            ns = f"{p.namespace}:" if p.namespace else prefix
            yield from _walk(p.url_patterns, ns)
        elif isinstance(p, URLPattern) and p.name:
            yield prefix + p.name, p.callback


def test_every_changing_view_steps_up_or_says_why():
    missing = sorted(
        name for name, view in _walk(get_resolver().url_patterns)
        if getattr(view, "required_perm", None) in (RESPOND, APPROVE, ADMINISTER)
        and not getattr(view, "step_up", False) and name not in NO_STEP_UP
    )
    assert not missing, f"changing views without @step_up (or a reason in NO_STEP_UP): {missing}"


@pytest.fixture
def production(db):
    return Environment.objects.create(name="production", is_production=True, region="us-east-1",
                                      endpoint_url="http://127.0.0.1:9")  # nothing listens: any AWS call fails


def _old_login(client, user, settings):
    client.force_login(user)
    session = client.session
    session[AUTH_AT_KEY] = time.time() - settings.REAUTH_SECONDS - 60
    session.save()


def _deployment(env):
    from deployments.models import Deployment, Release
    from deployments.seed import seed_strategies
    from portal.plan.loader import SeedStats, load_plan

    seed_strategies(load_plan(), reset=True, stats=SeedStats())
    from deployments.models import Strategy

    release = Release.objects.create(environment=env, version="v2", launch_template_version="1")
    return Deployment.objects.create(environment=env, release=release, strategy=Strategy.objects.first(),
                                     from_colour="blue", to_colour="green", state="holding")


def _scale_request(env, requester):
    from django.utils import timezone

    from deployments.models import ScaleAction

    return ScaleAction.objects.create(environment=env, colour="blue", from_desired=2, to_desired=9, reason="peak",
                                      created_at=timezone.now(),
                                      state=ScaleAction.State.AWAITING_APPROVAL, requested_by=requester,
                                      requested_by_label=requester.username)


def _check(env):
    from portal.health.models import Check

    return Check.objects.create(slug="prod-alb", name="prod ALB", kind="http", group="aws", environment=env)


def _rule():
    from portal.health.models import ThresholdRule

    return ThresholdRule.objects.create(slug="error-rate-critical", metric="error_rate", comparison="gt", value=5.0,
                                        severity="critical")


def _run(env, responder):
    from runbooks.loader import sync_library
    from runbooks.models import Runbook
    from runbooks.services import run_start

    sync_library()
    return run_start(runbook=Runbook.objects.get(slug="high-error-rate"), environment=env, actor=responder)


# name -> (who, build(env, people) -> (url, data))
ACTIONS = {
    "deploy": ("responder", lambda env, p: ("/deployments/new/", {"environment": env.name, "version": "v9",
                                                                  "strategy": "canary-quick", "launch_template_version": "1"})),
    "promote": ("responder", lambda env, p: (f"/deployments/{_deployment(env).public_id}/promote/", {})),
    "pause": ("responder", lambda env, p: (f"/deployments/{_deployment(env).public_id}/pause/", {})),
    "resume": ("responder", lambda env, p: (f"/deployments/{_deployment(env).public_id}/resume/", {})),
    "abort": ("responder", lambda env, p: (f"/deployments/{_deployment(env).public_id}/abort/", {})),
    "pause automation": ("responder", lambda env, p: ("/deployments/automation/", {"environment": env.name, "paused": "1",
                                                                                   "reason": "incident"})),
    "dry-run automation": ("responder", lambda env, p: ("/deployments/automation/", {"environment": env.name, "paused": "0",
                                                                                     "dry_run": "1", "reason": "watch"})),
    "scale within the phase": ("responder", lambda env, p: ("/deployments/scale/", {"environment": env.name, "colour": "blue",
                                                                                    "desired": "2", "reason": "x"})),
    "scale beyond the phase": ("lead", lambda env, p: ("/deployments/scale/", {"environment": env.name, "colour": "blue",
                                                                               "desired": "60", "reason": "x"})),
    "approve scale": ("lead", lambda env, p: (f"/deployments/scale/{_scale_request(env, p['lead2']).public_id}/approve/", {})),
    "rollback": ("responder", lambda env, p: ("/deployments/rollback/", {"environment": env.name, "reason": "bad"})),
    "failover": ("lead", lambda env, p: ("/deployments/rds-failover/", {"environment": env.name, "reason": "primary down"})),
    "disable a check": ("responder", lambda env, p: (f"/health/checks/{_check(env).slug}/enabled/", {"enabled": "false"})),
    "change a threshold": ("lead", lambda env, p: (f"/health/thresholds/{_rule().slug}/", {"value": "50", "window_minutes": "5",
                                                                                           "severity": "critical"})),
    "edit the environment": ("admin", lambda env, p: (f"/environments/{env.name}/edit/", {"region": "eu-west-1"})),
    "runbook action": ("responder", lambda env, p: (
        f"/runbooks/runs/{_run(env, p['responder']).public_id}/steps/pause-automation/action/", {})),
}


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_old_login_is_asked_to_reauthenticate_for_each_production_action(
        action, client, responder, lead, lead2, admin_user, production, settings):
    people = {"responder": responder, "lead": lead, "lead2": lead2, "admin": admin_user}
    who, build = ACTIONS[action]
    url, data = build(production, people)
    if action == "runbook action":
        from runbooks.models import RunbookRun

        run = RunbookRun.objects.get()
        # An action that is not a rollback or a failover (those two asked before every action did).
        step_ids = [s["id"] for s in run.version.steps if s["kind"] == "action" and s["action"] not in ("rollback", "rds_failover")]
        url = url.replace("pause-automation", step_ids[0])
    _old_login(client, people[who], settings)
    audit_before = AuditEvent.objects.exclude(verb="user.reauth").count()
    env_before = Environment.objects.filter(pk=production.pk).values().get()
    r = client.post(url, data)
    assert r.status_code == 302 and r["Location"].startswith("/accounts/reauth/"), (r.status_code, r.get("Location"))
    # Nothing changed: no audit row, the environment as it was.
    assert AuditEvent.objects.exclude(verb="user.reauth").count() == audit_before
    assert Environment.objects.filter(pk=production.pk).values().get() == env_before
    page = client.get(r["Location"])
    assert b"Confirm your password" in page.content


def test_htmx_request_is_told_to_redirect(client, responder, production, settings):
    _old_login(client, responder, settings)
    r = client.post("/deployments/automation/", {"environment": "production", "paused": "1", "reason": "x"},
                    headers={"HX-Request": "true"})
    assert r.status_code == 401 and r["HX-Redirect"].startswith("/accounts/reauth/")


def test_fresh_login_goes_through(client, responder, production):
    client.force_login(responder)
    r = client.post("/deployments/automation/", {"environment": "production", "paused": "1", "reason": "incident"})
    assert not r["Location"].startswith("/accounts/reauth/")
    production.refresh_from_db()
    assert production.automation_paused is True


def test_non_production_is_never_asked(client, responder, db, settings):
    env = Environment.objects.create(name="staging", is_production=False, endpoint_url="http://127.0.0.1:9")
    _old_login(client, responder, settings)
    r = client.post("/deployments/automation/", {"environment": "staging", "paused": "1", "reason": "incident"})
    assert not r["Location"].startswith("/accounts/reauth/")
    env.refresh_from_db()
    assert env.automation_paused is True


def test_making_an_environment_production_asks(client, admin_user, db, settings):
    Environment.objects.create(name="staging", is_production=False, endpoint_url="http://127.0.0.1:9")
    _old_login(client, admin_user, settings)
    r = client.post("/environments/staging/edit/", {"is_production": "on"})
    assert r.status_code == 302 and r["Location"].startswith("/accounts/reauth/")
    assert Environment.objects.get(name="staging").is_production is False
