"""How the on-call app reaches a person: one transport entry point, `send`, for every kind.

Step one (this module today): email goes through Django's mail framework; SMS, voice and Slack have
no transport yet and answer "not connected", so a test page to them is recorded as failed with that
reason. Step two replaces the entries of `TRANSPORTS` with the Twilio and Slack SDK clients
(TWILIO_API_BASE, SLACK_API_BASE) without changing any caller: services call `send` and
`deliver_verification_code` only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import send_mail

from portal.oncall.models import ContactKind, ContactMethod

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    kind: str  # a ContactKind value
    to: str  # address, E.164 number or Slack user id
    subject: str
    body: str
    purpose: str  # "verification", "test" or "page"


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    detail: str
    provider_id: str = ""


def _email(message: Message) -> DeliveryResult:
    sent = send_mail(message.subject, message.body, settings.DEFAULT_FROM_EMAIL, [message.to], fail_silently=False)
    return DeliveryResult(ok=bool(sent), detail="handed to the mail server" if sent else "the mail backend sent nothing")


def _not_connected(message: Message) -> DeliveryResult:
    return DeliveryResult(ok=False, detail=f"no {message.kind} transport is connected yet")


TRANSPORTS: dict[str, Callable[[Message], DeliveryResult]] = {
    ContactKind.EMAIL: _email,
    ContactKind.SMS: _not_connected,
    ContactKind.VOICE: _not_connected,
    ContactKind.SLACK: _not_connected,
}


def send(message: Message) -> DeliveryResult:
    """Send one message; a transport failure is an answer (ok=False), never an exception."""
    transport = TRANSPORTS.get(message.kind, _not_connected)
    try:
        return transport(message)
    except Exception as exc:  # noqa: BLE001 - SMTP, HTTP or SDK errors all become a recorded failure
        log.warning("delivery of a %s %s message failed", message.kind, message.purpose, exc_info=True)
        return DeliveryResult(ok=False, detail=f"{type(exc).__name__}: {exc}"[:500])


def deliver_verification_code(contact_method: ContactMethod, code: str) -> DeliveryResult:
    """Send a verification code to the method it verifies (the code itself is never stored)."""
    return send(Message(
        kind=contact_method.kind, to=contact_method.value, purpose="verification",
        subject="FTW Ops: your verification code",
        body=f"Your FTW Ops verification code is {code}. It expires in 15 minutes.",
    ))


def deliver_test_page(contact_method: ContactMethod) -> DeliveryResult:
    return send(Message(
        kind=contact_method.kind, to=contact_method.value, purpose="test",
        subject="FTW Ops: test page",
        body="This is a test page from the FTW Ops portal. If you read this, paging reaches you here.",
    ))
