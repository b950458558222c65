"""Incident command: declare, SEV, roles and the commander page; updates, subscribers, reminder and the
status pages; reviews and action items with their nag."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.command import selectors, services
from portal.command.models import ActionItem, CommandRole, IncidentCommand, Review, Sev
from portal.incidents import ingest
from portal.incidents.models import Alert, Incident, PersonalPage
from portal.incidents.services import incident_acknowledge, incident_resolve
from portal.oncall import services as oncall_services

pytestmark = pytest.mark.django_db

SYSTEM = "system:test-setup"


@pytest.fixture
def on_call(responder):
    """The responder carries the only schedule's pager, reachable by verified email for critical pages."""
    start = timezone.now() - timedelta(hours=1)
    oncall_services.schedule_create(slug="primary", name="Primary", layers=[
        {"name": "primary", "members": [responder.username], "shift_hours": 24, "starts_at": start}], actor=SYSTEM)
    oncall_services.contact_method_add(user=responder, kind="email", value="oscar@example.test", actor=SYSTEM, verified=True)
    oncall_services.notification_rule_add(user=responder, severity="critical", kind="email", delay_minutes=0, actor=SYSTEM)
    return responder


def _declare(sev="SEV2", actor=None, **kw) -> Incident:
    return services.incident_declare(title=kw.pop("title", "Payments stuck"), sev=sev, actor=actor, **kw)


# ------------------------------------------------------------------------------------------------ (a)


def test_declaring_a_sev1_through_the_api_pages_the_commander_on_call_and_the_timeline_shows_it(
        api_client, make_token, on_call, django_capture_on_commit_callbacks):
    token = make_token("actions")
    with django_capture_on_commit_callbacks(execute=True):
        r = api_client.post("/api/v1/incidents", {"title": "Payments stuck at checkout", "severity": "sev1",
                                                  "journeys": ["pay"], "description": "Customers report a spinner"}, token=token)
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["sev"] == "SEV1" and body["journeys"] == ["pay"] and body["declared"] is True
    inc = Incident.objects.get(public_id=body["id"])
    assert inc.severity == "critical" and inc.is_open
    page = PersonalPage.objects.get(incident=inc, user=on_call, level=services.COMMANDER_PAGE_LEVEL)
    assert page.status == PersonalPage.Status.SENT and page.to == "oscar@example.test"
    assert any(m.to == ["oscar@example.test"] for m in mail.outbox)
    texts = list(inc.timeline.values_list("text", flat=True))
    assert any(t.startswith("Declared SEV1") for t in texts)
    assert any(f"Paged {on_call.username} (on call on Primary) to take command" in t for t in texts)
    assert AuditEvent.objects.filter(verb="incident.declare").count() == 1
    assert AuditEvent.objects.filter(verb="incident.commander_page").count() == 1


def test_a_commander_who_is_also_the_first_escalation_level_gets_one_page_per_method_not_two(
        on_call, responder, django_capture_on_commit_callbacks):
    """Seen in make run: the SEV1's commander page and the critical policy's level 1 (the same schedule) each
    sent the person an email and an SMS within the same second."""
    from portal.incidents.models import EscalationLevel, EscalationPolicy
    from portal.oncall.models import Schedule

    policy = EscalationPolicy.objects.create(severity="critical", name="Critical")
    EscalationLevel.objects.create(policy=policy, number=1, delay_minutes=0, target_schedule=Schedule.objects.get(slug="primary"))
    with django_capture_on_commit_callbacks(execute=True):
        inc = _declare("SEV1", actor=responder)
    from portal.incidents import escalation

    with django_capture_on_commit_callbacks(execute=True):
        escalation.incident_escalate(incident_id=inc.pk)  # level 1 fires at once, as the worker does on open
    inc.refresh_from_db()
    assert inc.escalation_level == 1
    pages = PersonalPage.objects.filter(incident=inc, user=on_call, kind="email")
    assert pages.count() == 1, list(pages.values_list("level", "round", "status"))
    assert sum(1 for m in mail.outbox if m.to == ["oscar@example.test"]) == 1


