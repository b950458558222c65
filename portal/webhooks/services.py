"""Outgoing webhooks: register endpoints (leads, audited), fan each event out once per endpoint, deliver
with a signature, retry with exponential backoff and keep a log of every attempt.

A receiver checks `X-Portal-Signature: sha256=<hex HMAC-SHA256 of the raw body with its secret>`; the
body holds the event's id (dedup on the receiver side too), kind, time and data. `X-Portal-Timestamp`
is the send time (Unix seconds) and `X-Portal-Event` the kind.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import outbound
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud.models import Environment
from portal.errors import Invalid, NotFound
from portal.events import KINDS
from portal.tasking import enqueue
from portal.webhooks.models import Attempt, Delivery, Endpoint

MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 3600
LEASE_SECONDS = 60  # a claimed attempt another pass may take over if the worker died mid-request
TIMEOUT = (5, 10)
SIGNATURE_HEADER = "X-Portal-Signature"
TIMESTAMP_HEADER = "X-Portal-Timestamp"


class WebhookInvalid(Invalid):
    """The endpoint's URL or kinds are not acceptable."""


def sign(secret: str, body: bytes) -> str:
    """The X-Portal-Signature value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def encode(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True, default=str).encode()


def backoff_seconds(attempts: int) -> int:
    """Wait after the `attempts`-th failed attempt: 30 s, 60 s, 120 s ... at most an hour."""
    return min(BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS)


# ------------------------------------------------------------------------------------------------ endpoints


def _clean_kinds(kinds) -> list[str]:
    kinds = [k for k in (kinds or []) if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise WebhookInvalid(f"unknown event kinds: {', '.join(unknown)} (known: {', '.join(KINDS)})")
    return sorted(set(kinds))


def endpoint_create(*, name: str, url: str, actor, kinds=None, environment: Environment | None = None) -> tuple[Endpoint, str]:
    """Register a URL; returns the endpoint and its secret (shown once; stored encrypted)."""
    name, url = (name or "").strip()[:100], (url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookInvalid("the URL must be http or https with a host")
    if len(url) > 500:
        raise WebhookInvalid("the URL is longer than 500 characters")
    if not name:
        raise WebhookInvalid("a name is required")
    kinds = _clean_kinds(kinds)
    if environment is None:
        environment = Environment.objects.filter(name=settings.DEFAULT_ENVIRONMENT).first()
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        endpoint = Endpoint.objects.create(name=name, url=url, secret=secret, kinds=kinds, environment=environment,
                                           created_by_label=Actor.of(actor).label)
        audit_record(actor=actor, verb="webhook.endpoint_create", target=endpoint,
                     after={"name": name, "host": parts.hostname, "kinds": kinds})
    return endpoint, secret


def endpoint_set_enabled(*, endpoint: Endpoint, enabled: bool, actor) -> Endpoint:
    with transaction.atomic():
        ep = Endpoint.objects.select_for_update().get(pk=endpoint.pk)
        if ep.enabled != enabled:
            before = ep.enabled
            ep.enabled = enabled
            ep.save(update_fields=["enabled"])
            audit_record(actor=actor, verb="webhook.endpoint_enable" if enabled else "webhook.endpoint_disable", target=ep,
                         before={"enabled": before}, after={"enabled": enabled})
    return ep


def endpoint_delete(*, endpoint: Endpoint, actor) -> None:
    with transaction.atomic():
        audit_record(actor=actor, verb="webhook.endpoint_delete", target=endpoint,
                     before={"name": endpoint.name, "host": urlsplit(endpoint.url).hostname})
        endpoint.delete()


def endpoint_get(public_id) -> Endpoint:
    endpoint = Endpoint.objects.filter(public_id=public_id).first()
    if endpoint is None:
        raise NotFound("no webhook endpoint with this id")
    return endpoint


# ------------------------------------------------------------------------------------------------ delivery


def event_fanout(*, event: dict) -> list[int]:
    """One delivery per endpoint that wants the event's kind; a repeat of the same event adds none.
    Returns the ids of the deliveries created (each enqueued once after commit)."""
    created = []
    now = timezone.now()
    for endpoint in Endpoint.objects.filter(enabled=True):
        if not endpoint.wants(event["kind"]):
            continue
        try:
            with transaction.atomic():
                d = Delivery.objects.create(endpoint=endpoint, event_id=event["id"], kind=event["kind"], event=event,
                                            next_attempt_at=now)
        except IntegrityError:
            continue  # this event already has its delivery to this endpoint
        created.append(d.pk)
        enqueue("portal.webhooks.tasks.deliver", d.pk)
    return created


def _claim(delivery_id: int, now: datetime) -> bool:
    """Take the attempt: only one pass (the task, a redelivery, the sweep) sends it while the lease runs."""
    return bool(Delivery.objects.filter(pk=delivery_id, state=Delivery.State.PENDING, next_attempt_at__lte=now)
                .update(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS)))


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> str:
    """Send one due delivery; returns its state afterwards ('' when it was not due or another pass has it)."""
    now = now or timezone.now()
    if not _claim(delivery_id, now):
        return ""
    d = Delivery.objects.select_related("endpoint", "endpoint__environment__outbound_policy").get(pk=delivery_id)
    endpoint = d.endpoint
    body = encode(d.event)
    headers = {
        "Content-Type": "application/json", SIGNATURE_HEADER: sign(endpoint.secret, body),
        TIMESTAMP_HEADER: str(int(time.time())), "X-Portal-Event": d.kind, "X-Portal-Event-Id": str(d.event_id),
    }
    code, error = None, ""
    started = time.monotonic()
    try:
        r = outbound.request("POST", endpoint.url, allow_private=outbound.allows_private_targets(endpoint.environment),
                             headers=headers, data=body, timeout=TIMEOUT, max_redirects=0)
        code = r.status_code
        r.close()
        if not 200 <= code < 300:
            error = f"HTTP {code}"
    except Exception as exc:  # noqa: BLE001 - the log keeps the error's class and host, never the URL
        error = outbound.error_words(exc, endpoint.url)
    elapsed = int((time.monotonic() - started) * 1000)
    with transaction.atomic():
        d = Delivery.objects.select_for_update().get(pk=delivery_id)
        d.attempts += 1
        Attempt.objects.create(delivery=d, number=d.attempts, at=now, status_code=code, error=error[:300], duration_ms=elapsed)
        d.last_status_code, d.last_error = code, error[:300]
        if not error:
            d.state, d.delivered_at, d.next_attempt_at = Delivery.State.DELIVERED, timezone.now(), None
        elif d.attempts >= MAX_ATTEMPTS:
            d.state, d.next_attempt_at = Delivery.State.FAILED, None
        else:
            d.next_attempt_at = now + timedelta(seconds=backoff_seconds(d.attempts))
        d.save(update_fields=["attempts", "last_status_code", "last_error", "state", "delivered_at", "next_attempt_at"])
    return d.state


def deliveries_due(*, now: datetime | None = None, limit: int = 100) -> list[int]:
    now = now or timezone.now()
    return list(Delivery.objects.filter(state=Delivery.State.PENDING, next_attempt_at__lte=now)
                .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
