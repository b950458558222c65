"""In Chromium: after a shift change, /oncall/ shows the handoff note with the outgoing person's words."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import browser_login
from portal.handoff import services, tasks
from portal.oncall import services as oncall_services

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_oncall_page_shows_the_handoff_note_after_a_shift_change(page, lead, responder, responder2):
    # responder2's shift ended an hour ago; the responder's runs now. The check is driven with `now`.
    start = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=13)
    schedule = oncall_services.schedule_create(slug="primary", name="Primary", time_zone="Europe/Berlin", actor=lead, layers=[
        {"members": [responder2.username, responder.username], "shift_hours": 12, "starts_at": start}])
    services.shift_handoffs_record(now=start + timedelta(hours=1))  # responder2's shift, the baseline
    services.outgoing_note_write(schedule=schedule, text="The canary on staging is paused on purpose.", actor=responder2)
    tasks.check_shift_changes(now=(start + timedelta(hours=12, minutes=1)).isoformat())

    browser_login(page, responder)
    page.click("nav.nav a:text-is('On call')")
    page.wait_for_selector("[data-testid=handoff-primary]")
    who = page.locator("[data-testid=handoff-who-primary]").inner_text()
    assert who.startswith(f"{responder.username} took over from {responder2.username}")
    assert "The canary on staging is paused on purpose." in page.locator("[data-testid=handoff-note-primary]").inner_text()
    assert page.locator("[data-testid=now-primary]").inner_text() == responder.username