def test_a_sev2_declaration_pages_no_commander(responder, on_call):
    inc = _declare("SEV2", actor=responder)
    assert not PersonalPage.objects.filter(incident=inc, level=services.COMMANDER_PAGE_LEVEL).exists()
    assert inc.command.sev == Sev.SEV2 and inc.command.declared_by == responder.username


def test_a_viewer_or_a_read_token_cannot_declare(api_client, make_token, viewer):
    from portal.errors import Forbidden

    with pytest.raises(Forbidden):
        _declare(actor=viewer)
    r = api_client.post("/api/v1/incidents", {"title": "x", "severity": "SEV3"}, token=make_token("read"))
    assert r.status_code == 403
    assert not Incident.objects.exists()


def test_an_unknown_severity_or_journey_is_refused_with_422(api_client, make_token):
    token = make_token("actions")
    assert api_client.post("/api/v1/incidents", {"title": "x", "severity": "critical"}, token=token).status_code == 422
    assert api_client.post("/api/v1/incidents", {"title": "x", "severity": "SEV3", "journeys": ["teleport"]}, token=token).status_code == 422
    assert not Incident.objects.exists()


def test_taking_a_role_is_one_step_on_the_timeline_and_taking_it_over_names_the_one_before(responder, responder2):
    inc = _declare(actor=responder)
    services.role_take(incident=inc, role="commander", actor=responder)
    services.role_take(incident=inc, role="commander", actor=responder2)
    assert CommandRole.objects.get(incident=inc, role="commander").user == responder2
    texts = list(inc.timeline.values_list("text", flat=True))
    assert f"{responder.username} took commander" in texts
    assert f"{responder2.username} took commander from {responder.username}" in texts
    assert AuditEvent.objects.filter(verb="incident.role").count() == 2


def test_a_severity_change_needs_a_reason_and_moves_nobody(responder, responder2):
    from portal.errors import Invalid

    inc = _declare("SEV3", actor=responder)
    services.role_take(incident=inc, role="commander", actor=responder)
    services.role_take(incident=inc, role="communications", actor=responder2)
    with pytest.raises(Invalid):
        services.sev_change(incident=inc, sev="SEV1", reason="", actor=responder)
    services.sev_change(incident=inc, sev="SEV1", reason="all payments fail", actor=responder2)
    cmd = IncidentCommand.objects.get(incident=inc)
    assert cmd.sev == "SEV1" and cmd.sev_reason == "all payments fail"
    assert {r.role: r.user for r in CommandRole.objects.filter(incident=inc)} == {"commander": responder, "communications": responder2}
    assert inc.timeline.filter(text__contains="Severity SEV3 → SEV1").exists()


def test_an_error_rate_above_five_percent_suggests_sev1(db):
    from portal.cloud.models import Environment
    from portal.health.models import Check, ThresholdRule

    env = Environment.objects.create(name="production", is_production=True, region="us-east-1")
    ThresholdRule.objects.create(slug="error-rate-critical", metric="error_rate", comparison="gt", value=5.0, severity="critical")
    rule = ThresholdRule.objects.create(slug="error-rate-warning", metric="error_rate", comparison="gt", value=2.0, severity="warning")
    check = Check.objects.create(slug="prod-error-rate", name="error rate", kind="metric_threshold", group="metrics",
                                 environment=env, rule=rule, last_value=7.5)
    assert selectors.sev_suggest(environment=env) == (Sev.SEV1, "error rate 7.5 % is above the critical 5 %")
    check.last_value = 3.0
    check.save()
    assert selectors.sev_suggest(environment=env)[0] == Sev.SEV2
    check.last_value = 0.5
    check.save()
    assert selectors.sev_suggest(environment=env)[0] == Sev.SEV3


