import pytest

from conftest import browser_login
from portal.checklist.models import ChecklistItem, ItemStatus
from portal.checklist.services import item_mark_ready, item_sign_off, verification_record

pytestmark = pytest.mark.browser


_login = browser_login


def test_lead_reads_the_evidence_signs_off_and_readiness_changes(page, items, responder, lead, lead2):
    backups = items["backups"]
    verification_record(item=backups, outcome="passing", summary="Retention 7 days; latest automated snapshot 3.0 h old",
                        evidence={"backup_retention_days": 7, "latest_snapshot_age_hours": 3.0}, triggered_by="system:checklist",
                        environment_name="sandbox")
    item_mark_ready(item=backups, actor=responder)
    item_sign_off(item=backups, actor=lead2)

    _login(page, lead)
    page.wait_for_selector("[data-testid=panel-readiness]")
    assert page.locator("[data-testid=panel-readiness]").inner_text() == "0%"

    page.goto("/checklist/")
    page.click("text=Database backups automated")
    page.wait_for_selector("[data-testid=automated]")
    automated = page.locator("[data-testid=automated]").inner_text()
    assert "Retention 7 days" in automated and "backup_retention_days" in automated
    assert "1 of 2 required" in page.locator("[data-testid=signature-count]").inner_text()

    page.on("dialog", lambda d: d.accept())
    page.click("[data-testid=sign-off-button]")
    page.wait_for_selector("text=Signed off: the item is complete.")
    assert page.locator("[data-testid=status-backups]").first.inner_text().strip() == "signed off"
    assert ChecklistItem.objects.get(slug="backups").status == ItemStatus.SIGNED_OFF

    page.goto("/")
    page.wait_for_selector("[data-testid=panel-readiness]")
    assert page.locator("[data-testid=panel-readiness]").inner_text() == "8%"


def test_responder_sees_no_sign_off_button(page, items, responder):
    item_mark_ready(item=items["load-testing"], actor=responder)
    _login(page, responder)
    page.goto("/checklist/load-testing/")
    page.wait_for_selector("[data-testid=signature-count]")
    assert page.locator("[data-testid=sign-off-button]").count() == 0
    assert page.locator("text=Revoke").count() == 0
