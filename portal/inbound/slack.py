"""Answers to Slack pages: the buttons of a page's message, as Slack posts them to the interactivity URL.

A request is Slack's only when its `X-Slack-Signature` (v0, HMAC-SHA256 keyed with SLACK_SIGNING_SECRET
over `v0:<X-Slack-Request-Timestamp>:<body>`) matches and the timestamp is within five minutes, checked
with Slack's SDK (SignatureVerifier); anything else is a 401 and changes nothing. The Slack user is a
portal user only through a VERIFIED Slack contact method with that id; anyone else is told so
(ephemerally) and nothing changes.

Buttons (action_id, value = the incident's public id): `acknowledge`, `resolve`, `rollback`. Roll back is
two steps: the press answers with a confirm button (`rollback_confirm`); for a production environment
the confirmation sends a one-time code to the person's verified Slack method and asks for it in an input
block whose button (`rollback_code`, value = the code's id) carries it back in the payload's state. The
rollback goes through deployments' own service, which allows one per environment: two confirmations,
or a confirmation racing a click on the web page, are one rollback.

The page's message updates itself (chat.update) whenever portal.events says the incident or its
environment's rollback changed (portal.inbound.slack_tasks.refresh).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from slack_sdk.signature import SignatureVerifier

from deployments import selectors as deployments_selectors
from deployments import services as deployments
from deployments.errors import AlreadyInProgress, DeploymentError
from portal import notify
from portal.accounts.roles import RESPOND
from portal.actors import Actor
from portal.cloud.errors import CloudError
from portal.errors import BadRequest, Unauthorized
from portal.inbound.actions import ACKNOWLEDGE, RESOLVE, NotAllowed, page_answer
from portal.inbound.models import RollbackCode, SlackMessage
from portal.incidents.models import Incident, TimelineEntry
from portal.incidents.paging import incident_ref, public_url, what_happened
from portal.incidents.services import incident_timeline_add
from portal.oncall import delivery
from portal.oncall.models import ContactKind, ContactMethod

log = logging.getLogger(__name__)
SIGNATURE_HEADER, TIMESTAMP_HEADER = "X-Slack-Signature", "X-Slack-Request-Timestamp"
VIA = "Slack"
ROLLBACK, ROLLBACK_CONFIRM, ROLLBACK_CODE = "rollback", "rollback_confirm", "rollback_code"
CODE_BLOCK, CODE_INPUT = "rollback_code", "code"
CODE_TTL = timedelta(minutes=5)
CODE_ATTEMPTS = 5
RECENT_DEPLOYMENT_MINUTES = 60  # Roll back is offered while a deployment runs or for an hour after it finished


class BadSignature(Unauthorized):
    """Not signed by Slack with SLACK_SIGNING_SECRET, or signed more than five minutes ago (a replay)."""

    code = "bad_signature"


def signature_for(body: bytes, timestamp: str) -> str:
    """What Slack sends in X-Slack-Signature for `body` at `timestamp` (tests and the sandbox sign with it)."""
    return SignatureVerifier(settings.SLACK_SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body) or ""


def verify(*, body: bytes, headers) -> None:
    if not settings.SLACK_SIGNING_SECRET:
        raise BadSignature("SLACK_SIGNING_SECRET is not set")
    try:
        ok = SignatureVerifier(settings.SLACK_SIGNING_SECRET).is_valid(
            body=body, timestamp=headers.get(TIMESTAMP_HEADER), signature=headers.get(SIGNATURE_HEADER))
    except ValueError:  # a timestamp that is not a number
        ok = False
    if not ok:
        log.warning("refused a Slack request with a bad or old signature")
        raise BadSignature("the X-Slack-Signature does not match this request, or it is older than five minutes")


def payload_of(raw: str) -> dict:
    try:
        payload = json.loads(raw or "")
    except json.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        raise BadRequest("the form field `payload` is not a JSON object")
    return payload


# ----------------------------------------------------------------------------------------------
# The message


def rollback_environment(inc: Incident):
    """The environment a page offers to roll back: the incident's, while a deployment runs there or
    for an hour after one finished (or while a rollback runs, to show its weights)."""
    env = inc.environment
    if env is None:
        return None
    if deployments_selectors.recent_deployments(env, within_minutes=RECENT_DEPLOYMENT_MINUTES):
        return env
    return env if deployments_selectors.active_rollback(env) is not None else None


def _weights(weights: dict | None) -> str:
    return " / ".join(f"{colour} {pct} %" for colour, pct in sorted((weights or {}).items())) or "unknown"


def state_lines(inc: Incident) -> tuple[str, ...]:
    if inc.status == Incident.Status.RESOLVED:
        lines = [f"Resolved by {inc.resolved_by or 'the portal'}"]
    elif inc.status == Incident.Status.ACKNOWLEDGED:
        lines = [f"Acknowledged by {inc.acknowledged_by}"]
    else:
        lines = ["Triggered"]  # as paging posts it
    rb = deployments_selectors.latest_rollback(inc.environment) if inc.environment_id else None
    if rb is not None and rb.requested_at >= inc.opened_at:
        if rb.is_active:
            lines.append(f"Rolling back {rb.environment.name} to {rb.to_colour} ({rb.get_state_display().lower()}, "
                         f"requested by {rb.requested_by_label}): weights {_weights(rb.weights_after or rb.weights_before)}")
        else:
            lines.append(f"Rollback of {rb.environment.name} to {rb.to_colour} {rb.get_state_display().lower()}: "
                         f"weights {_weights(rb.weights_after or rb.weights_before)}")
    return tuple(lines)


def render(inc: Incident) -> tuple[str, list[dict]]:
    """The page's text (the notification's words) and blocks for the incident as it is now."""
    lines = state_lines(inc)
    text = f"{what_happened(inc)}\n{lines[0]}"
    env = rollback_environment(inc)
    blocks = notify.slack_page_blocks(
        text=what_happened(inc), status=inc.status, value=str(inc.public_id),
        incident_url=public_url(inc.get_absolute_url()),
        runbook_url=public_url(reverse("runbooks:detail", args=[inc.runbook_slug])) if inc.runbook_slug else "",
        rollback=env.name if env is not None else "", lines=lines)
    return text, blocks


def message_refresh(message: SlackMessage) -> bool:
    inc = Incident.objects.select_related("environment").get(pk=message.incident_id)
    text, blocks = render(inc)
    try:
        notify.slack_update(channel=message.channel, ts=message.ts, text=text, blocks=blocks)
    except notify.NotificationError as exc:
        log.warning("could not update Slack message %s/%s: %s", message.channel, message.ts, exc)
        return False
    SlackMessage.objects.filter(pk=message.pk).update(updated_at=timezone.now())
    return True


def messages_refresh(*, incident_ids) -> int:
    """Update every Slack page of these incidents to what they are now; returns how many were updated."""
    return sum(message_refresh(m) for m in SlackMessage.objects.filter(incident_id__in=list(incident_ids)).order_by("pk"))


def event_refresh(event: dict) -> int:
    """An event from portal.events: an incident's change updates its messages; a rollback's updates the
    messages of the open incidents of its environment (their weights line)."""
    data = event.get("data") or {}
    if str(event.get("kind", "")).startswith("incident."):
        ids = Incident.objects.filter(public_id=data.get("incident")).values_list("pk", flat=True)
    elif str(event.get("kind", "")).startswith("rollback."):
        ids = (Incident.objects.filter(environment__name=data.get("environment"))
               .exclude(status=Incident.Status.RESOLVED).values_list("pk", flat=True))
    else:
        return 0
    return messages_refresh(incident_ids=ids)


def page_posted(*, incident_id: int, page_id: int | None, channel: str, ts: str) -> bool:
    """Remember where a page to Slack is (paging posts it) and bring it up to date at once: an ack may
    have landed between the post and now, and the Roll back button is this module's to offer."""
    message, _ = SlackMessage.objects.get_or_create(channel=channel, ts=ts, defaults={
        "incident_id": incident_id, "page_id": page_id, "created_at": timezone.now()})
    inc = Incident.objects.select_related("environment").get(pk=incident_id)
    if inc.status == Incident.Status.TRIGGERED and len(state_lines(inc)) == 1 and rollback_environment(inc) is None:
        return False  # what paging posted is what the incident is now
    return message_refresh(message)


