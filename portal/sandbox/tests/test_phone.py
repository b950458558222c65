"""/sandbox/messages/ answers a page as if from the phone: the sandbox posts to the inbound Twilio routes
of a live portal (PORTAL_PUBLIC_URL), signed with the dummy token as Twilio signs."""

from __future__ import annotations

import pytest

from portal.inbound.tests.conftest import fire, person, primary, sent  # noqa: F401 - primary: the paging policy fixture
from portal.incidents.models import Incident, TimelineEntry
from portal.sandbox.models import SandboxMessage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def live_portal(live_server, settings):
    settings.PORTAL_PUBLIC_URL = live_server.url
    return live_server


@pytest.mark.usefixtures("primary")
def test_the_sandbox_reply_form_acknowledges_via_sms(live_portal, twilio_standin, responder, client):
    person(responder)
    inc = fire()
    [sms] = sent("sms")
    client.force_login(responder)
    page = client.get("/sandbox/messages/")
    assert b'data-testid="sms-reply"' in page.content
    answer = client.post(f"/sandbox/messages/{sms.pk}/answer/", {"body": "4"}, follow=True)
    assert f"Acknowledged INC-{inc.pk} as {responder.username}" in answer.content.decode()
    inc.refresh_from_db()
    assert inc.status == Incident.Status.ACKNOWLEDGED
    assert TimelineEntry.objects.get(incident=inc, kind="acknowledged").text == "Acknowledged via SMS"


@pytest.mark.usefixtures("primary")
def test_the_sandbox_call_keys_resolve(live_portal, twilio_standin, responder, client):
    person(responder, rules=(("voice", 0),))
    inc = fire()
    [call] = sent("call")
    client.force_login(responder)
    assert b'data-testid="call-keys"' in client.get("/sandbox/messages/?kind=call").content
    client.post(f"/sandbox/messages/{call.pk}/answer/", {"digit": "6"})
    inc.refresh_from_db()
    assert inc.status == Incident.Status.RESOLVED and inc.resolved_by == responder.username
    assert SandboxMessage.objects.filter(kind="call").count() == 1  # the answer placed no new call
