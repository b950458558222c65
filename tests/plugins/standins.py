"""pytest fixtures for the sandbox's stand-ins: each on a free 127.0.0.1 port, with the settings pointed
at it for the test (used by the incidents, on-call and sandbox tests; kept under tests/ so a production install carries no pytest fixture)."""

from __future__ import annotations

import pytest

from portal.sandbox import standins
from tests.plugins.aws import free_port


@pytest.fixture
def twilio_standin(settings, transactional_db):
    server = standins.twilio("127.0.0.1", free_port()).start()
    settings.TWILIO_API_BASE = server.url
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM = "AC0123456789test", "token", "+15005550006"
    yield server
    server.stop()


@pytest.fixture
def slack_standin(settings, transactional_db):
    server = standins.slack("127.0.0.1", free_port()).start()
    settings.SLACK_API_BASE, settings.SLACK_BOT_TOKEN = server.url, "xoxb-test-token"
    yield server
    server.stop()


@pytest.fixture
def smtp_standin(settings, transactional_db):
    catcher = standins.smtp("127.0.0.1", free_port()).start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", catcher.port, False
    yield catcher
    catcher.stop()