def test_an_alert_incident_is_promoted_to_a_declared_one(responder):
    alert = ingest.alert_ingest_internal(source="health", fingerprint="x", name="HighErrorRate", severity="critical",
                                         firing=True, summary="5xx", labels={})
    inc = alert.incident
    services.incident_promote(incident=inc, sev="SEV2", journeys=["bid"], actor=responder)
    cmd = IncidentCommand.objects.get(incident=inc)
    assert cmd.declared and cmd.sev == "SEV2" and cmd.journeys == ["bid"]
    assert inc.alerts.count() == 1


def test_merging_two_incidents_keeps_every_alert(responder):
    a1 = ingest.alert_ingest_internal(source="health", fingerprint="a", name="ErrorsBlue", severity="critical", firing=True,
                                      summary="", labels={})
    a2 = ingest.alert_ingest_internal(source="health", fingerprint="b", name="LatencyBlue", severity="warning", firing=True,
                                      summary="", labels={})
    a3 = ingest.alert_ingest_internal(source="health", fingerprint="c", name="LatencyGreen", severity="warning", firing=True,
                                      summary="", labels={}, grouping_key="health:LatencyBlue")
    target = _declare(actor=responder)
    other = a2.incident
    assert a3.incident_id == other.pk and a1.incident_id != other.pk
    declared_alert = target.alerts.get()
    services.incidents_merge(target=target, others=[a1.incident, other], actor=responder)
    fingerprints = set(Alert.objects.filter(incident=target).values_list("fingerprint", flat=True))
    assert fingerprints == {declared_alert.fingerprint, a1.fingerprint, a2.fingerprint, a3.fingerprint}
    for merged in (a1.incident, other):
        merged.refresh_from_db()
        assert merged.status == Incident.Status.RESOLVED and merged.resolve_reason == f"merged into INC-{target.pk}"
        assert merged.command.merged_into == target
        assert merged.timeline.exists()  # kept on the merged one
    assert target.timeline.filter(text__startswith=f"[INC-{other.pk}] ").exists()  # and copied onto the target


def test_the_dashboard_shows_the_declare_form_and_the_command_panel(client, responder):
    client.force_login(responder)
    page = client.get("/")
    assert b'action="/command/declare/"' in page.content
    r = client.post("/command/declare/", {"title": "SMS never arrive", "sev": "SEV2", "journeys": ["sms_email"]})
    inc = Incident.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/command/incidents/{inc.public_id}/"
    panel = client.get("/command/panel/")
    assert b"SMS never arrive" in panel.content
    client.post(f"/command/incidents/{inc.public_id}/roles/commander/take/")
    assert CommandRole.objects.get(incident=inc, role="commander").user == responder
    assert responder.username.encode() in client.get("/command/panel/").content


# ------------------------------------------------------------------------------------------------ (b)


def test_a_status_update_reaches_an_email_subscriber_and_the_status_page(client, responder, settings,
                                                                         django_capture_on_commit_callbacks):
    inc = _declare("SEV2", actor=responder, journeys=["pay"])
    services.subscriber_add(incident=inc, kind="email", target="support-lead@example.test", actor=responder)
    with django_capture_on_commit_callbacks(execute=True):
        services.update_post(incident=inc, status="identified", message="A bad card-processor config; rolling back",
                             actor=responder)
    sent = [m for m in mail.outbox if m.to == ["support-lead@example.test"]]
    assert len(sent) == 1 and "A bad card-processor config" in sent[0].body and "Identified" in sent[0].subject
    client.force_login(responder)
    staff = client.get("/status/").content.decode()
    assert "A bad card-processor config; rolling back" in staff and "Payments stuck" in staff
    settings.STATUS_PAGE_PUBLIC = True
    client.logout()
    public = client.get("/status/public/")
    assert public.status_code == 200
    text = public.content.decode()
    assert "A bad card-processor config; rolling back" in text
    assert responder.username not in text and f"INC-{inc.pk}" not in text  # no internal detail


def test_the_public_status_page_is_off_unless_set(client, settings):
    settings.STATUS_PAGE_PUBLIC = False
    assert client.get("/status/public/").status_code == 404


