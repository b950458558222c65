from datetime import timedelta

import pytest
from django.utils import timezone

from portal.phases.selectors import current_phase
from portal.phases.services import user_count_record

# The phases come from seed_defaults; the page reads them, so the test seeds them first.
pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("growth_phases")]


def test_lead_sees_the_users_chart_and_moves_the_phase(page, lead):
    now = timezone.now()
    for days_ago, users in [(20, 3000), (10, 4200), (0, 5600)]:
        user_count_record(users=users, actor="system:test", source="cloudwatch", at=now - timedelta(days=days_ago))
    page.goto("/accounts/login/")
    page.fill("input[name=username]", lead.username)
    page.fill("input[name=password]", lead.raw_password)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('On-call dashboard')")
    page.wait_for_selector("[data-testid=panel-phase]")
    assert page.locator("[data-testid=panel-phase]").inner_text() == "Phase 1: Foundation"

    page.goto("/phases/")
    page.wait_for_selector("[data-chart=users][data-drawn='1'] canvas")
    assert "phase 2 (Growth)" in page.locator("[data-testid=phase-mismatch]").inner_text()
    page.on("dialog", lambda d: d.accept())
    page.fill("[data-testid=move-form] input[name=reason]", "5,600 users")
    page.click("[data-testid=move-form] button[type=submit]")
    page.wait_for_selector("h1:has-text('Phase 2: Growth')")
    assert current_phase().slug == "growth"
    assert page.locator("[data-testid=phase-mismatch]").count() == 0
