"""An email page's acknowledge and resolve links: sent through Django's mail to the SMTP stand-in,
answered without a login session, single-use, only by POST, dead once the incident is resolved."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.inbound import email_links
from portal.inbound.models import EmailActionToken
from portal.inbound.tests.conftest import fire, person, sent
from portal.incidents import services
from portal.incidents.models import Incident, TimelineEntry

pytestmark = pytest.mark.django_db(transaction=True)


def links(message) -> dict[str, str]:
    found = dict(re.findall(r"^(Acknowledge|Resolve): (\S+)", message.body, flags=re.M))
    return {action.lower(): urlsplit(url).path for action, url in found.items()}


@pytest.fixture
def paged_by_email(smtp_standin, primary, responder, phone):
    person(responder, rules=(("email", 0),), kinds=("email",), value="oscar@example.test")
    inc = fire()
    [mail] = sent("email")
    assert mail.to == "oscar@example.test" and f"INC-{inc.pk}" in mail.body
    return inc, links(mail)


def test_an_email_link_works_once_and_only_by_post(paged_by_email, client, responder):
    inc, urls = paged_by_email
    assert set(urls) == {"acknowledge", "resolve"}
    before = AuditEvent.objects.count()
    page = client.get(urls["acknowledge"])  # a mail scanner's GET, or the person's: it only shows the button
    assert page.status_code == 200 and b'data-testid="link-confirm"' in page.content and b'method="post"' in page.content
    inc.refresh_from_db()
    assert inc.status == "triggered" and AuditEvent.objects.count() == before and not EmailActionToken.objects.exists()

    done = client.post(urls["acknowledge"])  # no session: the link is the credential
    assert done.status_code == 200 and f"Acknowledged INC-{inc.pk} as {responder.username}".encode() in done.content
    inc.refresh_from_db()
    assert inc.status == "acknowledged" and inc.acknowledged_by == responder.username
    entry = TimelineEntry.objects.get(incident=inc, kind="acknowledged")
    assert (entry.actor_label, entry.text) == (responder.username, "Acknowledged via email link")
    token = EmailActionToken.objects.get()
    assert token.used_at is not None and token.user == responder and len(token.token_hash) == 64
    assert token.token_hash not in urls["acknowledge"]  # only the hash is stored

    again = client.post(urls["acknowledge"])
    assert again.status_code == 404 and b"used already" in again.content
    assert client.get(urls["acknowledge"]).status_code == 404


def test_the_links_die_when_the_incident_is_resolved_and_after_the_hours(paged_by_email, client, lead):
    inc, urls = paged_by_email
    with pytest.raises(email_links.LinkDead, match="expired"):
        email_links.link_check(urls["resolve"].split("/")[-2], now=timezone.now() + timedelta(hours=email_links.LINK_HOURS, minutes=1))
    services.incident_resolve(incident=inc, actor=lead, reason="fixed")
    for url in urls.values():
        answer = client.post(url)
        assert answer.status_code == 404 and b"resolved" in answer.content
    assert not EmailActionToken.objects.exists()
    assert client.post("/inbound/email/not-a-token/").status_code == 404


def test_the_resolve_link_resolves(paged_by_email, client, responder):
    inc, urls = paged_by_email
    assert client.post(urls["resolve"]).status_code == 200
    inc.refresh_from_db()
    assert inc.status == Incident.Status.RESOLVED and inc.resolved_by == responder.username
    row = AuditEvent.objects.get(verb="incident.resolve", target_id=str(inc.public_id))
    assert row.extra == {"via": "email link"} and row.actor_label == responder.username
