"""The portal's notification transports: email, Slack-compatible webhooks and Twilio SMS.

Every page and every mail the portal sends goes through here (incident pages, the checklist's
mail to the leads).

Webhook and Twilio requests go through portal.outbound, with the outbound policy of the incident's
environment (the default environment when the incident has none): a webhook URL pointing at
loopback, private or metadata addresses is refused unless that environment's policy allows them.
Errors name the exception class and the host, never the URL (a Slack hook's path is its token).
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mail

from portal import outbound
from portal.cloud.models import Environment

TIMEOUT = 5


class NotificationError(Exception):
    """A channel refused or could not take the page; the text is safe to store and show."""


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
        sid, token = settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN
        if not sid or not token:
            raise NotificationError("Twilio is not configured (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)")
        url = f"{settings.TWILIO_BASE_URL.rstrip('/')}/2010-04-01/Accounts/{sid}/Messages.json"
        _post(url, allow_private=_allow_private(incident), what="Twilio",
              data={"To": channel.target, "From": settings.TWILIO_FROM, "Body": body[:1500]}, auth=(sid, token))
    else:
        raise NotificationError(f"unknown channel kind {channel.kind}")


def error_text(exc: BaseException) -> str:
    """What a failed notification stores: our own words, or the class of an unexpected error only."""
    if isinstance(exc, NotificationError):
        return str(exc)[:1000]
    return f"{type(exc).__name__} (details in the worker log)"
