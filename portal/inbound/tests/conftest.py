"""Fixtures for the inbound tests: a person paged by SMS at once and by a voice call after 3 minutes,
through the real Twilio library to the sandbox's Twilio stand-in; replies signed as Twilio signs them."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from portal.inbound import twilio
from portal.incidents import ingest
from portal.incidents.models import EscalationLevel, EscalationPolicy
from portal.oncall import services as oncall
from portal.sandbox import standins
from portal.sandbox.models import SandboxMessage
from tests.plugins.standins import smtp_standin, twilio_standin  # noqa: F401 - the stand-ins' fixtures

NUMBER = "+15550100001"
FORM = "application/x-www-form-urlencoded"  # as Twilio posts


def fire(name="HighErrorRate", fp="e1", severity="critical"):
    return ingest.alert_ingest_internal(source="health", fingerprint=fp, name=name, severity=severity, firing=True,
                                        summary="5xx above 5%", labels={"service": "api"}).incident


def person(user, number=NUMBER, *, rules=(("sms", 0), ("voice", 3)), kinds=("sms", "voice"), value=None):
    for kind in kinds:
        oncall.contact_method_add(user=user, kind=kind, value=value if kind == "email" and value else number,
                                  actor="system:test", verified=True)
    for kind, delay in rules:
        oncall.notification_rule_add(user=user, severity="critical", kind=kind, delay_minutes=delay, actor="system:test")


def sent(kind):
    standins.record.flush()
    return list(SandboxMessage.objects.filter(kind=kind).order_by("received_at", "id"))


@pytest.fixture
def primary(lead, responder):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    schedule = oncall.schedule_create(slug="primary", name="Primary", actor=lead, layers=[
        {"members": [responder.username], "shift_hours": 24, "starts_at": start}])
    policy = EscalationPolicy.objects.create(severity="critical", name="Critical", repeat=False)
    EscalationLevel.objects.create(policy=policy, number=1, delay_minutes=0, target_schedule=schedule)
    EscalationLevel.objects.create(policy=policy, number=2, delay_minutes=30, target_user=lead)
    return schedule


class Phone:
    """Posts to the inbound routes as Twilio does: form-encoded, X-Twilio-Signature over PORTAL_PUBLIC_URL + path."""

    def __init__(self, client, settings):
        self.client, self.settings = client, settings

    def post(self, path: str, data: dict, *, signature: str | None = None):
        if signature is None:
            signature = twilio.signature_for(self.settings.PORTAL_PUBLIC_URL.rstrip("/") + path, data)
        return self.client.post(path, urlencode(data), content_type=FORM, headers={"X-Twilio-Signature": signature})

    def sms(self, body: str, *, sender: str = NUMBER, signature: str | None = None):
        return self.post("/api/v1/inbound/twilio/sms", {"From": sender, "To": "+15005550006", "Body": body,
                                                        "MessageSid": "SM" + "0" * 32, "AccountSid": "AC0123456789test"},
                         signature=signature)


@pytest.fixture
def phone(client, settings):
    settings.PORTAL_PUBLIC_URL = "https://ops.example.test"
    return Phone(client, settings)
