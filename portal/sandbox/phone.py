"""Answer a page on /sandbox/messages/ as if from the phone: reply to an SMS, or press a key on a call.

The sandbox plays Twilio: it posts to the portal's inbound routes exactly what Twilio would (form-encoded,
X-Twilio-Signature over PORTAL_PUBLIC_URL + path, computed with Twilio's library and the dummy
TWILIO_AUTH_TOKEN the sandbox configured), over HTTP to PORTAL_PUBLIC_URL. The product takes it like
any other request; it never knows the sandbox sent it.
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urlsplit

import requests
from django.conf import settings
from twilio.request_validator import RequestValidator

from portal.sandbox.models import SandboxMessage

TIMEOUT = 10
SMS_PATH = "/api/v1/inbound/twilio/sms"
KEYS = ("4", "6", "8")
GATHER = re.compile(r'<Gather action="([^"]+)"')


class PhoneError(Exception):
    pass


def gather_url(message: SandboxMessage) -> str:
    """Where the call's Gather posts the key pressed ("" when the call offers no keys)."""
    match = GATHER.search(str((message.raw or {}).get("Twiml", "")))
    return unescape(match.group(1)) if match else ""


def _post(url: str, form: dict) -> str:
    """POST `form` to `url` signed as Twilio signs; returns what the TwiML answer says."""
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, form)
    try:
        r = requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise PhoneError(f"could not reach {urlsplit(url).netloc} ({type(exc).__name__}); is PORTAL_PUBLIC_URL this portal?") from None
    if r.status_code != 200:
        raise PhoneError(f"the portal answered HTTP {r.status_code}")
    said = re.findall(r"<(?:Message|Say)>(.*?)</(?:Message|Say)>", r.text, flags=re.S)
    return unescape(" ".join(said)) or "(no answer)"


def sms_reply(message: SandboxMessage, body: str) -> str:
    """Reply to an SMS the portal sent, from the number it went to."""
    if message.kind != SandboxMessage.Kind.SMS:
        raise PhoneError("only an SMS can be replied to")
    form = {"From": message.to, "To": message.sender, "Body": body[:160], "MessageSid": "SM" + "5a" * 16,
            "AccountSid": settings.TWILIO_ACCOUNT_SID, "NumMedia": "0"}
    return _post(settings.PORTAL_PUBLIC_URL.rstrip("/") + SMS_PATH, form)


def key_press(message: SandboxMessage, digit: str) -> str:
    """Press a key on a call the portal placed (its Gather posts the digit back)."""
    url = gather_url(message)
    if message.kind != SandboxMessage.Kind.CALL or not url:
        raise PhoneError("this call offers no keys")
    if digit not in KEYS:
        raise PhoneError("press 4, 6 or 8")
    form = {"CallSid": message.provider_id, "From": message.sender, "To": message.to, "Called": message.to,
            "Digits": digit, "Direction": "outbound-api", "AccountSid": settings.TWILIO_ACCOUNT_SID}
    return _post(url, form)
