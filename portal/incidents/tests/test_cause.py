"""The likely causes of an incident, ranked: each test's name is the claim it checks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments.models import Analysis, Deployment, DeploymentEvent, Release, ScaleAction
from deployments.tests.conftest import strategies  # noqa: F401 - its fixture
from portal.audit.services import audit_record
from portal.cloud.models import Environment
from portal.health.models import Check
from portal.incidents import cause, changes, ingest, selectors
from portal.incidents.models import Incident


class Source:
    """Numbers per colour now; no series."""

    def __init__(self, values: dict, cpu: dict | None = None, db: float | None = None):
        self.values, self.cpus, self.db = values, cpu or {}, db

    def error_rate(self, colour, minutes):
        return self.values.get(colour)

    def cpu(self, colour, minutes):
        return self.cpus.get(colour)

    def db_connections_pct(self, minutes):
        return self.db

    def series(self, metric, colour, minutes, period):
        return []


@pytest.fixture
def env(db, monkeypatch):
    e = Environment.objects.create(name="staging", region="us-east-1")
    weights = {"blue": 0, "green": 100}
    monkeypatch.setattr(cause.aws, "get_listener_weights", lambda env: dict(weights))
    monkeypatch.setattr(cause.aws, "describe_groups", lambda env: {c: type("G", (), {"desired": 2})() for c in ("blue", "green")})
    e.weights = weights
    return e


def deploy(env, strategy, version, to_colour, *, minutes_ago=5, state=Deployment.State.COMPLETED):
    release = Release.objects.create(environment=env, version=version, launch_template_version="$Latest")
    started = timezone.now() - timedelta(minutes=minutes_ago)
    dep = Deployment.objects.create(environment=env, release=release, strategy=strategy, from_colour="blue" if to_colour == "green" else "green",
                                    to_colour=to_colour, state=state, weights={to_colour: 100}, started_at=started,
                                    finished_at=None if state in ("holding",) else started + timedelta(minutes=2))
    Deployment.objects.filter(pk=dep.pk).update(created_at=started)
    dep.refresh_from_db()
    return dep


def incident_on(env, colour="green", metric="error_rate", severity="critical") -> Incident:
    return ingest.alert_ingest_internal(source="health", fingerprint=f"{env.name}-{metric}-{colour}", name="HighErrorRate",
                                        severity=severity, firing=True, summary="errors", environment=env,
                                        labels={"environment": env.name, "metric": metric, "colour": colour}).incident


def test_the_deployment_whose_new_colour_carries_the_errors_ranks_first_with_its_evidence(env, strategies):  # noqa: F811
    old = deploy(env, strategies["canary-quick"], "v1", "blue", minutes_ago=50)
    dep = deploy(env, strategies["canary-quick"], "v2", "green", minutes_ago=6)
    Analysis.objects.create(deployment=dep, at=timezone.now() - timedelta(minutes=4), step_index=0, weight=25, window_minutes=1,
                            decision="fail", new_error_rate=9.5, old_error_rate=0.4, new_errors=28, new_requests=300,
                            reasons=["green 9.5 % above blue 0.4 %"])
    # A vendor is down too, but it would put both colours up, and only green is.
    Check.objects.create(slug="stripe", name="Stripe", kind=Check.Kind.STATUSPAGE, group=Check.Group.EXTERNAL,
                         status=Check.Status.FAILING, last_ok=False, last_reason="major: payments degraded")
    # The rollout's own capacity step (green scaled up before traffic moved) is the deployment, not a change of its own.
    ScaleAction.objects.create(environment=env, colour="green", from_desired=0, to_desired=2, reason="deployment v2: prepare green",
                               state="applied", automatic=True, requested_by_label="system:rollout",
                               created_at=dep.started_at + timedelta(seconds=20))
    incident = incident_on(env)
    causes = cause.likely_causes(incident, source=Source({"green": 10.0, "blue": 0.4}))
    assert [c.kind for c in causes] == ["deployment", "vendor"]
    top = causes[0]
    assert top.ref["deployment"] == str(dep.public_id) and top.rank == 1
    assert top.action["kind"] == "rollback" and top.action["deployment"] == dep
    assert "Weights now: blue 0 / green 100" in top.evidence
    assert any("fail" in e and "28 errors of 300 requests" in e and "green 9.5 % above blue 0.4 %" in e for e in top.evidence)
    assert "green carries the errors and blue does not" in top.why and top.why.startswith("First")
    assert causes[1].why.startswith("Ranked 2") and "below Deployment v2 to green" in causes[1].why
    assert "only green is affected" in causes[1].why
    # The deployments shown: green's and the one before it, not every deployment.
    assert selectors.recent_deployments_for(incident) == [dep, old]


def test_errors_on_both_colours_put_the_degraded_vendor_above_the_deployment(env, strategies):  # noqa: F811
    deploy(env, strategies["canary-quick"], "v2", "green", minutes_ago=6)
    Check.objects.create(slug="stripe", name="Stripe", kind=Check.Kind.STATUSPAGE, group=Check.Group.EXTERNAL,
                         status=Check.Status.FAILING, last_ok=False, last_reason="major: payments degraded")
    incident = incident_on(env, colour="")
    causes = cause.likely_causes(incident, source=Source({"green": 9.0, "blue": 8.0}))
    assert causes[0].kind == "vendor" and causes[0].title == "Vendor: Stripe"
    assert "both colours" in causes[0].why and "major: payments degraded" in causes[0].evidence[0]
    assert causes[1].kind == "deployment" and "both colours are over the threshold" in causes[1].reason


def test_cpu_over_the_warning_threshold_offers_scaling_out_the_live_colour(env):
    incident = incident_on(env, metric="p95_response_time")
    causes = cause.likely_causes(incident, source=Source({}, cpu={"green": 92.0, "blue": 10.0}))
    assert causes[0].kind == "capacity" and causes[0].title == "CPU on green"
    assert causes[0].action == {"kind": "scale", "label": "Scale green out to 3", "environment": "staging", "colour": "green",
                                "from": 2, "desired": 3}
    assert all(c.title != "CPU on blue" for c in causes)  # blue has no traffic


def test_a_recent_automatic_scale_in_is_a_change_whose_action_pauses_automation(env):
    ScaleAction.objects.create(environment=env, colour="green", from_desired=4, to_desired=2, reason="cpu low", state="applied",
                               automatic=True, requested_by_label="system:autoscaler", created_at=timezone.now() - timedelta(minutes=8))
    incident = incident_on(env)
    causes = cause.likely_causes(incident, source=Source({"green": 7.0}))
    scale = next(c for c in causes if c.title == "Scale of green")
    assert scale.score == 45 and scale.action["kind"] == "automation" and "fewer instances" in scale.reason


def test_a_drill_and_a_threshold_edit_from_the_audit_trail_are_recent_changes(env):
    audit_record(actor="system:test", verb="drill.start", target=("sandbox.drill", "1"),
                 after={"kind": "error-rate", "colour": "green", "level": 10}, extra={"environment": env.name})
    audit_record(actor="system:test", verb="health.threshold.update", target=("health.thresholdrule", "error-rate-critical"),
                 before={"value": 10}, after={"value": 5}, extra={"metric": "error_rate", "severity": "critical"})
    incident = incident_on(env)
    titles = {c.title: c for c in cause.likely_causes(incident, source=Source({"green": 7.0}))}
    assert "error-rate on green at 10" in titles["Drill"].evidence[0]
    assert titles["Threshold edit"].score == 40 and "10 → 5" in titles["Threshold edit"].evidence[0]


def test_the_change_feed_has_every_kind_of_change_of_the_hour_newest_first(env, strategies):  # noqa: F811
    dep = deploy(env, strategies["canary-quick"], "v2", "green", minutes_ago=30)
    DeploymentEvent.objects.create(deployment=dep, environment=env, at=timezone.now() - timedelta(minutes=29), kind="weights",
                                   message="weights", data={"weights": {"blue": 75, "green": 25}})
    ScaleAction.objects.create(environment=env, colour="green", from_desired=2, to_desired=3, reason="busy", state="applied",
                               requested_by_label="oscar", created_at=timezone.now() - timedelta(minutes=10))
    audit_record(actor="system:test", verb="environment.rds_failover", target=env, extra={"reason": "drill"})
    audit_record(actor="system:test", verb="drill.start", target=("sandbox.drill", "1"), after={"kind": "latency"},
                 extra={"environment": env.name})
    audit_record(actor="system:test", verb="drill.start", target=("sandbox.drill", "2"), after={"kind": "latency"},
                 extra={"environment": "elsewhere"})
    feed = changes.change_feed(env)
    kinds = [c.kind for c in feed]
    assert set(kinds) == {"deployment", "weights", "scale", "failover", "drill"}
    assert kinds.count("drill") == 1  # another environment's drill is not in it
    assert [c.at for c in feed] == sorted((c.at for c in feed), reverse=True)
    assert "Weights read back blue 75 / green 25" in [c.text for c in feed]
    assert changes.change_feed(env, now=timezone.now() + timedelta(hours=2)) == []


def test_the_dashboard_row_has_the_sparkline_top_cause_weights_error_rate_and_who_is_on_call(env, strategies, client, viewer,  # noqa: F811
                                                                                           monkeypatch):
    from portal.incidents import signal

    class Series(Source):
        def series(self, metric, colour, minutes, period):
            now = timezone.now()
            return [(now - timedelta(minutes=m), self.values.get(colour) or 0.0) for m in range(10, -1, -1)] if colour == "green" else []

    monkeypatch.setattr(signal, "source_for", lambda incident, fired=None: Series({"green": 10.0, "blue": 0.3}))
    deploy(env, strategies["canary-quick"], "v2", "green", minutes_ago=6)
    incident = incident_on(env)
    client.force_login(viewer)
    body = client.get("/incidents/panel/").content.decode()
    assert incident.title in body and "<polyline points=" in body
    assert "cause: <strong>Deployment v2 to green</strong>" in body
    assert "weights blue 0 / green 100" in body and "green errors 10.0 %" in body


def test_a_rollout_rolled_back_before_the_incident_is_not_the_live_deployment(env, strategies):  # noqa: F811
    """Seen in make run: v2 to blue was rolled back, then a platform-wide alert fired on green (still
    v1): the page ranked the rolled-back v2 (no traffic, 'a rollback would change nothing') and showed
    no way back from v1."""
    live = deploy(env, strategies["canary-quick"], "v1", "green", minutes_ago=8)
    deploy(env, strategies["canary-quick"], "v2", "blue", minutes_ago=4, state=Deployment.State.ROLLED_BACK)
    incident = ingest.alert_ingest_internal(source="health", fingerprint="slo", name="SLO burn rate", severity="critical",
                                            firing=True, summary="burning", environment=env,
                                            labels={"environment": env.name, "metric": "error_rate", "scope": "platform"}).incident
    shown = selectors.recent_deployments_for(incident)
    assert shown[0] == live and shown[0].incident_role == "live on green"
    top = cause.likely_causes(incident, source=Source({"green": 9.0}))[0]
    assert top.title == "Deployment v1 to green"
    assert top.action["kind"] == "rollback" and top.action["label"] == "Roll back to blue"


def test_a_drill_stopped_before_the_incident_opened_is_no_cause(env, strategies):  # noqa: F811
    drill_id = "90de9e1c-96b0-4812-8541-640274adb701"
    started = {"kind": "error-rate", "colour": "green", "level": 40.0,
               "ends_at": str(timezone.now() + timedelta(minutes=5)), "stopped_at": None}
    audit_record(actor="system:manage.py drill", verb="drill.start", target=("cloud.drill", drill_id), after=started,
                 extra={"environment": env.name})
    audit_record(actor="system:manage.py drill", verb="drill.stop", target=("cloud.drill", drill_id), before=started,
                 after={**started, "stopped_at": str(timezone.now())}, extra={"environment": env.name})
    running = {**started, "colour": "green"}
    audit_record(actor="system:manage.py drill", verb="drill.start", target=("cloud.drill", "another"), after=running,
                 extra={"environment": env.name})
    incident = incident_on(env, colour="green")
    drills = [c for c in cause.likely_causes(incident, source=Source({"green": 9.0})) if c.title == "Drill"]
    assert len(drills) == 1  # the one still running, not the stopped one
    ended = {**started, "ends_at": str(incident.opened_at - timedelta(minutes=1))}
    audit_record(actor="system:manage.py drill", verb="drill.start", target=("cloud.drill", "ran-out"), after=ended,
                 extra={"environment": env.name})
    drills = [c for c in cause.likely_causes(incident, source=Source({"green": 9.0})) if c.title == "Drill"]
    assert len(drills) == 1  # nor one whose time ran out before the incident opened


def test_a_reopened_incident_shows_the_deployment_live_when_it_reopened(env, strategies):  # noqa: F811
    deploy(env, strategies["canary-quick"], "v1", "green", minutes_ago=40)
    incident = incident_on(env, colour="")
    Incident.objects.filter(pk=incident.pk).update(opened_at=timezone.now() - timedelta(minutes=20))
    from portal.incidents.services import incident_resolve

    incident.refresh_from_db()
    incident_resolve(incident=incident, actor="system:test")
    newer = deploy(env, strategies["canary-quick"], "v3", "blue", minutes_ago=6)
    ingest.alert_ingest_internal(source="health", fingerprint=f"{env.name}-error_rate-", name="HighErrorRate",
                                 severity="critical", firing=False, summary="ok", environment=env,
                                 labels={"environment": env.name, "metric": "error_rate", "colour": ""})
    again = incident_on(env, colour="")
    assert again.pk == incident.pk and again.reopened_count == 1
    assert selectors.recent_deployments_for(again)[0] == newer
    top = cause.likely_causes(again, source=Source({"blue": 9.0}))[0]
    assert top.title == "Deployment v3 to blue" and "before the incident reopened" in top.why, top.why
