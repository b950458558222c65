"""The stand-ins: a test page from /oncall/me/ arrives at the SMTP catcher, and /sandbox/messages/ shows a sent SMS."""

from __future__ import annotations

import pytest

from portal import notify
from portal.oncall import services as oncall
from portal.oncall.models import TestPage
from portal.sandbox import standins
from portal.sandbox.models import SandboxMessage

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_test_page_from_oncall_me_arrives_at_the_smtp_catcher(smtp_standin, client, responder):
    method = oncall.contact_method_add(user=responder, kind="email", value="oscar@example.test", actor="system:test",
                                       verified=True)
    client.force_login(responder)
    r = client.post(f"/oncall/me/contact-methods/{method.public_id}/test/")
    assert r.status_code in (200, 302)
    standins.record.flush()
    mail = SandboxMessage.objects.get(kind="email")
    assert mail.to == "oscar@example.test" and "test page" in mail.subject.lower() and "paging reaches you" in mail.body
    assert TestPage.objects.get(method=method).result == "sent"


def test_sandbox_messages_page_shows_a_sent_sms(twilio_standin, client, viewer):
    sid = notify.sms(to="+15550100042", body="[CRITICAL] HighErrorRate")
    standins.record.flush()
    assert SandboxMessage.objects.get(kind="sms").provider_id == sid and sid.startswith("SM")
    assert client.get("/sandbox/messages/").status_code in (302, 403)  # sign in first
    client.force_login(viewer)
    page = client.get("/sandbox/messages/?kind=sms").content.decode()
    assert "+15550100042" in page and "[CRITICAL] HighErrorRate" in page
