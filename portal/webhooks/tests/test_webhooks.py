"""Outgoing webhooks against a local receiver: signed, each event once per endpoint, again after a 500."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.utils import timezone
from werkzeug.wrappers import Response

from portal.audit.models import AuditEvent
from portal.cloud.models import Environment
from portal.health.models import OutboundPolicy
from portal.incidents import ingest
from portal.incidents import services as incidents
from portal.webhooks import services, tasks
from portal.webhooks.models import Delivery, Endpoint


@pytest.fixture
def sandbox_env(db, settings):
    env, _ = Environment.objects.get_or_create(name=settings.DEFAULT_ENVIRONMENT, defaults={"credentials_mode": "static"})
    OutboundPolicy.objects.update_or_create(environment=env, defaults={"allow_private_targets": True})
    return env


class Receiver:
    """Records each request; answers the queued status codes first, then 200."""

    def __init__(self, httpserver):
        self.seen: list[dict] = []
        self.answers: list[int] = []
        httpserver.expect_request("/hook", method="POST").respond_with_handler(self.handle)

    def handle(self, request):
        self.seen.append({"body": request.get_data(), "headers": dict(request.headers)})
        return Response("ok", status=self.answers.pop(0) if self.answers else 200)

    def kinds(self):
        return [json.loads(r["body"])["kind"] for r in self.seen]


def valid(secret: str, request: dict) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"].get("X-Portal-Signature", "")) and \
        request["headers"].get("X-Portal-Timestamp", "").isdigit()


def open_incident():
    return ingest.alert_ingest_internal(source="health", fingerprint="w1", name="HighErrorRate", severity="critical",
                                        firing=True, summary="5xx", labels={"service": "api"}).incident


def test_receiver_sees_each_event_once_signed_and_again_after_a_500(
        sandbox_env, lead, httpserver, django_capture_on_commit_callbacks):
    receiver = Receiver(httpserver)
    endpoint, secret = services.endpoint_create(name="chat", url=httpserver.url_for("/hook"), actor=lead,
                                                kinds=["incident.opened", "incident.acknowledged", "incident.resolved"])
    assert AuditEvent.objects.filter(verb="webhook.endpoint_create").count() == 1
    assert Endpoint.objects.get().secret == secret  # read back decrypted
    receiver.answers = [500]
    with django_capture_on_commit_callbacks(execute=True):
        inc = open_incident()
    assert receiver.kinds() == ["incident.opened"]
    opened = Delivery.objects.get(kind="incident.opened")
    assert opened.state == "pending" and opened.attempts == 1 and opened.last_status_code == 500
    assert opened.next_attempt_at > timezone.now()

    assert tasks.sweep() == 0  # not due yet
    later = (timezone.now() + timedelta(seconds=services.backoff_seconds(1) + 1)).isoformat()
    assert tasks.sweep(later) == 1
    assert receiver.kinds() == ["incident.opened", "incident.opened"]
    opened.refresh_from_db()
    assert opened.state == "delivered" and opened.attempts == 2
    assert [a.status_code for a in opened.attempt_log.all()] == [500, 200]

    with django_capture_on_commit_callbacks(execute=True):
        incidents.incident_acknowledge(incident=inc, actor=lead)
        incidents.incident_acknowledge(incident=inc, actor=lead)  # a no-op: no second event
    with django_capture_on_commit_callbacks(execute=True):
        incidents.incident_resolve(incident=inc, actor=lead)
    assert receiver.kinds() == ["incident.opened", "incident.opened", "incident.acknowledged", "incident.resolved"]
    assert all(valid(secret, r) for r in receiver.seen)
    ids = [json.loads(r["body"])["id"] for r in receiver.seen]
    assert ids[0] == ids[1] and len(set(ids)) == 3

    # A redelivered fan-out or delivery task sends nothing more.
    event = Delivery.objects.get(kind="incident.resolved").event
    assert services.event_fanout(event=event) == []
    assert tasks.deliver(Delivery.objects.get(kind="incident.resolved").pk) == ""
    assert tasks.sweep(later) == 0
    assert len(receiver.seen) == 4


def test_gives_up_after_bounded_attempts_and_logs_class_and_host_only(sandbox_env, lead, httpserver):
    endpoint, _ = services.endpoint_create(name="down", url="http://127.0.0.1:9/secret-token/hook", actor=lead)
    event = {"id": "5d0c7b47-3f43-4d1f-9f57-0c2b7a7f0001", "kind": "rollback.started", "at": "", "data": {}}
    [pk] = services.event_fanout(event=event)
    now = timezone.now()
    for _ in range(services.MAX_ATTEMPTS):
        services.delivery_attempt(delivery_id=pk, now=now)
        now += timedelta(seconds=services.BACKOFF_MAX_SECONDS + 1)
    d = Delivery.objects.get(pk=pk)
    assert d.state == "failed" and d.attempts == services.MAX_ATTEMPTS
    assert "127.0.0.1" in d.last_error and "secret-token" not in d.last_error
    assert services.delivery_attempt(delivery_id=pk, now=now) == ""


def test_public_only_environment_refuses_a_loopback_url(db, lead, settings):
    env, _ = Environment.objects.get_or_create(name=settings.DEFAULT_ENVIRONMENT, defaults={"credentials_mode": "static"})
    OutboundPolicy.objects.filter(environment=env).delete()
    services.endpoint_create(name="local", url="http://127.0.0.1:9/hook", actor=lead)
    [pk] = services.event_fanout(event={"id": "5d0c7b47-3f43-4d1f-9f57-0c2b7a7f0002", "kind": "incident.opened", "at": "", "data": {}})
    services.delivery_attempt(delivery_id=pk)
    assert Delivery.objects.get(pk=pk).last_error.startswith("OutboundRefused")


def test_bad_url_and_unknown_kind_are_refused(db, lead):
    with pytest.raises(services.WebhookInvalid):
        services.endpoint_create(name="x", url="ftp://example.com/", actor=lead)
    with pytest.raises(services.WebhookInvalid):
        services.endpoint_create(name="x", url="https://example.com/", actor=lead, kinds=["nope"])


def test_page_lists_endpoints_for_leads_only(client, lead, responder, sandbox_env):
    client.force_login(responder)
    assert client.get("/webhooks/").status_code == 403
    client.force_login(lead)
    r = client.post("/webhooks/new/", {"name": "status", "url": "https://status.example.com/hook", "kinds": ["incident.opened"]})
    assert r.status_code == 302
    page = client.get("/webhooks/")
    assert page.status_code == 200 and b"status.example.com" in page.content and b"Delivery log" in page.content
