"""Slack's interactivity webhook: the buttons of a page's message. Mounted at /api/v1/inbound by portal/api.py.

No bearer token: Slack's request signature is the credential (auth=None, checked first, over the raw
body; a bad or replayed one is a 401 and changes nothing). Slack wants a 200 within three seconds; the
person pressing is answered ephemerally through chat.postEphemeral (the body here is for logs and tests).
"""

from __future__ import annotations

from urllib.parse import parse_qs

from ninja import Router, Schema

from portal.inbound import slack

router = Router()


class ErrorOut(Schema):
    error: str
    detail: str


class AnswerOut(Schema):
    ok: bool
    changed: bool
    answer: str


FORM = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "properties": {"payload": {"type": "string", "description": "the interaction's JSON (block_actions)"}},
    "required": ["payload"]}}}}}


@router.post(
    "/slack/interactions", auth=None, url_name="inbound_slack_interactions",
    response={200: AnswerOut, 400: ErrorOut, 401: ErrorOut}, tags=["inbound"],
    summary="Slack interactivity webhook: a page's buttons (acknowledge, resolve, rollback, rollback_confirm, rollback_code)",
    openapi_extra=FORM,
)
def slack_interactions(request):
    body = request.body
    slack.verify(body=body, headers=request.headers)
    raw = (parse_qs(body.decode("utf-8", errors="replace")).get("payload") or [""])[0]
    answer = slack.interaction_handle(slack.payload_of(raw))
    return {"ok": True, "changed": answer.changed, "answer": answer.text}
