import dataclasses

import pytest

from portal.audit.models import AuditEvent
from runbooks import actions, services
from runbooks.models import Runbook, RunbookRun, StepOutcome


@pytest.fixture
def hre(library):
    return Runbook.objects.get(slug="high-error-rate")


@pytest.fixture
def fake_rollback(monkeypatch):
    calls = []

    def rollback(*, run, step, actor):
        calls.append((run.pk, step["id"], actor))
        return {"words": "Rollback started: traffic back to blue (completed)."}

    spec = dataclasses.replace(actions.ACTIONS["rollback"], func=rollback)
    monkeypatch.setitem(actions.ACTIONS, "rollback", spec)
    return calls


def _timeline(incident):
    from portal.incidents.models import TimelineEntry

    return list(TimelineEntry.objects.filter(incident=incident, kind="runbook_step").order_by("pk"))


def test_walk_high_error_rate_through_the_rollback_branch(hre, responder, responder2, make_incident, fake_checks, fake_rollback):
    fake_checks["error_rate_now_vs_hour_ago"] = {"status": "critical", "words": "Now 12.00% (blue 0.40%, green 24.00%)", "data": {"now": 12.0}}
    incident = make_incident()
    run = services.run_start(runbook=hre, incident=incident, actor=responder)
    # A second start from the same incident resumes the open run.
    assert services.run_start(runbook=hre, incident=incident, actor=responder2) == run

    out = services.step_record(run=run, step_id="dashboard", status="done", actor=responder)
    assert out.evidence["status"] == "critical" and "green 24.00%" in out.evidence["words"]
    assert out.actor == responder and out.position == 1
    # Clicking twice records once.
    assert services.step_record(run=run, step_id="dashboard", status="done", actor=responder) == out
    with pytest.raises(services.Conflict, match="already marked done by oscar-oncall"):
        services.step_record(run=run, step_id="dashboard", status="failed", actor=responder2)
    with pytest.raises(services.Conflict, match="not the current step"):
        services.step_record(run=run, step_id="rollback", status="done", actor=responder)
    with pytest.raises(services.Invalid, match="needs a reason"):
        services.step_record(run=run, step_id="deployments", status="skipped", actor=responder2)
    services.step_record(run=run, step_id="deployments", status="done", actor=responder2, note="release 42 went to green at 03:02")
    services.step_record(run=run, step_id="external", status="skipped", note="providers' status pages are green", actor=responder2)
    with pytest.raises(services.Invalid, match="answer must be one of"):
        services.step_record(run=run, step_id="cause", status="done", answer="aliens", actor=responder)
    services.step_record(run=run, step_id="cause", status="done", answer="bad-deployment", actor=responder)

    from runbooks.selectors import run_state

    state = run_state(run)
    assert state.current.step["id"] == "rollback"
    with pytest.raises(services.Invalid, match="taking its action"):
        services.step_record(run=run, step_id="rollback", status="done", actor=responder)
    outcome = services.step_action_take(run=run, step_id="rollback", actor=responder)
    assert outcome.status == "done" and outcome.evidence["action"] == "rollback"
    assert services.step_action_take(run=run, step_id="rollback", actor=responder) == outcome
    assert len(fake_rollback) == 1
    services.step_record(run=run, step_id="recheck", status="done", actor=responder)

    run.refresh_from_db()
    assert run.status == "completed" and run.finished_at is not None
    state = run_state(run)
    assert {v.step["id"]: v.state for v in state.steps} == {
        "dashboard": "done", "deployments": "done", "external": "skipped", "cause": "done",
        "scale": "not-taken", "rollback": "done", "escalate": "not-taken", "recheck": "done",
    }
    texts = [e.text for e in _timeline(incident)]
    assert texts[0].startswith("Runbook started: High Error Rate (v1)")
    assert any("Check monitoring dashboard: done" in t and "green 24.00%" in t for t in texts)
    assert any("Decide what is causing the errors: done → Bad deployment: roll back" in t for t in texts)
    assert any("Rollback if bad deployment: done" in t and "traffic back to blue" in t for t in texts)
    assert texts[-1] == "Runbook finished: High Error Rate"
    assert AuditEvent.objects.filter(verb="runbook.step_record", target_id=str(run.public_id)).count() == 6

    from runbooks.selectors import run_export_markdown

    md = run_export_markdown(run)
    assert "# Runbook run: High Error Rate" in md
    assert "### 1. Check monitoring dashboard — done" in md
    assert "Seen (critical): Now 12.00% (blue 0.40%, green 24.00%)" in md
    assert "- Note: release 42 went to green at 03:02" in md
    assert "### 3. Check external service status (OpenAI, Twilio, Stripe) — skipped" in md
    assert "- Answer: **Bad deployment: roll back**" in md
    assert "Result: Rollback started: traffic back to blue" in md
    assert "Scale up if capacity issue (not on the path taken)" in md


