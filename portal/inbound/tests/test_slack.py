"""Answering Slack pages: real slack_sdk (signatures, WebClient) against the sandbox's Slack stand-in;
interactions posted form-encoded and signed with the signing secret, as Slack posts them."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import urlencode

import pytest

from deployments import services as deployments
from deployments.models import Rollback
from deployments.tests.conftest import clock, drive, fake_metrics, fast, strategies  # noqa: F401 - fixtures
from portal.audit.models import AuditEvent
from portal.inbound import slack
from portal.inbound.models import RollbackCode, SlackMessage
from portal.inbound.tests.conftest import fire, sent
from portal.incidents.models import Incident, TimelineEntry
from portal.oncall import services as oncall
from tests.plugins.standins import slack_standin  # noqa: F401 - the stand-in's fixture

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/v1/inbound/slack/interactions"
RESPONDER_SLACK, LEAD_SLACK = "U0RESPOND", "U0LEAD0001"


def linked(user, slack_id, *, page=True):
    oncall.contact_method_add(user=user, kind="slack", value=slack_id, actor="system:test", verified=True)
    if page:
        oncall.notification_rule_add(user=user, severity="critical", kind="slack", delay_minutes=0, actor="system:test")


class SlackApp:
    """Posts interactions as Slack does: form field `payload`, X-Slack-Signature v0 over the raw body."""

    def __init__(self, client):
        self.client = client

    def press(self, action_id, value, *, user=RESPONDER_SLACK, state=None, timestamp=None, signature=None):
        payload = {"type": "block_actions", "user": {"id": user}, "channel": {"id": "D0PAGES"},
                   "actions": [{"action_id": action_id, "value": value, "type": "button"}]}
        if state is not None:
            payload["state"] = {"values": state}
        body = urlencode({"payload": json.dumps(payload)}).encode()
        ts = str(int(time.time()) if timestamp is None else timestamp)
        sig = signature if signature is not None else slack.signature_for(body, ts)
        return self.client.generic("POST", URL, body, content_type="application/x-www-form-urlencoded",
                                   headers={"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": ts})


@pytest.fixture
def app(client, settings, slack_standin):  # noqa: F811
    settings.SLACK_SIGNING_SECRET = "test-signing-secret"
    settings.PORTAL_PUBLIC_URL = "https://ops.example.test"
    return SlackApp(client)


def updates():
    return [m for m in sent("slack") if m.sender == "bot (chat.update)"]


def ephemerals():
    return [m.body for m in sent("slack") if m.sender == "bot (ephemeral)"]


def test_a_page_to_slack_is_a_message_with_buttons_stored_by_channel_and_ts(app, primary, responder):
    linked(responder, RESPONDER_SLACK)
    inc = fire()
    [post] = [m for m in sent("slack") if m.sender == "bot"]
    assert post.to == RESPONDER_SLACK and f"INC-{inc.pk}" in post.body
    buttons = {e["action_id"]: e for e in post.raw["blocks"][-1]["elements"]}
    assert buttons["acknowledge"]["value"] == buttons["resolve"]["value"] == str(inc.public_id)
    assert buttons["open_incident"]["url"] == f"https://ops.example.test{inc.get_absolute_url()}"
    assert "rollback" not in buttons  # no environment with a deployment
    message = SlackMessage.objects.get(incident=inc)
    assert (message.channel, message.ts) == (RESPONDER_SLACK, post.provider_id)


def test_acknowledge_from_slack_acknowledges_and_the_message_says_by_whom(app, primary, responder):
    linked(responder, RESPONDER_SLACK)
    inc = fire()
    answer = app.press("acknowledge", str(inc.public_id))
    assert answer.status_code == 200 and answer.json()["changed"] is True
    inc.refresh_from_db()
    assert inc.status == Incident.Status.ACKNOWLEDGED and inc.acknowledged_by == responder.username
    assert any(f"Acknowledged by {responder.username}" in m.body for m in updates())
    last = updates()[-1].raw["blocks"]
    assert "acknowledge" not in {e.get("action_id") for e in last[-1]["elements"]}
    entry = TimelineEntry.objects.get(incident=inc, kind=TimelineEntry.Kind.ACKNOWLEDGED)
    assert (entry.actor_label, entry.text, entry.data) == (responder.username, "Acknowledged via Slack", {"via": "Slack"})
    row = AuditEvent.objects.get(verb="incident.acknowledge", target_id=str(inc.public_id))
    assert (row.actor_label, row.extra) == (responder.username, {"via": "Slack"})
    assert f"Acknowledged INC-{inc.pk} as {responder.username}" in ephemerals()


def test_a_wrong_signature_and_a_replay_older_than_five_minutes_change_nothing(app, primary, responder):
    linked(responder, RESPONDER_SLACK)
    inc = fire()
    before = AuditEvent.objects.count()
    wrong = app.press("acknowledge", str(inc.public_id), signature="v0=" + "0" * 64)
    old = int(time.time()) - 6 * 60
    replayed = app.press("acknowledge", str(inc.public_id), timestamp=old)  # signed correctly, but at `old`
    assert (wrong.status_code, wrong.json()["error"]) == (401, "bad_signature")
    assert replayed.status_code == 401
    inc.refresh_from_db()
    assert inc.status == Incident.Status.TRIGGERED and AuditEvent.objects.count() == before


def test_an_unknown_slack_user_can_do_nothing(app, primary, responder):
    linked(responder, RESPONDER_SLACK)
    oncall.contact_method_add(user=responder, kind="slack", value="U0UNVERIFIED", actor="system:test", verified=False)
    inc = fire()
    before = AuditEvent.objects.count()
    for who in ("U0STRANGER", "U0UNVERIFIED"):
        for action in ("acknowledge", "resolve", "rollback", "rollback_confirm"):
            answer = app.press(action, str(inc.public_id), user=who)
            assert answer.status_code == 200 and answer.json()["changed"] is False
            assert "not linked" in answer.json()["answer"]
    inc.refresh_from_db()
    assert inc.status == Incident.Status.TRIGGERED and AuditEvent.objects.count() == before
    assert any("not linked" in text for text in ephemerals())


# ----------------------------------------------------------------------------------------------
# Roll back


@pytest.fixture
def deploying(aws_platform, strategies, fake_metrics, fast, clock, responder, primary):  # noqa: F811
    """A canary holding at 5 % on green, and an incident of that environment paged to the responder by Slack."""
    env = aws_platform
    dep = deployments.deployment_create(environment=env, version="v2", strategy="canary-quick",
                                        launch_template_version="$Latest", actor=responder)
    assert drive(dep, clock, until=("holding",)) == "holding"
    linked(responder, RESPONDER_SLACK)
    inc = fire()
    Incident.objects.filter(pk=inc.pk).update(environment=env)
    inc.refresh_from_db()
    return env, inc


def test_rollback_asks_for_confirmation_and_two_confirmations_are_one_rollback(app, deploying, responder, lead):
    env, inc = deploying
    linked(lead, LEAD_SLACK, page=False)
    first = app.press("rollback", str(inc.public_id))
    assert first.json()["changed"] is False and Rollback.objects.count() == 0  # the press only asks
    [ask] = [m for m in sent("slack") if m.sender == "bot (ephemeral)" and m.body.startswith("Confirm")]
    assert [e["action_id"] for e in ask.raw["blocks"][-1]["elements"]] == ["rollback_confirm"]
    assert app.press("rollback_confirm", str(inc.public_id)).json()["changed"] is True
    second = app.press("rollback_confirm", str(inc.public_id), user=LEAD_SLACK).json()
    assert second["changed"] is False and "nothing changed" in second["answer"]
    assert Rollback.objects.filter(environment=env).count() == 1
    rb = Rollback.objects.get(environment=env)
    assert rb.requested_by_label == responder.username and "via Slack" in rb.reason
    texts = list(TimelineEntry.objects.filter(incident=inc, kind=TimelineEntry.Kind.DEPLOYMENT).values_list("text", flat=True))
    assert f"Rollback of {env.name} to {rb.to_colour} requested by {responder.username} via Slack" in texts
    # ...and the rollback itself notes its request and its read-back on the open incidents (one rollback, once each).
    assert len(texts) == 3, texts
    assert AuditEvent.objects.filter(verb="environment.rollback", actor_label=responder.username).count() == 1
    # The page updates itself with the rollback and its weights.
    assert any(f"{env.name} to {rb.to_colour}" in json.dumps(m.raw["blocks"]) and "weights" in json.dumps(m.raw["blocks"])
               for m in updates())


def test_a_viewer_linked_to_slack_may_not_roll_back(app, deploying, viewer):
    env, inc = deploying
    linked(viewer, "U0VIEWER01", page=False)
    answer = app.press("rollback_confirm", str(inc.public_id), user="U0VIEWER01").json()
    assert answer["changed"] is False and Rollback.objects.count() == 0


def test_production_needs_the_one_time_code_and_a_wrong_code_is_refused(app, deploying, responder):
    env, inc = deploying
    type(env).objects.filter(pk=env.pk).update(is_production=True)
    answer = app.press("rollback_confirm", str(inc.public_id)).json()
    assert answer["changed"] is False and Rollback.objects.count() == 0
    code_row = RollbackCode.objects.get(user=responder)
    [dm] = [m for m in sent("slack") if m.sender == "bot" and "code to roll back" in m.body]
    assert dm.to == RESPONDER_SLACK
    code = re.search(r"\b(\d{6})\b", dm.body).group(1)
    assert code not in code_row.code_hash and len(code_row.code_hash) == 64

    wrong = app.press("rollback_code", str(code_row.public_id), state={"rollback_code": {"code": {"value": "000000" if code != "000000" else "111111"}}})
    assert wrong.json()["changed"] is False and "Wrong code" in wrong.json()["answer"]
    assert Rollback.objects.count() == 0
    right = app.press("rollback_code", str(code_row.public_id), state={"rollback_code": {"code": {"value": code}}})
    assert right.json()["changed"] is True and Rollback.objects.filter(environment=env).count() == 1
    again = app.press("rollback_code", str(code_row.public_id), state={"rollback_code": {"code": {"value": code}}})
    assert again.json()["changed"] is False and Rollback.objects.count() == 1  # single-use
