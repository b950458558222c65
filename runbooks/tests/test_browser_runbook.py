"""A responder starts the high error rate runbook from an incident and walks it in Chromium."""

import os
import re

import pytest

from runbooks.models import RunbookRun

pytestmark = pytest.mark.browser
SHOTS = os.environ.get("RUNBOOK_SCREENSHOTS", "")


def _login(page, user):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.raw_password)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")


def test_responder_walks_high_error_rate_from_an_incident(page, responder, library, make_incident, live_error_rate, settings):
    # One person here: no need to poll for others' steps, and in-memory SQLite cannot take two requests at once.
    settings.RUNBOOK_POLL_SECONDS = 600
    incident = make_incident(environment=live_error_rate["environment"])
    incident.runbook_slug = "high-error-rate"
    incident.save(update_fields=["runbook_slug"])
    page.on("dialog", lambda d: d.accept())
    _login(page, responder)

    page.goto(incident.get_absolute_url())
    page.click("#incident-runbook button:has-text('Start runbook')")
    page.wait_for_url(re.compile(r"/runbooks/runs/[0-9a-f-]+/"))
    run = RunbookRun.objects.get()
    assert run.incident_id == incident.pk

    # The first check step shows the live error rate as soon as it opens.
    reading = page.locator("[data-testid=check-dashboard] [data-testid=reading]")
    reading.wait_for()
    assert live_error_rate["expect"] in reading.inner_text()

    page.click("li[data-step=dashboard] [data-testid=mark-done]")
    page.locator("li[data-step=deployments][data-state=current]").wait_for()

    # Keyboard: j/k move between steps.
    page.keyboard.press("k")
    page.keyboard.press("j")
    assert page.evaluate("document.activeElement.closest('li').dataset.step") == "deployments"

    page.fill("li[data-step=deployments] textarea[name=note]", "release went to green at 03:02")
    page.click("li[data-step=deployments] [data-testid=mark-done]")
    page.locator("li[data-step=external][data-state=current]").wait_for()
    page.click("li[data-step=external] [data-testid=mark-done]")

    page.locator("li[data-step=cause][data-state=current]").wait_for()
    page.check("li[data-step=cause] input[value=bad-deployment]")
    page.click("li[data-step=cause] button:has-text('Answer')")
    page.locator("li[data-step=rollback][data-state=current]").wait_for()
    assert page.locator("li[data-step=rollback] [data-testid=action-rollback]").is_visible()
    assert "Bad deployment: roll back" in page.locator("li[data-step=cause] [data-testid=summary-answer]").inner_text()
    if SHOTS:
        page.set_viewport_size({"width": 390, "height": 844})
        page.emulate_media(color_scheme="dark")
        page.screenshot(path=f"{SHOTS}/run-phone-dark.png", full_page=True)
        page.set_viewport_size({"width": 1280, "height": 800})
        page.emulate_media(color_scheme="light")

    # The action is taken from inside the run: confirmed, carried out, its result shown in the step.
    page.click("li[data-step=rollback] [data-testid=action-rollback]")
    page.locator("li[data-step=recheck][data-state=current]").wait_for()
    assert "Rollback to blue requested" in page.locator("li[data-step=rollback] .rb-evidence").text_content()
    from portal.cloud import aws

    assert aws.get_listener_weights(live_error_rate["environment"]) == {"blue": 100, "green": 0}
    page.locator("li[data-step=recheck] [data-testid=reading]").wait_for()
    page.click("li[data-step=recheck] [data-testid=mark-done]")
    page.locator("[data-testid=run-finished]").wait_for()
    assert page.locator("[data-testid=run-status]").inner_text() == "completed"
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/run-finished.png", full_page=True)
    page.click("[data-testid=export]")
    export = page.locator("body").inner_text()
    assert "# Runbook run: High Error Rate" in export
    assert "- Answer: **Bad deployment: roll back**" in export
    assert "Result: Rollback to blue requested" in export
    page.go_back()

    page.goto(run.get_absolute_url())
    page.click("[data-testid=run-incident]")
    page.wait_for_url(f"**{incident.get_absolute_url()}")
    timeline = page.locator("#incident-timeline").inner_text()
    assert "Decide what is causing the errors: done → Bad deployment: roll back" in timeline
    assert "Check monitoring dashboard: done" in timeline
    assert live_error_rate["expect"] in timeline
    assert "Runbook finished: High Error Rate" in timeline


def test_two_responders_see_each_other_live(browser, live_server, page, responder, responder2, library, make_incident, fake_checks, require_postgres):
    """Needs PostgreSQL: the live server answers two browsers at once, which in-memory SQLite cannot."""
    from runbooks import services
    from runbooks.models import Runbook

    run = services.run_start(runbook=Runbook.objects.get(slug="high-error-rate"), incident=make_incident(), actor=responder)
    _login(page, responder)
    page.goto(run.get_absolute_url())
    other = browser.new_context(base_url=live_server.url)
    page2 = other.new_page()
    _login(page2, responder2)
    page2.goto(run.get_absolute_url())
    page2.locator("li[data-step=dashboard][data-state=current]").wait_for()

    page.click("li[data-step=dashboard] [data-testid=mark-done]")
    page.locator("li[data-step=deployments][data-state=current]").wait_for()
    # Without a reload, the other responder's page shows the step done and moves on.
    page2.locator("li[data-step=dashboard][data-state=done]").wait_for(timeout=8000)
    assert "oscar-oncall" in page2.locator("li[data-step=dashboard] summary").inner_text()

    # And back: the second responder records the next step; the first sees it.
    page2.click("li[data-step=deployments] [data-testid=mark-done]")
    page2.locator("li[data-step=external][data-state=current]").wait_for()
    page.locator("li[data-step=deployments][data-state=done]").wait_for(timeout=8000)
    assert "rita-responder" in page.locator("li[data-step=deployments] summary").inner_text()
    other.close()