# ----------------------------------------------------------------------------------------------
# The buttons


@dataclass
class Answer:
    """What the person pressing is told (ephemerally, in the channel they pressed in)."""

    text: str
    blocks: list[dict] = field(default_factory=list)
    changed: bool = False


def slack_user(slack_id: str):
    """The portal user whose VERIFIED Slack method is `slack_id` (none when unknown, or held by several)."""
    users = list(ContactMethod.objects.filter(kind=ContactKind.SLACK, value=slack_id, verified_at__isnull=False)
                 .select_related("user").values_list("user", flat=True).distinct()[:2]) if slack_id else []
    if len(users) != 1:
        return None
    method = ContactMethod.objects.select_related("user").filter(kind=ContactKind.SLACK, value=slack_id, user_id=users[0]).first()
    return method.user if method is not None and method.user.is_active else None


def _incident(value: str) -> Incident | None:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return None
    return Incident.objects.select_related("environment").filter(public_id=value).first()


def _code_hash(code_id, code: str) -> str:
    return hmac.new(settings.SECRET_KEY.encode(), f"{code_id}:{code.strip()}".encode(), hashlib.sha256).hexdigest()


def _may_roll_back(user) -> bool:
    """The web page's rule for the Roll back button: a responder (or above)."""
    return user.is_active and user.has_perm(RESPOND)


