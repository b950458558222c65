"""How the on-call app reaches a person: one entry point, `send`, for every kind of contact method.

The transports are portal.notify's (Django mail; Twilio's library for SMS and voice; Slack's SDK);
`TRANSPORTS` maps a contact kind to one, so callers (verification codes, test pages, personal pages,
handoff messages) never name a provider.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from portal import notify
from portal.oncall.models import ContactKind, ContactMethod

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    kind: str  # a ContactKind value
    to: str  # address, E.164 number or Slack user id
    subject: str
    body: str
    purpose: str  # "verification", "test", "page" or "handoff"
    spoken: str = ""  # what a voice call reads out (default: the body)
    gather_url: str = ""  # a voice call waits for a key and Twilio posts it here (a page's answer)


@dataclass(frozen=True)
class DeliveryResult:
    ok: bool
    detail: str
    provider_id: str = ""


def _email(message: Message) -> DeliveryResult:
    notify.mail(subject=message.subject, body=message.body, recipients=[message.to])
    return DeliveryResult(ok=True, detail="handed to the mail server")


def _sms(message: Message) -> DeliveryResult:
    sid = notify.sms(to=message.to, body=message.body)
    return DeliveryResult(ok=True, detail="accepted by Twilio", provider_id=sid)


def _voice(message: Message) -> DeliveryResult:
    sid = notify.voice_call(to=message.to, say=message.spoken or message.body, gather_url=message.gather_url)
    return DeliveryResult(ok=True, detail="call placed through Twilio", provider_id=sid)


def _slack(message: Message) -> DeliveryResult:
    ts = notify.slack_post(channel=message.to, text=message.body)
    return DeliveryResult(ok=True, detail="posted to Slack", provider_id=ts)


TRANSPORTS: dict[str, Callable[[Message], DeliveryResult]] = {
    ContactKind.EMAIL: _email,
    ContactKind.SMS: _sms,
    ContactKind.VOICE: _voice,
    ContactKind.SLACK: _slack,
}


def send(message: Message) -> DeliveryResult:
    """Send one message; a transport failure is an answer (ok=False), never an exception."""
    transport = TRANSPORTS.get(message.kind)
    if transport is None:
        return DeliveryResult(ok=False, detail=f"no transport for {message.kind!r}")
    try:
        return transport(message)
    except notify.NotificationError as exc:
        return DeliveryResult(ok=False, detail=str(exc)[:500])
    except Exception as exc:  # noqa: BLE001 - SMTP or SDK errors all become a recorded failure
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
