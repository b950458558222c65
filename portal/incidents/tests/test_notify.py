"""Notification transports: a Slack failure stores the exception class and host, never its URL;
a webhook on a private address is refused outside the sandbox."""

from __future__ import annotations

import socket

import pytest

from portal import outbound
from portal.incidents import ingest
from portal.incidents.models import EscalationLevel, Notification, NotificationChannel
from portal.incidents.seed import seed
from portal.plan.loader import load_plan
from tests.plugins.aws import free_port

HOOK = "https://hooks.slack.com/services/T0SECRET1/B0SECRET2/xoxbSecretTokenPart3"
URL_PARTS = ("services", "T0SECRET1", "B0SECRET2", "xoxbSecretTokenPart3", "https://")


@pytest.fixture
def slack_channel(db):
    seed(load_plan(), reset=False)
    ch = NotificationChannel.objects.create(name="slack hook", kind="slack", webhook_url=HOOK)
    EscalationLevel.objects.get(policy__severity="critical", number=1).channels.add(ch)
    return ch


def _page(channel):
    inc = ingest.alert_ingest_internal(source="health", fingerprint="n1", name="HighErrorRate", severity="critical",
                                         firing=True, summary="5xx above 5%", labels={}).incident
    return inc, Notification.objects.get(incident=inc, channel=channel)


def _stored_text(inc, n) -> str:
    return n.error + " ".join(inc.timeline.values_list("text", flat=True))


@pytest.mark.django_db(transaction=True)
def test_slack_failure_stores_class_and_host_but_no_part_of_its_url(slack_channel, monkeypatch):
    from portal.cloud.models import Environment
    from portal.health.models import OutboundPolicy

    env = Environment.objects.create(name="sandbox", credentials_mode="static")
    OutboundPolicy.objects.create(environment=env, allow_private_targets=True)
    closed = free_port()
    monkeypatch.setattr(outbound, "resolve", lambda host, port: [(socket.AF_INET, ("127.0.0.1", closed))])
    inc, n = _page(slack_channel)
    assert n.status == "failed"
    assert n.error == "ConnectionError to hooks.slack.com"
    stored = _stored_text(inc, n)
    assert not [p for p in URL_PARTS if p in stored], stored


@pytest.mark.django_db(transaction=True)
def test_slack_hook_on_a_private_address_is_refused_outside_the_sandbox(slack_channel, monkeypatch):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.3)
    port = srv.getsockname()[1]
    monkeypatch.setattr(outbound, "resolve", lambda host, _port: [(socket.AF_INET, ("127.0.0.1", port))])
    try:
        inc, n = _page(slack_channel)  # no environment allows private targets here
        assert n.status == "failed"
        assert n.error == "OutboundRefused to hooks.slack.com: 127.0.0.1 is a loopback address"
        with pytest.raises(TimeoutError):
            srv.accept()
    finally:
        srv.close()
    assert not [p for p in URL_PARTS if p in _stored_text(inc, n)]
