"""Twilio's webhooks: SMS replies and voice-call keys. Mounted at /api/v1/inbound by portal/api.py.

No bearer token: Twilio's request signature is the credential (auth=None, checked first; a bad one
is a 403 and changes nothing). Both answer TwiML.
"""

from __future__ import annotations

from django.core.exceptions import SuspiciousOperation
from django.http import HttpResponse
from django.http.request import RawPostDataException
from ninja import Router, Schema

from portal.errors import BadRequest
from portal.inbound import twilio

router = Router()


class ErrorOut(Schema):
    error: str
    detail: str


def _form(name: str, fields: dict) -> dict:
    return {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object", "properties": {k: {"type": "string"} for k in fields}, "required": ["From"]}}}},
            "responses": {"200": {"description": f"TwiML ({name})", "content": {"text/xml": {"schema": {"type": "string"}}}}}}


def _twiml(xml: str) -> HttpResponse:
    return HttpResponse(xml, content_type="text/xml; charset=utf-8")


FORM = "application/x-www-form-urlencoded"
RESPONSES = {400: ErrorOut, 403: ErrorOut}


class NotAForm(BadRequest):
    code = "not_a_form"


def _checked(request):
    """The posted fields, once the signature over them is Twilio's. Twilio posts form-encoded only."""
    if request.content_type != FORM:
        raise NotAForm(f"Twilio posts {FORM}")
    try:
        form = request.POST
    except (SuspiciousOperation, RawPostDataException) as exc:  # too big, too many fields
        raise BadRequest("the form could not be read") from exc
    twilio.verify(path_and_query=request.get_full_path(), params=form,
                  signature=request.headers.get(twilio.SIGNATURE_HEADER, ""))
    return form


@router.post(
    "/twilio/sms", auth=None, url_name="inbound_twilio_sms", response=RESPONSES, tags=["inbound"],
    summary="Twilio messaging webhook: an SMS reply to a page (4 ack, 6 resolve, 8 escalate; 'ack K7' picks a page)",
    openapi_extra=_form("MessagingResponse", ("From", "To", "Body", "MessageSid", "AccountSid")),
)
def twilio_sms(request):
    form = _checked(request)
    return _twiml(twilio.sms_twiml(twilio.sms_reply_text(sender=form.get("From", ""), body=form.get("Body", ""))))


@router.post(
    "/twilio/voice", auth=None, url_name="inbound_twilio_voice", response=RESPONSES, tags=["inbound"],
    summary="Twilio voice webhook: a voice page's TwiML (?page=<id>), and the key pressed (Digits: 4 ack, 6 resolve, 8 escalate)",
    openapi_extra=_form("VoiceResponse", ("From", "To", "Called", "Digits", "CallSid", "AccountSid")),
)
def twilio_voice(request):
    form = _checked(request)
    page_id = request.GET.get("page", "")
    xml = twilio.voice_twiml(page_id=page_id, called=form.get("Called") or form.get("To", ""), digits=form.get("Digits", ""),
                             action_url=twilio.public_url_of(request.get_full_path()))
    return _twiml(xml)
