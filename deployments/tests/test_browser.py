"""A responder rolls back a canary from /deployments/ in the browser."""

from __future__ import annotations

import pytest

from conftest import browser_login
from deployments import cloudops, services
from deployments.models import Rollback
from deployments.tests.conftest import drive
from portal.audit.models import AuditEvent

pytestmark = pytest.mark.browser


_login = browser_login


def test_responder_rolls_back_a_canary_with_one_click(transactional_db, page, aws_platform, strategies, fake_metrics, fast,
                                                      clock, responder):
    env = aws_platform
    dep = services.deployment_create(environment=env, version="2026.11.27-1", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    drive(dep, clock, until=("holding",))
    drive(dep, clock, until=("holding",), max_passes=5)
    assert cloudops.read_weights(env)["green"] in (5, 25)

    _login(page, responder)
    page.goto("/deployments/")
    page.wait_for_selector("[data-testid=deployment-state]")
    assert "Holding" in page.locator("[data-testid=deployment-state]").inner_text()
    button = page.locator("[data-testid=rollback-button]").first
    assert "Roll back to blue" in button.inner_text()
    questions = []

    def accept(dialog):
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    button.click()
    page.wait_for_selector("[data-testid=rollback-status]")
    assert questions and "back to blue" in questions[0] and "healthy" in questions[0]
    page.wait_for_selector("[data-testid=rollback-status][data-state=completed]", timeout=15000)
    assert page.locator("[data-testid=rollback-weights]").inner_text() == "blue 100 / green 0"
    assert page.locator("[data-testid=weight-blue]").inner_text() == "100 %"
    assert page.locator("[data-testid=weight-green]").inner_text() == "0 %"
    assert cloudops.read_weights(env) == {"blue": 100, "green": 0}
    assert Rollback.objects.get().requested_by == responder
    assert AuditEvent.objects.filter(verb="environment.rollback", actor=responder).count() == 1
    # The deployment's page tells the story.
    page.goto(dep.get_absolute_url())
    page.wait_for_selector("[data-testid=timeline]")
    assert "Rolled back" in page.locator("[data-testid=deployment-state]").inner_text()
    assert "Rollback requested by oscar-oncall" in page.locator("[data-testid=timeline]").inner_text()
