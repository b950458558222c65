"""Answers to SMS and voice pages, as Twilio delivers them (form-encoded, signed with X-Twilio-Signature).

The signature is Twilio's HMAC over the public URL Twilio called (PORTAL_PUBLIC_URL + path and query)
and the posted fields, keyed with TWILIO_AUTH_TOKEN, checked with Twilio's own RequestValidator. A
request that fails it changes nothing. The sender is a person only through a VERIFIED contact method
of the page's kind with that number; anyone else is answered politely and nothing changes.

SMS: "4"/"ack", "6"/"resolve", "8"/"escalate", optionally followed by the page's short code ("ack K7"),
which picks one incident when several pages to that number are open. Voice: the call's Gather posts
the key pressed (Digits: 4, 6, 8) back with the page's id in the query string.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import Gather, VoiceResponse

from portal.errors import Forbidden
from portal.inbound.actions import ACKNOWLEDGE, ESCALATE, RESOLVE, NotAllowed, page_answer
from portal.incidents.models import Incident, PersonalPage
from portal.incidents.paging import incident_ref, reply_code, voice_words
from portal.oncall.models import ContactKind, ContactMethod

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Twilio-Signature"
WORDS = {"4": ACKNOWLEDGE, "ack": ACKNOWLEDGE, "acknowledge": ACKNOWLEDGE,
         "6": RESOLVE, "resolve": RESOLVE,
         "8": ESCALATE, "escalate": ESCALATE}
KEYS = {"4": ACKNOWLEDGE, "6": RESOLVE, "8": ESCALATE}
HELP = "Reply 4 to acknowledge, 6 to resolve, 8 to escalate; with several pages open add the page's code (ack K7)."


class BadSignature(Forbidden):
    """The request is not signed by Twilio with TWILIO_AUTH_TOKEN over the portal's public URL."""

    code = "bad_signature"


def public_url_of(path_and_query: str) -> str:
    """The URL Twilio signs: the one configured in Twilio's console, PORTAL_PUBLIC_URL + path (and query)."""
    return settings.PORTAL_PUBLIC_URL.rstrip("/") + path_and_query


def signature_for(url: str, params: dict) -> str:
    """What Twilio would send in X-Twilio-Signature for `params` posted to `url` (the sandbox signs with it)."""
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)


def verify(*, path_and_query: str, params, signature: str) -> None:
    if not settings.TWILIO_AUTH_TOKEN or not signature:
        raise BadSignature("missing X-Twilio-Signature (or TWILIO_AUTH_TOKEN is not set)")
    if not RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(public_url_of(path_and_query), params, signature):
        log.warning("refused a Twilio request with a bad signature for %s", path_and_query.split("?")[0])
        raise BadSignature("the X-Twilio-Signature does not match this request")


def _verified_users(number: str, kind: str) -> set[int]:
    return set(ContactMethod.objects.filter(kind=kind, value=number, verified_at__isnull=False).values_list("user_id", flat=True))


# ----------------------------------------------------------------------------------------------
# SMS


@dataclass(frozen=True)
class Parsed:
    action: str | None
    code: str


def parse_sms(body: str) -> Parsed:
    words = body.strip().lower().replace(",", " ").split()
    if not words:
        return Parsed(None, "")
    action = WORDS.get(words[0])
    code = words[1].upper() if len(words) > 1 else ""
    if action is None and len(words) > 1 and words[1] in WORDS:  # "K7 ack"
        action, code = WORDS[words[1]], words[0].upper()
    return Parsed(action, code)


def open_sms_pages(number: str) -> list[PersonalPage]:
    """The open pages to this number, one per incident (newest first): SMS pages sent to it, of an
    incident not resolved, to a person whose verified SMS method it is."""
    users = _verified_users(number, ContactKind.SMS)
    pages = (PersonalPage.objects.filter(kind=ContactKind.SMS, status=PersonalPage.Status.SENT, to=number, user_id__in=users)
             .filter(~Q(incident__status=Incident.Status.RESOLVED))
             .select_related("incident", "user").order_by("-sent_at", "-pk"))
    seen, out = set(), []
    for page in pages:
        if page.incident_id not in seen:
            seen.add(page.incident_id)
            out.append(page)
    return out


def sms_reply_text(*, sender: str, body: str) -> str:
    """Act on one SMS reply and say what happened (the words of the TwiML answer)."""
    if not _verified_users(sender, ContactKind.SMS):
        return "FTW Ops: this number is not a verified contact method of anyone in the portal; nothing changed."
    parsed = parse_sms(body)
    if parsed.action is None:
        return f"FTW Ops: not understood; nothing changed. {HELP}"
    pages = open_sms_pages(sender)
    if not pages:
        return "FTW Ops: no open page to this number; nothing changed."
    if parsed.code:
        chosen = [p for p in pages if reply_code(p.incident) == parsed.code]
        if not chosen:
            codes = ", ".join(f"{reply_code(p.incident)} ({incident_ref(p.incident)})" for p in pages)
            return f"FTW Ops: no open page with code {parsed.code}; nothing changed. Open: {codes}"
        page = chosen[0]
    elif len(pages) > 1:
        codes = ", ".join(f"{reply_code(p.incident)} ({incident_ref(p.incident)})" for p in pages)
        return f"FTW Ops: {len(pages)} pages are open to this number; add the code, e.g. \"{body.strip().split()[0]} {reply_code(pages[0].incident)}\". Open: {codes}. Nothing changed."
    else:
        page = pages[0]
    try:
        return page_answer(incident=page.incident, user=page.user, action=parsed.action, via="SMS").text
    except NotAllowed as exc:
        return f"FTW Ops: {exc.detail}; nothing changed."


def sms_twiml(text: str) -> str:
    response = MessagingResponse()
    response.message(text)
    return str(response)


# ----------------------------------------------------------------------------------------------
# Voice


def _voice_page(page_id: str, called: str) -> PersonalPage | None:
    """The voice page this call is about: the one in the Gather's URL, placed to the number being called,
    whose person holds that number as a verified voice method."""
    page = (PersonalPage.objects.select_related("incident", "user", "incident__environment")
            .filter(public_id=page_id, kind=ContactKind.VOICE).first() if _is_uuid(page_id) else None)
    if page is None or not called or page.to != called or page.user_id not in _verified_users(called, ContactKind.VOICE):
        return None
    return page


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except (ValueError, TypeError):
        return False
    return True


def voice_twiml(*, page_id: str, called: str, digits: str, action_url: str) -> str:
    """The TwiML for one step of a voice page: read the incident and offer the keys, or act on the key pressed."""
    response = VoiceResponse()
    page = _voice_page(page_id, called)
    if page is None:
        response.say("This call is not about a page of yours in F T W Ops. Nothing changed. Goodbye.")
        response.hangup()
        return str(response)
    if digits:
        action = KEYS.get(digits[:1])
        if action is not None:
            try:
                text = page_answer(incident=page.incident, user=page.user, action=action, via="voice call").text
            except NotAllowed as exc:
                text = f"{exc.detail}. Nothing changed."
            response.say(text.replace("INC-", "incident "))
            response.hangup()
            return str(response)
        response.say("That key does nothing.")
    gather = Gather(action=action_url, method="POST", num_digits=1, timeout=10)
    gather.say(voice_words(page.incident))
    response.append(gather)
    response.say("No key pressed. Goodbye.")
    return str(response)
