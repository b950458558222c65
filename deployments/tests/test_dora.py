"""DORA figures match a history counted by hand: deployments, lead time, change failure rate, time to restore."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import dora
from deployments.models import Deployment, Release, Rollback
from portal.cloud.models import Environment
from portal.incidents.models import Alert, Incident

H, M, S = timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)


@pytest.fixture
def history(strategies):
    """Last week (Monday 00:00 UTC = `mon`) on dora-env, and one deployment the week before:

    d1  Mon: release 09:00, 100 % at 10:30 (lead 1 h 30), completed. Not failed: a warning on green 10 min
        later, a critical incident on blue (the old colour) 30 min later, a critical one on green 2 h later.
    d2  Tue: release 08:00, 100 % at 12:00 (lead 4 h), completed; a critical incident on green at 12:20
        (20 min after 100 %): failed; rolled back 12:25, listener read back 12:32: restored in 12 min.
    d3  Wed: release 09:00, rolled back at 25 % (never 100 %): its own critical incident opened 10:00,
        rollback read back 10:01:10: restored in 70 s.
    d4  Thu: aborted before any traffic moved: not a change.
    d0  the week before: 100 % one hour after its release, completed.
    Last week: 2 deployments, 3 changes, 2 failures (66.7 %), lead time median (1.5 h + 4 h) / 2 = 9900 s,
    time to restore median (720 s + 70 s) / 2 = 395 s.
    """
    env = Environment.objects.create(name="dora-env", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    other = Environment.objects.create(name="dora-other", region="us-east-1", endpoint_url="http://127.0.0.1:9")
    mon = dora.week_start(timezone.now()) - timedelta(weeks=1)
    strategy = strategies["canary"]

    def deployment(version, *, released, state, switched=None, finished, incident=None, on=env):
        release = Release.objects.create(environment=on, version=version, launch_template_version="1")
        Release.objects.filter(pk=release.pk).update(created_at=released)
        return Deployment.objects.create(environment=on, release=release, strategy=strategy, from_colour="blue",
                                         to_colour="green", state=state, switched_at=switched, finished_at=finished,
                                         incident=incident, started_at=released)

    def incident(key, opened, *, severity="critical", colour=None, on=env, resolved=None):
        inc = Incident.objects.create(grouping_key=key, source="internal", severity=severity, environment=on,
                                      title=key, opened_at=opened, status="resolved" if resolved else "triggered",
                                      resolved_at=resolved)
        if colour:
            Alert.objects.create(source="internal", fingerprint=key, name=key, status="firing", severity=severity,
                                 labels={"environment": on.name, "colour": colour}, last_received_at=opened,
                                 incident=inc, environment=on)
        return inc

    def rollback(dep, requested, confirmed):
        Rollback.objects.create(environment=dep.environment, deployment=dep, from_colour="green", to_colour="blue",
                                state="completed", requested_by_label="oscar-oncall", requested_at=requested,
                                switched_at=confirmed - S, confirmed_at=confirmed, finished_at=confirmed)

    day = timedelta(days=1)
    d1_switch = mon + 10 * H + 30 * M
    deployment("v1", released=mon + 9 * H, state="completed", switched=d1_switch, finished=d1_switch + 10 * M)
    incident("d1-warning-green", d1_switch + 10 * M, severity="warning", colour="green", resolved=d1_switch + 20 * M)
    incident("d1-critical-blue", d1_switch + 30 * M, colour="blue", resolved=d1_switch + 40 * M)
    incident("d1-critical-green-late", d1_switch + 2 * H, colour="green", resolved=d1_switch + 3 * H)

    d2_switch = mon + day + 12 * H
    d2 = deployment("v2", released=mon + day + 8 * H, state="rolled_back", switched=d2_switch, finished=d2_switch + 10 * M)
    incident("d2-critical-green", d2_switch + 20 * M, colour="green", resolved=d2_switch + 40 * M)
    rollback(d2, d2_switch + 25 * M, d2_switch + 32 * M)

    d3_open = mon + 2 * day + 10 * H
    own = incident("d3-analysis", d3_open)
    d3 = deployment("v3", released=mon + 2 * day + 9 * H, state="rolled_back", finished=d3_open + 5 * M, incident=own)
    rollback(d3, d3_open + 30 * S, d3_open + 70 * S)

    deployment("v4", released=mon + 3 * day + 9 * H, state="aborted", finished=mon + 3 * day + 9 * H + 5 * M)
    deployment("v0", released=mon - 4 * day, state="completed", switched=mon - 4 * day + H, finished=mon - 4 * day + H + 5 * M)
    # Another environment's failures never count here.
    deployment("x1", released=mon + 9 * H, state="rolled_back", switched=mon + 10 * H, finished=mon + 11 * H, on=other)
    return env, mon


def test_dora_figures_match_the_hand_counted_history(history):
    env, mon = history
    weeks = dora.dora_weeks(env, weeks=3)
    assert [w.starts_on for w in weeks] == [(mon - timedelta(weeks=1)).date(), mon.date(), (mon + timedelta(weeks=1)).date()]
    before, last, this = weeks
    assert (before.deployments, before.changes, before.failures, before.change_failure_rate_pct) == (1, 1, 0, 0.0)
    assert before.lead_time_p50_seconds == 3600.0 and before.time_to_restore_p50_seconds is None
    assert last.deployments == 2
    assert last.changes == 3
    assert last.failures == 2
    assert last.change_failure_rate_pct == 66.7
    assert last.lead_time_p50_seconds == 9900.0
    assert (last.restores, last.unrestored) == (2, 0)
    assert last.time_to_restore_p50_seconds == 395.0
    assert (this.deployments, this.changes, this.change_failure_rate_pct, this.lead_time_p50_seconds) == (0, 0, None, None)


def test_dora_api_and_partial(history, api_client, make_token, client, viewer):
    env, mon = history
    r = api_client.get("/api/v1/environments/dora-env/dora?weeks=3", token=make_token("read"))
    assert r.status_code == 200, r.content
    last = r.json()["weeks"][1]
    assert last["week"] == dora.iso_week(mon) and last["deployments"] == 2 and last["change_failure_rate_pct"] == 66.7
    assert last["time_to_restore_p50_seconds"] == 395.0
    assert api_client.get("/api/v1/environments/nowhere/dora", token=make_token("read")).status_code == 404
    assert api_client.get("/api/v1/environments/dora-env/dora").status_code == 401

    client.force_login(viewer)
    page = client.get("/deployments/dora/?environment=dora-env&weeks=3", headers={"HX-Request": "true"})
    assert page.status_code == 200
    text = page.content.decode()
    assert dora.iso_week(mon) in text and "66.7 %" in text and "(2 of 3)" in text