def test_the_pay_journey_is_degraded_while_a_declared_incident_names_it(responder):
    _declare("SEV2", actor=responder, journeys=["pay"])
    states = {j["journey"]: j["state"] for j in selectors.journey_states()}
    assert states["pay"] == "degraded" and states["photos"] == "operational"


def test_no_update_for_30_minutes_on_a_sev1_sends_the_reminder_once(responder, responder2):
    t0 = timezone.now()
    inc = _declare("SEV1", actor=responder, now=t0)
    services.role_take(incident=inc, role="communications", actor=responder2, now=t0)
    responder2.email = "rita@example.test"
    responder2.save()
    services.update_post(incident=inc, status="investigating", message="Looking", actor=responder2, now=t0 + timedelta(minutes=5))
    mail.outbox.clear()
    assert services.update_reminders_send(now=t0 + timedelta(minutes=34)) == []
    assert services.update_reminders_send(now=t0 + timedelta(minutes=36)) == [inc.pk]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["rita@example.test"]
    assert "Stakeholder update due" in mail.outbox[0].subject
    assert services.update_reminders_send(now=t0 + timedelta(minutes=40)) == []  # once per interval
    assert inc.timeline.filter(text__startswith="Stakeholder update due").count() == 1
    assert services.update_reminders_send(now=t0 + timedelta(minutes=67)) == [inc.pk]  # still none 30 minutes later


def test_a_sev2_waits_an_hour_and_a_sev3_is_never_reminded(responder):
    t0 = timezone.now()
    sev2 = _declare("SEV2", actor=responder, now=t0, title="a")
    _declare("SEV3", actor=responder, now=t0, title="b")
    assert services.update_reminders_send(now=t0 + timedelta(minutes=45)) == []
    assert services.update_reminders_send(now=t0 + timedelta(minutes=61)) == [sev2.pk]


def test_the_draft_names_the_journeys_and_a_failing_vendor(responder):
    from portal.health.models import Check

    Check.objects.create(slug="service-stripe", name="Stripe", kind="http", group="external", status="failing")
    inc = _declare("SEV2", actor=responder, journeys=["pay"])
    draft = selectors.update_draft(inc)
    assert "Affected: Pay." in draft and "Stripe" in draft


def test_the_updates_roles_and_actions_api(api_client, make_token, responder):
    inc = _declare(actor=responder)
    actions, read = make_token("actions"), make_token("read")
    base = f"/api/v1/incidents/{inc.public_id}"
    assert api_client.post(f"{base}/updates", {"status": "monitoring", "message": "fix out"}, token=read).status_code == 403
    r = api_client.post(f"{base}/updates", {"status": "monitoring", "message": "fix out"}, token=actions)
    assert r.status_code == 201 and r.json()["status"] == "monitoring"
    assert [u["message"] for u in api_client.get(f"{base}/updates", token=read).json()] == ["fix out"]
    r = api_client.post(f"{base}/roles", {"role": "operations", "user": responder.username}, token=actions)
    assert r.status_code == 200 and {x["role"]: x["user"] for x in r.json()}["operations"] == responder.username
    r = api_client.post(f"{base}/actions", {"title": "Alert on card declines", "owner": responder.username,
                                            "due_date": "2030-01-01", "link_kind": "threshold", "link_target": "error-rate-critical"},
                        token=actions)
    assert r.status_code == 201 and r.json()["link_kind"] == "threshold"
    assert [a["title"] for a in api_client.get("/api/v1/action-items", token=read).json()] == ["Alert on card declines"]
    assert len(api_client.get(f"{base}/actions", token=read).json()) == 1
    assert AuditEvent.objects.filter(verb__in=["incident.update", "incident.role", "action_item.add"]).count() == 3


# ------------------------------------------------------------------------------------------------ (c)


