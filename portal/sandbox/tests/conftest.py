"""The stand-ins' fixtures for the sandbox tests."""

from portal.sandbox.testing import slack_standin, smtp_standin, twilio_standin  # noqa: F401
