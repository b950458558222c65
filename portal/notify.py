"""The portal's notification transports: email, SMS and voice (Twilio), Slack, and Slack-compatible webhooks.

Every page and every mail the portal sends goes through here (incident pages, personal pages, test
pages and verification codes, handoff messages, the checklist's mail to the leads).

- Email: Django's mail framework (EMAIL_HOST / EMAIL_PORT: SendGrid's SMTP relay, or any other).
- SMS and voice: Twilio's Python library, its API domain pointed at TWILIO_API_BASE.
- Slack: Slack's SDK (WebClient: chat.postMessage, chat.update, chat.postEphemeral) at SLACK_API_BASE with
  SLACK_BOT_TOKEN; a page is a message with blocks and buttons (`slack_page_blocks`).
- Webhooks (a channel's URL, which a person types in): through portal.outbound, with the outbound policy
  of the incident's environment (the default environment when the incident has none): a webhook URL
  pointing at loopback, private or metadata addresses is refused unless that policy allows them.

Why the Twilio and Slack bases do not go through portal.outbound's policy: they are operator settings
read once at start-up (strictly: an http(s) URL, https in production), never a value a user can
type, so there is no request forgery to guard against; and in the embedded default they point at the
sandbox's stand-ins on 127.0.0.1, which the policy would refuse. The SDKs bring their own HTTP stacks
(requests for Twilio, urllib for Slack); each call has a timeout.

Errors name the exception class and the host, never the URL (a Slack hook's path is its token).
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from django.conf import settings
from django.core.mail import send_mail
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client as TwilioClient
from twilio.twiml.voice_response import Gather, VoiceResponse

from portal import outbound
from portal.cloud.models import Environment
from portal.errors import Unavailable

TIMEOUT = 5
SMS_LIMIT = 1500  # Twilio takes 1600 characters; leave room for the sender's prefix


class NotificationError(Unavailable):
    """A channel refused or could not take the page; the text is safe to store and show."""

    code = "notification_failed"


def twilio_client() -> TwilioClient:
    """Twilio's client with its API domain at TWILIO_API_BASE (the library's documented `base_url` of a
    Domain; region and edge stay unset, so the host is used as given)."""
    sid, token = settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN
    if not sid or not token:
        raise NotificationError("Twilio is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)")
    client = TwilioClient(sid, token, http_client=TwilioHttpClient(timeout=TIMEOUT))
    client.api.base_url = settings.TWILIO_API_BASE.rstrip("/")
    return client


def _twilio_error(exc: Exception) -> NotificationError:
    if isinstance(exc, TwilioRestException):
        return NotificationError(f"Twilio answered HTTP {exc.status} (code {exc.code}): {exc.msg}"[:500])
    return NotificationError(outbound.error_words(exc, settings.TWILIO_API_BASE))


def _twilio_from() -> str:
    if not settings.TWILIO_FROM:
        raise NotificationError("Twilio is not configured (TWILIO_FROM)")
    return settings.TWILIO_FROM


def sms(*, to: str, body: str) -> str:
    """Send one SMS through Twilio; returns the message SID."""
    client, sender = twilio_client(), _twilio_from()
    try:
        return client.messages.create(to=to, from_=sender, body=body[:SMS_LIMIT]).sid
    except (TwilioException, OSError, ValueError) as exc:  # requests' errors are OSErrors
        raise _twilio_error(exc) from None


def voice_call(*, to: str, say: str, gather_url: str = "") -> str:
    """Place one call through Twilio that reads `say` out (inline TwiML); returns the call SID. With
    `gather_url`, the call also waits for one key and Twilio posts it there (signed, as `Digits`)."""
    client, sender = twilio_client(), _twilio_from()
    if gather_url:
        response = VoiceResponse()
        gather = Gather(action=gather_url, method="POST", num_digits=1, timeout=10)
        gather.say(say)
        response.append(gather)
        response.say("No key pressed. Goodbye.")
        twiml = str(response)
    else:
        twiml = f"<Response><Say>{escape(say)}</Say><Pause length=\"1\"/><Say>{escape(say)}</Say></Response>"
    try:
        return client.calls.create(to=to, from_=sender, twiml=twiml).sid
    except (TwilioException, OSError, ValueError) as exc:
        raise _twilio_error(exc) from None


def _slack_call(method: str, **kwargs) -> dict:
    """One Slack Web API call (chat_postMessage, chat_update, chat_postEphemeral) as the bot."""
    if not settings.SLACK_BOT_TOKEN:
        raise NotificationError("Slack is not configured (SLACK_BOT_TOKEN)")
    client = WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_BASE.rstrip("/") + "/api/",
                       timeout=TIMEOUT)
    try:
        return dict(getattr(client, method)(**kwargs).data)
    except SlackApiError as exc:
        raise NotificationError(f"Slack refused the message: {exc.response.get('error', 'error')}") from None
    except (OSError, ValueError) as exc:  # urllib's errors are OSErrors
        raise NotificationError(outbound.error_words(exc, settings.SLACK_API_BASE)) from None


def slack_post(*, channel: str, text: str) -> str:
    """Post to a Slack user id (a direct message from the bot) or channel through the Web API; returns the ts."""
    return str(_slack_call("chat_postMessage", channel=channel, text=text).get("ts") or "")


@dataclass(frozen=True)
class SlackPosted:
    channel: str  # the conversation id Slack answers with (a DM's D... id when posted to a user id)
    ts: str


def slack_message(*, channel: str, text: str, blocks: list[dict]) -> SlackPosted:
    """Post a message with blocks; returns where it is, which chat.update needs later."""
    answer = _slack_call("chat_postMessage", channel=channel, text=text, blocks=blocks)
    return SlackPosted(channel=str(answer.get("channel") or channel), ts=str(answer.get("ts") or ""))


def slack_update(*, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
    _slack_call("chat_update", channel=channel, ts=ts, text=text, blocks=blocks)


def slack_ephemeral(*, channel: str, user: str, text: str, blocks: list[dict] | None = None) -> None:
    """A message only `user` sees in `channel` (an answer to a button press)."""
    _slack_call("chat_postEphemeral", channel=channel, user=user, text=text, **({"blocks": blocks} if blocks else {}))


def slack_page_blocks(*, text: str, status: str, value: str, incident_url: str, runbook_url: str = "",
                      rollback: str = "", lines: tuple[str, ...] = ()) -> list[dict]:
    """A page as Slack blocks: what happened, its state, and the buttons (action_id acknowledge, resolve,
    rollback, with `value` the incident's public id; Open runbook and Open incident are URL buttons).
    `rollback` is the environment's name when a Roll back button is offered; `lines` say its state (who acknowledged, the weights during a rollback)."""
    buttons: list[dict] = []
    if status == "triggered":
        buttons.append({"type": "button", "action_id": "acknowledge", "value": value, "style": "primary",
                        "text": {"type": "plain_text", "text": "Acknowledge"}})
    if status != "resolved":
        buttons.append({"type": "button", "action_id": "resolve", "value": value, "text": {"type": "plain_text", "text": "Resolve"}})
    if runbook_url:
        buttons.append({"type": "button", "action_id": "open_runbook", "url": runbook_url,
                        "text": {"type": "plain_text", "text": "Open runbook"}})
    if rollback and status != "resolved":
        buttons.append({"type": "button", "action_id": "rollback", "value": value, "style": "danger",
                        "text": {"type": "plain_text", "text": f"Roll back {rollback}"[:75]}})
    buttons.append({"type": "button", "action_id": "open_incident", "url": incident_url,
                    "text": {"type": "plain_text", "text": "Open incident"}})
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
                          {"type": "context", "elements": [{"type": "mrkdwn", "text": line[:2900]} for line in (lines or (status.capitalize(),))]}]
    blocks.append({"type": "actions", "block_id": "page_actions", "elements": buttons})
    return blocks