def _code_value(payload: dict) -> str:
    values = ((payload.get("state") or {}).get("values") or {})
    entry = (values.get(CODE_BLOCK) or {}).get(CODE_INPUT) or {}
    return str(entry.get("value") or "")


def _confirm_blocks(inc: Incident, env) -> list[dict]:
    rb = deployments_selectors.active_rollback(env)
    now = f" A rollback is already running (requested by {rb.requested_by_label})." if rb else ""
    text = (f"Roll back *{env.name}* to its previous colour for {incident_ref(inc)}?{now}"
            + (" Production: a one-time code comes to you by Slack after you confirm." if env.is_production else ""))
    return [{"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {"type": "actions", "elements": [{
                "type": "button", "action_id": ROLLBACK_CONFIRM, "value": str(inc.public_id), "style": "danger",
                "text": {"type": "plain_text", "text": f"Confirm: roll back {env.name}"[:75]},
                "confirm": {"title": {"type": "plain_text", "text": "Roll back?"},
                            "text": {"type": "plain_text", "text": f"Traffic on {env.name} goes back to the previous colour."[:300]},
                            "confirm": {"type": "plain_text", "text": "Roll back"}, "deny": {"type": "plain_text", "text": "Cancel"},
                            "style": "danger"}}]}]


def _code_blocks(code: RollbackCode, env) -> list[dict]:
    return [{"type": "input", "block_id": CODE_BLOCK, "label": {"type": "plain_text", "text": f"Code to roll back {env.name}"[:150]},
             "element": {"type": "plain_text_input", "action_id": CODE_INPUT, "min_length": 6, "max_length": 6}},
            {"type": "actions", "elements": [{"type": "button", "action_id": ROLLBACK_CODE, "value": str(code.public_id),
                                              "style": "danger", "text": {"type": "plain_text", "text": "Roll back"}}]}]


def _roll_back(inc: Incident, env, user) -> Answer:
    """Through deployments' one-per-environment rollback: a second confirmation is told what runs."""
    try:
        rb = deployments.environment_rollback(environment=env, actor=user, reason=f"via {VIA} for {incident_ref(inc)}")
    except AlreadyInProgress as exc:
        return Answer(f"{exc.detail}; nothing changed")
    except DeploymentError as exc:
        return Answer(f"Not rolled back: {exc.detail}")
    except CloudError as exc:
        return Answer(f"Not rolled back: {exc.words}")
    actor = Actor.of(user)
    incident_timeline_add(incident=inc, kind=TimelineEntry.Kind.DEPLOYMENT, actor=actor,
                          text=f"Rollback of {env.name} to {rb.to_colour} requested by {actor.label} via {VIA}",
                          data={"via": VIA, "rollback": str(rb.public_id)})
    return Answer(f"Rolling back {env.name} to {rb.to_colour} as {actor.label}: the page shows the weights.", changed=True)


