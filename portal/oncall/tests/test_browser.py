"""In Chromium: a responder takes the pager from the dashboard, and /oncall/ shows them on call."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from conftest import browser_login
from portal.oncall import services
from portal.oncall.models import Override

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_responder_takes_the_pager_from_the_dashboard(page, lead, responder, responder2):
    start = timezone.now() - timedelta(hours=1)
    services.schedule_create(slug="primary", name="Primary", time_zone="Europe/Berlin", actor=lead, layers=[
        {"members": [responder2.username], "shift_hours": 24, "starts_at": start}])
    browser_login(page, responder)
    page.wait_for_selector("[data-testid=oncall-now-primary]")
    assert page.locator("[data-testid=oncall-now-primary]").inner_text() == responder2.username
    questions = []
    page.on("dialog", lambda d: (questions.append(d.message), d.accept()))
    page.click("[data-testid=take-pager-primary]")
    page.wait_for_selector("[data-testid=you-are-on-call]")
    assert questions and "Take the pager for Primary" in questions[0]
    assert Override.objects.filter(user=responder).count() == 1
    page.goto("/oncall/")
    assert page.locator("[data-testid=now-primary]").inner_text() == responder.username
    assert "You are on call for Primary until" in page.locator("[data-testid=you-are-on-call]").inner_text()
