import pytest

pytestmark = pytest.mark.browser


def test_login_see_dashboard_and_logout(page, lead):
    page.goto("/")
    assert "/accounts/login/" in page.url
    page.fill("input[name=username]", lead.username)
    page.fill("input[name=password]", "wrong-password")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text().startswith("Wrong username or password")
    page.fill("input[name=username]", lead.username)
    page.fill("input[name=password]", lead.raw_password)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('On-call dashboard')")
    assert page.locator("[data-testid=current-user]").inner_text() == lead.username
    nav = page.locator("nav.nav a").all_inner_texts()
    assert nav == ["Dashboard", "Incidents", "On call", "Deployments", "Runbooks", "Health", "Checklist", "Phases", "Environments", "Audit"]
    page.click("text=Log out")
    page.wait_for_url("**/accounts/login/")
    page.goto("/")
    assert "/accounts/login/" in page.url
