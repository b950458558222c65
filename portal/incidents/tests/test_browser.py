"""A responder works an incident from the dashboard to resolution; a viewer only reads."""

import pytest

from portal.incidents import ingest
from portal.incidents.models import Incident
from portal.incidents.seed import seed
from portal.plan.loader import load_plan

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, user):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.raw_password)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('On-call dashboard')")


def make_incident():
    seed(load_plan(), reset=False)
    alert = ingest.alert_ingest_internal(source="health", fingerprint="api-5xx", name="HighErrorRate", severity="critical",
                                           firing=True, summary="5xx above 5% on api", labels={"service": "api"})
    return alert.incident


def test_responder_acknowledges_notes_and_resolves_from_the_dashboard(page, responder):
    inc = make_incident()
    login(page, responder)
    link = page.locator("#panel-incidents-panel a", has_text="HighErrorRate")
    link.wait_for()
    link.click()
    page.wait_for_selector("#incident-status:has-text('triggered')")
    assert page.locator("#incident-runbook a[href='/runbooks/high-error-rate/']").count() == 1
    page.click("#ack-button")
    page.wait_for_selector("#incident-status:has-text('acknowledged')")
    page.fill("#note-text", "Rolled back to **blue**; error rate falling")
    page.click("#note-form button[type=submit]")
    page.wait_for_selector("#incident-timeline .note strong:has-text('blue')")
    page.fill("#resolve-form input[name=reason]", "rollback fixed it")
    page.once("dialog", lambda d: d.accept())
    page.click("#resolve-button")
    page.wait_for_selector("#incident-status:has-text('resolved')")
    inc.refresh_from_db()
    assert inc.status == "resolved" and inc.acknowledged_by == responder.username and inc.resolve_reason == "rollback fixed it"
    kinds = list(inc.timeline.values_list("kind", flat=True))
    assert {"acknowledged", "note", "resolved"} <= set(kinds)


def test_viewer_sees_no_buttons_and_is_refused(page, viewer):
    inc = make_incident()
    login(page, viewer)
    page.goto(inc.get_absolute_url())
    page.wait_for_selector("#incident-status:has-text('triggered')")
    assert page.locator("#incident-actions").count() == 0
    assert page.locator("#note-form").count() == 0
    assert page.locator("text=Start runbook").count() == 0
    # Posting anyway (with a valid CSRF token from the page) is refused.
    status = page.evaluate(
        """async (url) => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch(url, {method: 'POST', headers: {'X-CSRFToken': token}, credentials: 'same-origin'});
            return r.status;
        }""",
        f"{inc.get_absolute_url()}acknowledge/",
    )
    assert status == 403
    assert Incident.objects.get(pk=inc.pk).status == "triggered"


def test_responder_acknowledges_a_storm_at_once_from_the_list(page, responder):
    incidents = [ingest.alert_ingest_internal(source="health", fingerprint=f"b-{i}", name=f"Storm{i}", severity="warning",
                                              firing=True, summary="storm", labels={"service": f"s{i}"}).incident
                 for i in range(5)]
    login(page, responder)
    page.goto("/incidents/")
    page.wait_for_selector("#bulk-all")
    page.check("#bulk-all")
    page.wait_for_selector("#bulk-count:has-text('5 selected')")
    page.once("dialog", lambda d: d.accept())
    page.click("#bulk-acknowledge")
    page.wait_for_selector(".msg:has-text('Acknowledged 5 of 5 incidents')")
    assert Incident.objects.filter(pk__in=[i.pk for i in incidents], status="acknowledged").count() == 5