def test_failed_action_is_recorded_with_its_reason(hre, responder, fake_checks, monkeypatch):
    def refuse(*, run, step, actor):
        raise RuntimeError("green has no healthy targets")

    monkeypatch.setitem(actions.ACTIONS, "scale_out", dataclasses.replace(actions.ACTIONS["scale_out"], func=refuse))
    run = services.run_start(runbook=hre, actor=responder)
    for step in ("dashboard", "deployments", "external"):
        services.step_record(run=run, step_id=step, status="done", actor=responder)
    services.step_record(run=run, step_id="cause", status="done", answer="capacity", actor=responder)
    outcome = services.step_action_take(run=run, step_id="scale", actor=responder)
    assert outcome.status == "failed"
    assert "Scale out failed: green has no healthy targets" in outcome.evidence["words"]
    assert outcome.note == outcome.evidence["words"]
    run.refresh_from_db()
    assert run.claimed_step == ""


def _to_escalate(hre, incident, responder):
    run = services.run_start(runbook=hre, incident=incident, actor=responder)
    for step in ("dashboard", "deployments", "external"):
        services.step_record(run=run, step_id=step, status="done", actor=responder)
    services.step_record(run=run, step_id="cause", status="done", answer="unknown", actor=responder)
    return run


@pytest.fixture
def policy(db):
    from portal.incidents.models import EscalationLevel, EscalationPolicy, NotificationChannel

    EscalationPolicy.objects.filter(severity="critical").delete()
    p = EscalationPolicy.objects.create(severity="critical", name="Critical", repeat=False)
    for number, name in ((1, "on-call"), (2, "devops-lead")):
        level = EscalationLevel.objects.create(policy=p, number=number, delay_minutes=15)
        level.channels.add(NotificationChannel.objects.create(name=f"{name}-mail", kind="email", target=f"{name}@example.test"))
    return p


def test_escalate_step_pages_the_next_level_of_the_policy(hre, responder, fake_checks, make_incident, policy):
    from portal.incidents.models import Notification

    incident = make_incident()
    run = _to_escalate(hre, incident, responder)
    outcome = services.step_escalate(run=run, step_id="escalate", note="no idea, need the lead", actor=responder)
    assert outcome.status == "done"
    assert outcome.evidence["escalated"] is True and outcome.evidence["level"] == 1
    incident.refresh_from_db()
    assert incident.escalation_level == 1
    assert Notification.objects.filter(incident=incident, level=1).count() == 1
    assert any("Escalate to the next level: done" in e.text and "Level 1 of the escalation policy paged" in e.text
               for e in _timeline(incident))
    # Safe to click twice: the recorded outcome comes back, nothing is paged again.
    assert services.step_escalate(run=run, step_id="escalate", actor=responder) == outcome
    assert Notification.objects.filter(incident=incident).count() == 1


def test_escalate_step_on_an_acknowledged_incident_says_nobody_was_paged(hre, responder, fake_checks, make_incident, policy):
    from portal.incidents.services import incident_acknowledge

    incident = make_incident()
    incident_acknowledge(incident=incident, actor=responder)
    run = _to_escalate(hre, incident, responder)
    outcome = services.step_escalate(run=run, step_id="escalate", actor=responder)
    assert outcome.status == "done" and outcome.evidence["escalated"] is False
    assert "Nobody was paged automatically (the incident is acknowledged" in outcome.evidence["words"]
    assert any("Call the next level by hand" in e.text for e in _timeline(incident))


