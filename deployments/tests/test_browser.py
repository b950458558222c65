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


def test_the_deployment_page_shows_each_analysis_run_as_it_happens(transactional_db, page, aws_platform, strategies,
                                                                   fake_metrics, fast, clock, responder):
    from deployments.models import Analysis, Deployment
    from deployments.rollout import deployment_advance

    env = aws_platform
    dep = services.deployment_create(environment=env, version="2026.12.01-1", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    drive(dep, clock, until=("holding",))
    for _ in range(2):
        clock.now = Deployment.objects.get(pk=dep.pk).wake_at
        deployment_advance(deployment_id=dep.pk, now=clock.now)
    runs = Analysis.objects.filter(deployment=dep).count()
    assert runs >= 2

    _login(page, responder)
    page.goto(dep.get_absolute_url())
    page.wait_for_selector("[data-testid=analyses] tr[data-decision]")
    rows = page.locator("[data-testid=analyses] tbody tr[data-decision=pass]")
    assert rows.count() == runs
    assert "150" in rows.first.inner_text()  # green's requests at 5 %, with its error count beside them
    waiting = page.locator("[data-testid=waiting]").inner_text()
    assert "Analysing the hold at 5 % every 3 s" in waiting and "Last run: pass" in waiting
    assert "Fisher exact" in page.locator("[data-testid=method]").inner_text()
    page.wait_for_selector(f"[data-testid=analysis-chart][data-runs='{runs}']")
    # Another run happens while the page is open: it appears without a reload.
    clock.now = Deployment.objects.get(pk=dep.pk).wake_at
    deployment_advance(deployment_id=dep.pk, now=clock.now)
    more = Analysis.objects.filter(deployment=dep).count()
    page.locator("[data-testid=analyses] tbody tr[data-decision]").nth(more - 1).wait_for()
    # Finished, the template's page replays it and agrees with what happened.
    assert drive(dep, clock) == "completed"
    page.goto("/deployments/templates/?template=sandbox-quick")
    assert "agrees with what happened on 1 of 1" in page.locator("[data-testid=replay-summary]").inner_text()
    assert "Gradual Rollout (quick" in page.locator("[data-template=sandbox-quick]").inner_text()
