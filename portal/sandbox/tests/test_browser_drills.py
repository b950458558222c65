import pytest
from playwright.sync_api import expect

from portal.cloud.models import Drill, Environment

pytestmark = pytest.mark.browser


def test_admin_starts_and_stops_a_drill(page, admin_user):
    Environment.objects.create(name="sandbox", credentials_mode="static", endpoint_url="http://127.0.0.1:9")
    page.goto("/accounts/login/?next=/environments/drills/")
    page.fill("input[name=username]", admin_user.username)
    page.fill("input[name=password]", admin_user.raw_password)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('Sandbox drills')")
    assert page.locator("[data-testid=no-drills]").is_visible()
    page.select_option("select[name=kind]", "service-outage")
    # The form's script shows the fields the kind takes; wait for it rather than read the page at once.
    expect(page.locator(".field-service")).to_be_visible()
    expect(page.locator(".field-colour")).to_be_hidden()
    page.select_option("select[name=kind]", "error-rate")
    expect(page.locator(".field-colour")).to_be_visible()
    expect(page.locator(".field-service")).to_be_hidden()
    page.select_option("select[name=colour]", "green")
    page.fill("input[name=level]", "20")
    page.fill("input[name=seed]", "7")
    page.once("dialog", lambda d: d.accept())
    page.click("[data-testid=drill-form] button[type=submit]")
    page.wait_for_selector("[data-testid=active-drills]")
    assert "Error rate on one colour" in page.locator("[data-testid=active-drills]").inner_text()
    drill = Drill.objects.get()
    assert (drill.colour, drill.level, drill.seed) == ("green", 20.0, 7)
    page.once("dialog", lambda d: d.accept())
    page.click("[data-testid=active-drills] button:has-text('Stop')")
    page.wait_for_selector("[data-testid=no-drills]")
    drill.refresh_from_db()
    assert drill.stopped_at is not None
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: the form still fits
    assert page.locator("[data-testid=drill-form] button[type=submit]").is_visible()