def test_run_without_environment_shows_a_message_not_an_error(db, library, responder, client, settings):
    settings.DEFAULT_ENVIRONMENT = "nowhere"
    rb = Runbook.objects.get(slug="database-issues")
    run = services.run_start(runbook=rb, actor=responder)
    assert run.environment is None
    client.force_login(responder)
    r = client.get(f"/runbooks/runs/{run.public_id}/steps/connections/check/")
    assert r.status_code == 200
    assert b"No environment is attached to this run" in r.content
    out = services.step_record(run=run, step_id="connections", status="done", actor=responder)
    assert out.evidence["status"] == "unavailable"


# --- pages and permissions -------------------------------------------------------------------


def test_pages_render_for_a_viewer(client, viewer, hre, responder, fake_checks):
    run = services.run_start(runbook=hre, actor=responder)
    services.step_record(run=run, step_id="dashboard", status="done", actor=responder)
    client.force_login(viewer)
    body = client.get("/runbooks/").content.decode()
    assert "High Error Rate" in body and "Backup Restore Verification" in body and "v1" in body
    body = client.get("/runbooks/high-error-rate/").content.decode()
    assert "Rollback if bad deployment" in body and "Start a run" not in body
    r = client.get(run.get_absolute_url())
    assert r.status_code == 200
    body = r.content.decode()
    assert "Check monitoring dashboard" in body and "not record steps" in body
    assert 'name="status"' not in body
    assert client.get(f"/runbooks/runs/{run.public_id}/steps/deployments/check/").status_code == 200
    run.refresh_from_db()
    assert "deployments" not in run.readings  # a viewer's look is not saved


def test_viewer_cannot_mark_steps_or_take_actions(client, viewer, hre, responder, fake_checks, fake_rollback):
    run = services.run_start(runbook=hre, actor=responder)
    client.force_login(viewer)
    for url in (
        f"/runbooks/runs/{run.public_id}/steps/dashboard/",
        f"/runbooks/runs/{run.public_id}/steps/rollback/action/",
        f"/runbooks/runs/{run.public_id}/steps/escalate/escalate/",
        f"/runbooks/runs/{run.public_id}/abandon/",
        "/runbooks/high-error-rate/start/",
    ):
        assert client.post(url, {"status": "done", "reason": "x"}).status_code == 403, url
    assert not StepOutcome.objects.exists() and not fake_rollback
    assert RunbookRun.objects.count() == 1


def test_failover_needs_a_lead(client, responder, lead, library, fake_checks, monkeypatch):
    called = []
    monkeypatch.setitem(
        actions.ACTIONS, "rds_failover",
        dataclasses.replace(actions.ACTIONS["rds_failover"], func=lambda **kw: called.append(1) or {"words": "failover requested"}),
    )
    run = services.run_start(runbook=Runbook.objects.get(slug="database-issues"), actor=responder)
    for step in ("connections", "slow-queries", "locks", "backups"):
        services.step_record(run=run, step_id=step, status="done", actor=responder)
    services.step_record(run=run, step_id="failover-needed", status="done", answer="yes-failover", actor=responder)
    services.step_record(run=run, step_id="pause-automation", status="skipped", note="automation already paused", actor=responder)
    client.force_login(responder)
    assert b"Only a lead can take this action" in client.get(run.get_absolute_url()).content
    assert client.post(f"/runbooks/runs/{run.public_id}/steps/failover/action/").status_code == 403
    assert not called
    client.force_login(lead)
    r = client.post(f"/runbooks/runs/{run.public_id}/steps/failover/action/")
    assert r.status_code == 302 and called == [1]
    run.refresh_from_db()
    assert run.status == "completed"