def _code_send(inc: Incident, env, user, slack_id: str) -> Answer:
    now = timezone.now()
    code = f"{secrets.randbelow(10**6):06d}"
    row = RollbackCode(incident=inc, environment=env, user=user, created_at=now, expires_at=now + CODE_TTL)
    row.code_hash = _code_hash(row.public_id, code)
    row.save()
    sent = delivery.send(delivery.Message(
        kind=ContactKind.SLACK, to=slack_id, purpose="verification", subject="FTW Ops: rollback code",
        body=f"Your FTW Ops code to roll back {env.name} is {code}. It expires in {int(CODE_TTL.total_seconds() // 60)} minutes."))
    if not sent.ok:
        return Answer(f"Could not send the code: {sent.detail}; nothing changed")
    return Answer(f"{env.name} is production: enter the code just sent to you by direct message.", _code_blocks(row, env))


def _code_check(payload: dict, value: str, user) -> Answer:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return Answer("That code request is not known; nothing changed")
    row = RollbackCode.objects.select_related("incident__environment", "environment").filter(public_id=value, user=user).first()
    now = timezone.now()
    if row is None or row.used_at is not None or row.expires_at <= now:
        return Answer("That code has expired or was used; press Roll back again for a new one. Nothing changed")
    # One attempt claimed per check, under the limit (two checks at once both count).
    if not RollbackCode.objects.filter(pk=row.pk, attempts__lt=CODE_ATTEMPTS, used_at__isnull=True).update(attempts=F("attempts") + 1):
        return Answer("Too many wrong codes; press Roll back again for a new one. Nothing changed")
    if not hmac.compare_digest(row.code_hash, _code_hash(row.public_id, _code_value(payload))):
        left = CODE_ATTEMPTS - row.attempts - 1
        return Answer(f"Wrong code; nothing changed ({max(left, 0)} attempts left)")
    if not RollbackCode.objects.filter(pk=row.pk, used_at__isnull=True).update(used_at=now):
        return Answer("That code was used already; nothing changed")
    if not _may_roll_back(user):
        return Answer(f"{user.get_username()} may not roll back; nothing changed")
    return _roll_back(row.incident, row.environment, user)


def interaction(payload: dict) -> Answer:
    """Act on one verified block_actions payload as the Slack user's portal user."""
    if payload.get("type") != "block_actions" or not payload.get("actions"):
        return Answer("Nothing to do for this interaction")
    action = payload["actions"][0]
    action_id, value = str(action.get("action_id", "")), str(action.get("value", ""))
    user = slack_user(str((payload.get("user") or {}).get("id", "")))
    if user is None:
        return Answer("Your Slack account is not linked to a portal user (a verified Slack contact method); nothing changed.")
    if action_id == ROLLBACK_CODE:
        return _code_check(payload, value, user)
    inc = _incident(value)
    if inc is None:
        return Answer("That incident is not known; nothing changed")
    if action_id in (ACKNOWLEDGE, RESOLVE):
        try:
            outcome = page_answer(incident=inc, user=user, action=action_id, via=VIA)
        except NotAllowed as exc:
            return Answer(f"{exc.detail}; nothing changed")
        return Answer(outcome.text, changed=outcome.changed)
    if action_id not in (ROLLBACK, ROLLBACK_CONFIRM):
        return Answer(f"Unknown action {action_id[:40]}; nothing changed")
    if not _may_roll_back(user):
        return Answer(f"{user.get_username()} may not roll back; nothing changed")
    env = rollback_environment(inc)
    if env is None:
        return Answer(f"{incident_ref(inc)} has no environment with a running or recent deployment to roll back; nothing changed")
    if action_id == ROLLBACK:
        return Answer(f"Confirm the rollback of {env.name}", _confirm_blocks(inc, env))
    if env.is_production:
        return _code_send(inc, env, user, str(payload["user"]["id"]))
    return _roll_back(inc, env, user)


def answer_send(payload: dict, answer: Answer) -> None:
    """Tell the person pressing what happened, where they pressed (only they see it)."""
    channel = str((payload.get("channel") or {}).get("id") or (payload.get("container") or {}).get("channel_id") or "")
    slack_id = str((payload.get("user") or {}).get("id", ""))
    if not channel or not slack_id:
        return
    try:
        notify.slack_ephemeral(channel=channel, user=slack_id, text=answer.text, blocks=answer.blocks or None)
    except notify.NotificationError as exc:
        log.warning("could not answer a Slack interaction: %s", exc)


def interaction_handle(payload: dict) -> Answer:
    """No transaction around it: each service takes its own locks, and the rollback reads AWS before its lock."""
    answer = interaction(payload)
    answer_send(payload, answer)
    return answer