def test_a_review_holds_the_measured_figures_of_the_incident_it_reviews(client, responder):
    t0 = timezone.now()
    inc = _declare("SEV2", actor=responder, now=t0)
    Incident.objects.filter(pk=inc.pk).update(opened_at=t0 - timedelta(minutes=20))
    inc.refresh_from_db()
    incident_acknowledge(incident=inc, actor=responder)
    incident_resolve(incident=inc, actor=responder, reason="fixed")
    inc.refresh_from_db()
    review = services.review_start(incident=inc, actor=responder)
    tta = (inc.acknowledged_at - inc.opened_at).total_seconds()
    ttr = (inc.resolved_at - inc.opened_at).total_seconds()
    assert review.facts["time_to_acknowledge_s"] == round(tta, 1) and review.facts["time_to_resolve_s"] == round(ttr, 1)
    assert 1199 <= review.facts["time_to_resolve_s"] <= 1260
    assert review.facts["sev"] == "SEV2" and review.facts["resolved_by"] == responder.username
    assert any(t["text"].startswith("Declared SEV2") for t in review.facts["timeline"])
    client.force_login(responder)
    client.post(f"/command/incidents/{inc.public_id}/review/", {"narrative": "A config push broke card payments."})
    assert Review.objects.get(incident=inc).narrative == "A config push broke card payments."
    md = client.get(f"/command/incidents/{inc.public_id}/review.md").content.decode()
    assert "A config push broke card payments." in md and "Time to resolve: 20 min" in md
    assert b"Time to resolve" in client.get(f"/command/incidents/{inc.public_id}/review/print/").content


def test_a_review_waits_for_the_resolve(responder):
    from portal.errors import Conflict

    with pytest.raises(Conflict):
        services.review_start(incident=_declare(actor=responder), actor=responder)


def test_a_review_lists_the_deployment_its_analysis_and_rollback(responder):
    from deployments.models import Analysis, Deployment, Release, Rollback, Strategy
    from deployments.seed import seed_strategies
    from portal.cloud.models import Environment
    from portal.plan.loader import SeedStats, load_plan

    seed_strategies(load_plan(), reset=True, stats=SeedStats())
    env = Environment.objects.create(name="staging", region="us-east-1")
    inc = _declare(actor=responder, environment=env)
    release = Release.objects.create(environment=env, version="v9", launch_template_version="1")
    t0 = timezone.now()
    dep = Deployment.objects.create(environment=env, release=release, strategy=Strategy.objects.first(), from_colour="blue",
                                    to_colour="green", state="rolled_back", incident=inc, started_at=t0)
    Analysis.objects.create(deployment=dep, at=t0, step_index=0, weight=5, window_minutes=10, decision="critical",
                            new_error_rate=8.0, old_error_rate=0.4)
    Rollback.objects.create(environment=env, deployment=dep, from_colour="green", to_colour="blue", state="completed",
                            requested_by_label="system:rollout", requested_at=t0, switched_at=t0 + timedelta(seconds=12),
                            finished_at=t0 + timedelta(seconds=40))
    incident_resolve(incident=inc, actor=responder, reason="rolled back")
    facts = services.review_start(incident=inc, actor=responder).facts
    (d,) = facts["deployments"]
    assert d["version"] == "v9" and d["analyses"][0]["decision"] == "critical" and d["analyses"][0]["new_error_rate"] == 8.0
    assert d["rollbacks"][0]["switched_s"] == 12.0 and d["rollbacks"][0]["finished_s"] == 40.0


def test_an_overdue_action_item_nags_its_owner_once_a_day(responder, responder2):
    inc = _declare(actor=responder)
    responder2.email = "rita@example.test"
    responder2.save()
    now = timezone.now()
    item = services.action_item_add(incident=inc, title="Page on card declines", owner=responder2,
                                    due_date=(now - timedelta(days=2)).date(), actor=responder)
    services.action_item_add(incident=inc, title="Not due yet", owner=responder2, due_date=date(2100, 1, 1), actor=responder)
    assert services.action_items_nag(now=now) == [item.pk]
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["rita@example.test"] and "Page on card declines" in mail.outbox[0].subject
    assert services.action_items_nag(now=now + timedelta(hours=5)) == []
    assert len(mail.outbox) == 1
    assert services.action_items_nag(now=now + timedelta(hours=24, minutes=1)) == [item.pk]
    assert len(mail.outbox) == 2
    services.action_item_set_state(item=item, state="done", actor=responder2)
    assert services.action_items_nag(now=now + timedelta(days=3)) == []


