"""In the browser: a responder declares an incident from the dashboard and takes the commander role."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from conftest import browser_login
from portal.command.models import CommandRole, IncidentCommand

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("growth_phases")]  # the dashboard's phase panel reads them


def test_a_responder_declares_an_incident_from_the_dashboard_and_takes_command(page, responder):
    browser_login(page, responder)
    form = page.locator("[data-testid=declare-incident] form")
    form.locator("input[name=title]").fill("Payments stuck at checkout")
    form.locator("select[name=sev]").select_option("SEV2")
    form.locator("input[name=journeys][value=pay]").check()
    form.locator("textarea[name=description]").fill("Three customers report a spinner after paying")
    form.locator("[data-testid=declare-submit]").click()

    expect(page.locator("[data-testid=command-title]")).to_contain_text("Payments stuck at checkout")
    expect(page.locator("[data-testid=command-sev]")).to_have_text("SEV2")
    commander = page.locator("[data-testid=role-commander]")
    expect(commander).to_contain_text("nobody")
    commander.locator("[data-testid=take-commander]").click()
    expect(page.locator("[data-testid=role-commander-user]")).to_have_text(responder.username)
    expect(page.locator("[data-testid=take-commander]")).to_have_count(0)  # one's own role has no button

    cmd = IncidentCommand.objects.get()
    assert cmd.declared and cmd.sev == "SEV2" and cmd.journeys == ["pay"] and cmd.declared_by == responder.username
    assert CommandRole.objects.get(incident=cmd.incident, role="commander").user == responder
    page.reload()
    expect(page.locator("[data-testid=timeline-entry]").filter(has_text=f"{responder.username} took commander")).to_have_count(1)

    page.goto("/")
    panel = page.locator("#panel-command-panel [data-testid=declared-incident]")
    expect(panel).to_contain_text("Payments stuck at checkout")
    expect(panel).to_contain_text(f"Commander: {responder.username}")