def test_responder_walks_a_run_through_the_pages(client, responder, hre, fake_checks, make_incident):
    incident = make_incident()
    client.force_login(responder)
    r = client.get(f"/runbooks/high-error-rate/start/?incident={incident.public_id}")
    assert r.status_code == 200 and incident.title.encode() in r.content
    r = client.post(f"/runbooks/high-error-rate/start/?incident={incident.public_id}", {"incident": str(incident.public_id)})
    run = RunbookRun.objects.get()
    assert r.status_code == 302 and r["Location"] == run.get_absolute_url()
    assert run.incident == incident

    body = client.get(run.get_absolute_url()).content.decode()
    assert 'data-testid="check-dashboard"' in body and "Reading live data" in body
    r = client.get(f"/runbooks/runs/{run.public_id}/steps/dashboard/check/")
    assert b"error_rate_now_vs_hour_ago looks fine" in r.content
    fake_checks["error_rate_now_vs_hour_ago"] = {"status": "critical", "words": "changed later", "data": {}}
    client.post(f"/runbooks/runs/{run.public_id}/steps/dashboard/", {"status": "done"})
    # The evidence is what the responder saw when the step opened.
    assert run.outcomes.get(step_id="dashboard").evidence["words"] == "error_rate_now_vs_hour_ago looks fine"

    r = client.post(f"/runbooks/runs/{run.public_id}/steps/deployments/", {"status": "skipped", "note": ""}, follow=True)
    assert b"a skipped step needs a reason" in r.content
    assert not run.outcomes.filter(step_id="deployments").exists()

    # The poll answers 204 while nothing changed, and the new body once something did.
    from runbooks.selectors import run_state

    stamp = run_state(run).stamp
    assert client.get(f"/runbooks/runs/{run.public_id}/body/", {"stamp": stamp}).status_code == 204
    services.step_record(run=run, step_id="deployments", status="done", actor=responder)
    r = client.get(f"/runbooks/runs/{run.public_id}/body/", {"stamp": stamp})
    assert r.status_code == 200 and b'data-state="current"' in r.content
    services.step_record(run=run, step_id="external", status="done", note="Stripe status page green", actor=responder)
    # At the decision, what the checks showed is on screen.
    body = client.get(run.get_absolute_url()).content.decode()
    seen = body.split('data-testid="seen-so-far"')[1].split("</div>")[0]
    assert "Check monitoring dashboard" in seen and "error_rate_now_vs_hour_ago looks fine" in seen
    assert "Stripe status page green" in seen


# --- API -------------------------------------------------------------------------------------


def test_api_list_start_record_read(api_client, make_token, hre, fake_checks, fake_rollback, make_incident):
    read, act = make_token("read"), make_token("actions")
    r = api_client.get("/api/v1/runbooks", token=read)
    assert r.status_code == 200
    listed = {rb["slug"]: rb for rb in r.json()}
    assert listed["high-error-rate"]["version"] == 1 and len(listed["high-error-rate"]["steps"]) == 8

    assert api_client.post("/api/v1/runbooks/high-error-rate/runs", {}, token=read).status_code == 403
    assert api_client.post("/api/v1/runbooks/nope/runs", {}, token=act).json()["error"] == "not_found"
    incident = make_incident()
    r = api_client.post("/api/v1/runbooks/high-error-rate/runs", {"incident": str(incident.public_id)}, token=act)
    assert r.status_code == 201, r.content
    run_id = r.json()["id"]
    assert r.json()["current_step"] == "dashboard" and r.json()["incident"] == str(incident.public_id)

    base = f"/api/v1/runbooks/runs/{run_id}/steps"
    assert api_client.post(f"{base}/dashboard", {"status": "done"}, token=read).status_code == 403
    r = api_client.post(f"{base}/deployments", {"status": "done"}, token=act)
    assert r.status_code == 409 and "not the current step" in r.json()["detail"]
    r = api_client.post(f"{base}/dashboard", {"status": "skipped"}, token=act)
    assert r.status_code == 422 and r.json() == {"error": "invalid", "detail": "a skipped step needs a reason"}
    assert api_client.post(f"{base}/dashboard", {"status": "done"}, token=act).status_code == 200
    assert api_client.post(f"{base}/deployments", {"status": "done"}, token=act).status_code == 200
    assert api_client.post(f"{base}/external", {"status": "done"}, token=act).status_code == 200
    r = api_client.post(f"{base}/cause", {"status": "done", "answer": "bad-deployment"}, token=act)
    assert r.json()["current_step"] == "rollback"
    r = api_client.post(f"{base}/rollback", {"status": "done"}, token=act)
    assert r.status_code == 200 and r.json()["recorded"]["evidence"]["action"] == "rollback"
    assert len(fake_rollback) == 1
    r = api_client.get(f"/api/v1/runbooks/runs/{run_id}", token=read)
    assert r.json()["current_step"] == "recheck"
    assert r.json()["steps"][0]["outcome"]["by"].startswith("token:") or r.json()["steps"][0]["outcome"]["by"]
    assert api_client.get("/api/v1/runbooks/runs/00000000-0000-0000-0000-000000000000", token=read).status_code == 404


