"""The health pages in Chromium: grid, dashboard panels, a check's page and Run now (strict CSP)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from conftest import browser_login
from portal.health import services
from portal.health.models import Check
from portal.health.runners import Outcome
from portal.health.seed import seed
from portal.plan.loader import load_plan

pytestmark = pytest.mark.browser


_login = browser_login


def test_responder_sees_the_grid_and_runs_a_check(page, responder):
    seed(load_plan(), reset=False)
    twilio = Check.objects.get(slug="service-twilio")
    for _ in range(3):
        services.check_record_result(check_id=twilio.pk, started_at=timezone.now(),
                                     outcome=Outcome(False, "the status page answered HTML instead of Statuspage JSON"))
    csp_errors = []
    page.on("console", lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None)

    _login(page, responder)
    page.wait_for_selector("[data-testid=health-panel-counts]")
    assert "1 failing" in page.locator("[data-testid=health-panel-counts]").inner_text()
    assert "Twilio" in page.locator("#panel-health-panel").inner_text()

    page.goto("/health/")
    row = page.locator("#check-service-twilio")
    assert "Failing" in row.inner_text() and "answered HTML" in row.inner_text()
    assert page.locator("#check-service-openai").is_visible()

    page.click("#check-service-twilio a")
    page.wait_for_selector("h1:has-text('Twilio')")
    page.on("dialog", lambda d: d.accept())
    page.click("button:has-text('Run now')")
    page.wait_for_selector("text=will run on the next poll")
    twilio.refresh_from_db()
    assert twilio.next_due_at is not None and twilio.next_due_at <= timezone.now()
    assert not csp_errors, csp_errors


def test_phone_width_keeps_the_grid_usable(page, viewer):
    seed(load_plan(), reset=False)
    page.set_viewport_size({"width": 390, "height": 800})
    _login(page, viewer)
    page.goto("/health/")
    assert page.locator("#check-service-stripe a").is_visible()
    assert page.locator("button:has-text('Run now')").count() == 0