def _allow_private(incident) -> bool:
    env = incident.environment
    if env is None:
        env = Environment.objects.filter(name=settings.DEFAULT_ENVIRONMENT).select_related("outbound_policy").first()
    return outbound.allows_private_targets(env)


def _post(url: str, *, allow_private: bool, what: str, **kwargs) -> None:
    try:
        r = outbound.request("POST", url, allow_private=allow_private, max_redirects=0, timeout=TIMEOUT, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every transport failure becomes words without the URL
        raise NotificationError(outbound.error_words(exc, url)) from None
    r.close()
    if r.status_code >= 300:
        raise NotificationError(f"{what} answered HTTP {r.status_code}")


def mail(*, subject: str, body: str, recipients: list[str]) -> None:
    """Send one mail from the portal's address; SMTP errors propagate (the caller's task may retry)."""
    send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)


def deliver(*, channel, incident, subject: str, body: str) -> None:
    if channel.kind == "email":
        recipients = [r.strip() for r in channel.target.split(",") if r.strip()]
        if not recipients:
            raise NotificationError("no email recipients")
        mail(subject=subject, body=body, recipients=recipients)
    elif channel.kind == "slack":
        if not channel.webhook_url:
            raise NotificationError("no webhook URL")
        _post(channel.webhook_url, allow_private=_allow_private(incident), what="webhook", json={"text": body})
    elif channel.kind == "sms":
        if not channel.target:
            raise NotificationError("no phone number")
        sms(to=channel.target, body=body)
    else:
        raise NotificationError(f"unknown channel kind {channel.kind}")


def error_text(exc: BaseException) -> str:
    """What a failed notification stores: our own words, or the class of an unexpected error only."""
    if isinstance(exc, NotificationError):
        return str(exc)[:1000]
    return f"{type(exc).__name__} (details in the worker log)"