def test_library_and_run_pages_do_not_grow_queries(client, viewer, hre, responder, fake_checks, django_assert_max_num_queries):
    for _ in range(3):
        run = services.run_start(runbook=hre, actor=responder)
        services.step_record(run=run, step_id="dashboard", status="done", actor=responder)
    client.force_login(viewer)
    with django_assert_max_num_queries(12):
        assert client.get("/runbooks/").status_code == 200
    with django_assert_max_num_queries(14):
        assert client.get("/runbooks/high-error-rate/").status_code == 200
    with django_assert_max_num_queries(14):
        assert client.get(run.get_absolute_url()).status_code == 200


def test_library_shows_versions_and_last_used(client, viewer, hre, responder, fake_checks):
    client.force_login(viewer)
    body = client.get("/runbooks/").content.decode()
    assert 'data-slug="high-error-rate"' in body and "never" in body
    services.run_start(runbook=hre, actor=responder)
    body = client.get("/runbooks/").content.decode()
    row = body.split('data-slug="high-error-rate"')[1].split("</tr>")[0]
    assert "v1" in row and "1 version" in row and "now" in row


def test_export_download(client, viewer, hre, responder, fake_checks):
    run = services.run_start(runbook=hre, actor=responder)
    services.step_record(run=run, step_id="dashboard", status="done", note="saw it", actor=responder)
    services.run_abandon(run=run, reason="false alarm", actor=responder)
    client.force_login(viewer)
    r = client.get(f"/runbooks/runs/{run.public_id}/export.md?download=1")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/markdown")
    assert r["Content-Disposition"].startswith('attachment; filename="runbook-high-error-rate-')
    text = r.content.decode()
    assert "- Status: **abandoned**" in text and "- Abandoned because: false alarm" in text and "- Note: saw it" in text
    assert "- Review recent deployments (not reached: the run was abandoned)" in text


def test_openapi_lists_the_runbook_routes(api_client, make_token, db):
    paths = api_client.get("/api/v1/openapi.json", token=make_token("read")).json()["paths"]
    for path in ("/api/v1/runbooks", "/api/v1/runbooks/{slug}/runs", "/api/v1/runbooks/runs/{run_id}",
                 "/api/v1/runbooks/runs/{run_id}/steps/{step_id}"):
        assert path in paths, path


def test_incident_runs_fragment(client, viewer, hre, responder, fake_checks, make_incident):
    incident = make_incident()
    client.force_login(viewer)
    url = f"/runbooks/incidents/{incident.public_id}/runs/"
    assert b"No runbook run for this incident yet" in client.get(url).content
    run = services.run_start(runbook=hre, incident=incident, actor=responder)
    services.step_record(run=run, step_id="dashboard", status="done", actor=responder)
    body = client.get(url).content.decode()
    assert run.get_absolute_url() in body and "1 of about" in body and "now: Review recent deployments" in body
    assert client.get("/runbooks/incidents/00000000-0000-0000-0000-000000000000/runs/").status_code == 404
