"""The stand-ins' fixtures for the sandbox tests."""

from tests.plugins.standins import slack_standin, smtp_standin, twilio_standin  # noqa: F401
