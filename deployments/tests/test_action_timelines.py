"""A person's rollback, scale or RDS failover is written to the timeline of every open incident of that
environment (and of no other incident), naming who did what and how it ended."""

from __future__ import annotations

import pytest
from django.utils import timezone

from deployments import services
from deployments.mechanics import scale_apply
from deployments.models import Rollback
from deployments.rollback import rollback_advance
from portal.cloud import aws
from portal.cloud.models import Environment
from portal.incidents.models import Incident, TimelineEntry


@pytest.fixture
def incidents(aws_platform):
    """Two open incidents on the sandbox, a resolved one there, an open one elsewhere."""
    env = aws_platform
    other = Environment.objects.create(name="elsewhere", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    now = timezone.now()

    def make(key, on, **kw):
        return Incident.objects.create(grouping_key=key, source="internal", environment=on, title=key, opened_at=now, **kw)

    return {
        "critical": make("errors-green", env, severity="critical"),
        "warning": make("cpu-blue", env, severity="warning", status="acknowledged"),
        "resolved": make("old", env, severity="critical", status="resolved", resolved_at=now),
        "elsewhere": make("other-env", other, severity="critical"),
    }


def _lines(incident, kind):
    return list(TimelineEntry.objects.filter(incident=incident, kind=kind).values_list("text", flat=True))


def test_a_manual_rollback_is_on_every_open_incident_with_its_result(aws_platform, strategies, responder):
    env = aws_platform
    services.deployment_create(environment=env, version="v2", strategy="canary-quick", launch_template_version="$Latest",
                               actor=responder)
    aws.set_listener_weights(env, {"blue": 75, "green": 25})
    now = timezone.now()
    found = {k: Incident.objects.create(grouping_key=k, source="internal", environment=env, title=k, opened_at=now,
                                        severity=sev, status=st)
             for k, sev, st in (("errors-green", "critical", "triggered"), ("cpu-blue", "warning", "acknowledged"),
                                ("old", "critical", "resolved"))}

    services.environment_rollback(environment=env, actor=responder, reason="errors on green")
    assert rollback_advance(rollback_id=Rollback.objects.get().pk) == "completed"

    for key in ("errors-green", "cpu-blue"):
        requested, completed = _lines(found[key], "deployment")
        assert requested.startswith("oscar-oncall rolled sandbox back to blue (errors on green): rollback requested")
        assert "blue 75 % / green 25 %" in requested
        assert completed.startswith("Rollback of sandbox to blue (requested by oscar-oncall) completed: "
                                    "the listener reads back blue 100 % / green 0 %")
        assert TimelineEntry.objects.filter(incident=found[key], kind="deployment").first().actor_label == "oscar-oncall"
    assert _lines(found["old"], "deployment") == []


def test_a_manual_scale_is_on_every_open_incident_an_automatic_one_is_not(incidents, responder, lead, settings):
    settings.DEPLOYMENTS_SCALE_COOLDOWN_SECONDS = 0
    env = Environment.objects.get(name="sandbox")
    action = services.environment_scale(environment=env, colour="blue", desired=3, actor=responder, reason="launch traffic")
    assert action.read_back["desired"] == 3
    expected = "oscar-oncall scaled blue on sandbox from 2 to 3 (launch traffic): AWS reads back 3"
    assert _lines(incidents["critical"], "cloud_action") == [expected]
    assert _lines(incidents["warning"], "cloud_action") == [expected]
    assert _lines(incidents["resolved"], "cloud_action") == []
    assert _lines(incidents["elsewhere"], "cloud_action") == []

    scale_apply(env=env, colour="blue", desired=2, actor="system:autoscale", reason="quiet", automatic=True)
    assert _lines(incidents["critical"], "cloud_action") == [expected]

    # Beyond the phase maximum: a responder asks, a lead approves; the approval is the action.
    asked = services.scale_request_approval(environment=env, colour="blue", desired=5, reason="launch day", actor=responder)
    assert _lines(incidents["critical"], "cloud_action") == [expected]
    services.scale_approve(action=asked, actor=lead)
    assert _lines(incidents["warning"], "cloud_action")[-1] == (
        "oscar-oncall (approved by lena-lead) scaled blue on sandbox from 2 to 5 (launch day): AWS reads back 5")


def test_an_rds_failover_is_on_every_open_incident(incidents, lead):
    env = Environment.objects.get(name="sandbox")
    services.rds_failover(environment=env, actor=lead, reason="primary slow")
    (line,) = _lines(incidents["critical"], "cloud_action")
    assert line.startswith(f"lena-lead failed the sandbox database ({env.rds_instance_id}) over to its standby (primary slow)")
    assert len(_lines(incidents["warning"], "cloud_action")) == 1
    assert _lines(incidents["elsewhere"], "cloud_action") == []