def test_the_open_action_items_page_lists_items_across_incidents(client, viewer, responder):
    a = _declare(actor=responder, title="one")
    b = _declare(actor=responder, title="two")
    services.action_item_add(incident=a, title="Fix the runbook", link_kind="runbook", link_target="high-error-rate", actor=responder)
    services.action_item_add(incident=b, title="Tick the checklist", link_kind="checklist", link_target="backups", actor=responder)
    done = services.action_item_add(incident=b, title="Already done", actor=responder)
    services.action_item_set_state(item=done, state=ActionItem.State.DONE, actor=responder)
    client.force_login(viewer)
    page = client.get("/command/action-items/").content.decode()
    assert "Fix the runbook" in page and "Tick the checklist" in page and "Already done" not in page


def test_the_seed_registers_the_reminder_and_nag_beat_rows(db):
    from django_celery_beat.models import PeriodicTask

    from portal.command.seed import seed

    seed({}, reset=False)
    seed({}, reset=False)
    assert set(PeriodicTask.objects.filter(task__startswith="portal.command.tasks.").values_list("task", flat=True)) == {
        "portal.command.tasks.update_reminders", "portal.command.tasks.nag_action_items"}


# ------------------------------------------------------------------------------------------------ Slack


def _slash(client, text, user_id):
    import time
    from urllib.parse import urlencode

    from portal.inbound import slack

    body = urlencode({"command": "/incident", "text": text, "user_id": user_id, "channel_id": "C0INC"}).encode()
    ts = str(int(time.time()))
    return client.generic("POST", "/api/v1/inbound/slack/commands", body, content_type="application/x-www-form-urlencoded",
                          headers={"X-Slack-Signature": slack.signature_for(body, ts), "X-Slack-Request-Timestamp": ts})


def test_a_slack_slash_command_declares_as_the_linked_person(client, settings, responder):
    settings.SLACK_SIGNING_SECRET = "test-signing-secret"
    oncall_services.contact_method_add(user=responder, kind="slack", value="U0OSCAR", actor=SYSTEM, verified=True)
    r = _slash(client, "sev2 Photos do not upload", "U0OSCAR")
    assert r.status_code == 200 and r.json()["response_type"] == "in_channel", r.content
    cmd = IncidentCommand.objects.get()
    assert cmd.incident.title == "Photos do not upload" and cmd.sev == "SEV2" and cmd.declared_by == responder.username
    assert "not linked" in _slash(client, "sev1 x", "U0STRANGER").json()["text"]
    assert "Usage" in _slash(client, "sev9 whatever", "U0OSCAR").json()["text"]
    assert IncidentCommand.objects.count() == 1
    bad = client.generic("POST", "/api/v1/inbound/slack/commands", b"text=sev1+x&user_id=U0OSCAR",
                         content_type="application/x-www-form-urlencoded",
                         headers={"X-Slack-Signature": "v0=bad", "X-Slack-Request-Timestamp": "1"})
    assert bad.status_code == 401 and IncidentCommand.objects.count() == 1


def test_the_dashboard_panel_reads_in_a_fixed_number_of_queries(client, responder):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(responder)

    def panel_queries() -> tuple[int, str]:
        client.get("/command/panel/")  # warm the session and permission caches
        with CaptureQueriesContext(connection) as ctx:
            body = client.get("/command/panel/").content.decode()
        return len(ctx.captured_queries), body

    for n in range(2):
        services.role_take(incident=_declare(actor=responder, title=f"incident {n}"), role="commander", actor=responder)
    two, _ = panel_queries()
    for n in range(2, 6):
        services.role_take(incident=_declare(actor=responder, title=f"incident {n}"), role="commander", actor=responder)
    six, body = panel_queries()
    assert six == two  # no query per incident
    assert body.count('data-testid="declared-incident"') == 6 and body.count(f"Commander: {responder.username}") == 6
