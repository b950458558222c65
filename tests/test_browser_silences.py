"""In the browser: a responder silences from the silences page, sees it listed and in the banner on
the dashboard, and ends it; a lead edits a grouping rule and the preview over the last seven days'
stored alerts says how many incidents it would have made instead."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from conftest import browser_login
from portal.audit.models import AuditEvent
from portal.cloud.models import Environment
from portal.incidents import grouping, ingest
from portal.incidents.models import AlertEvent, GroupingRule, Silence

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("growth_phases")]  # the dashboard's phase panel reads them


def test_a_responder_creates_a_silence_sees_it_listed_and_in_the_banner_and_ends_it(page, responder):
    browser_login(page, responder)
    banner = page.locator("[data-testid=silence-banner]")
    expect(banner).to_have_count(0)

    page.goto("/incidents/silences/")
    page.wait_for_selector("h1:has-text('Silences and maintenance windows')")
    expect(page.locator("#silences-table")).to_contain_text("No silences.")
    form = page.locator("form[action='/incidents/silences/new/']")
    form.locator("input[name=matchers]").fill("environment=staging, metric=cpu")
    form.locator("input[name=minutes]").fill("45")
    form.locator("input[name=reason]").fill("resizing the staging fleet")
    form.locator("button[type=submit]").click()

    row = page.locator("[data-testid=silence-row]")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("environment=staging")
    expect(row).to_contain_text("metric=cpu")
    expect(row).to_contain_text("resizing the staging fleet")
    expect(row).to_contain_text(responder.username)
    silence = Silence.objects.get()
    assert silence.matchers == {"environment": "staging", "metric": "cpu"} and silence.created_by == responder.username
    assert dt.timedelta(minutes=44) < silence.ends_at - silence.starts_at <= dt.timedelta(minutes=45)
    assert AuditEvent.objects.filter(verb="silence.create", actor=responder).count() == 1

    page.goto("/")
    page.wait_for_selector("h1:has-text('On-call dashboard')")
    expect(banner).to_be_visible()  # loaded by htmx on every page, like the automation switch
    expect(banner).to_contain_text("1 silence active")
    expect(banner.locator("li")).to_be_hidden()  # one line on every page; the matchers one tap away
    banner.locator("summary").click()
    expect(banner.locator("li")).to_be_visible()
    # PostgreSQL's jsonb keeps its own key order (shorter keys first): each matcher, in either order.
    expect(banner).to_contain_text("environment=staging")
    expect(banner).to_contain_text("metric=cpu")
    expect(banner).to_contain_text("resizing the staging fleet")
    banner.locator("a", has_text="See silences").click()
    page.wait_for_url("**/incidents/silences/")

    page.once("dialog", lambda d: d.accept())  # "End this silence now?"
    row.locator("button", has_text="End now").click()
    expect(row).to_have_count(0)
    expect(page.locator("#silences-table")).to_contain_text("No silences.")
    expect(page.locator("body")).to_contain_text("Silence ended.")
    silence.refresh_from_db()
    assert silence.deleted_at is not None
    assert AuditEvent.objects.filter(verb="silence.delete", actor=responder).count() == 1

    page.goto("/")
    page.wait_for_selector("h1:has-text('On-call dashboard')")
    page.wait_for_selector("#silence-banner", state="attached")  # the banner's partial has loaded (empty)
    expect(banner).to_have_count(0)


def _episode(env, at: dt.datetime) -> None:
    """One error-rate breach on `env` as its health checks report it: warning, critical, and both
    resolving, a minute apart, stored as if it happened at `at`."""
    newest = AlertEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0
    for severity, firing in (("warning", True), ("critical", True), ("critical", False), ("warning", False)):
        slug = f"{env.name}-error-rate-{severity}"
        ingest.alert_ingest_internal(
            source="health", fingerprint=f"check:{slug}", name=f"Health check failing: {slug}", severity=severity, firing=firing,
            summary="error_rate breach", labels={"check": slug, "kind": "metric_threshold", "group": "metrics", "metric": "error_rate"},
            environment=env, grouping_key=f"check:{slug}")
    for i, pk in enumerate(AlertEvent.objects.filter(id__gt=newest).order_by("id").values_list("id", flat=True)):
        AlertEvent.objects.filter(pk=pk).update(at=at + dt.timedelta(minutes=i))


def test_a_lead_edits_a_grouping_rule_and_the_preview_counts_the_last_seven_days(page, lead):
    # Transactional tests empty the tables the migrations seeded: the rule as migration 0005 seeds it.
    GroupingRule.objects.get_or_create(slug="same-condition", defaults={
        "name": "Same environment, metric and colour", "priority": 100, "labels": ["environment", "metric", "colour"],
        "optional_labels": ["colour"], "window_minutes": 30})
    env = Environment.objects.create(name="staging", alb_dimension="app/ftw-staging/abc123")
    now = timezone.now()
    for days_ago in (1, 2, 3, 4, 6):  # five breaches within the last seven days...
        _episode(env, now - dt.timedelta(days=days_ago, hours=2))
    _episode(env, now - dt.timedelta(days=9))  # ...and one before them, which the preview leaves out
    rule = GroupingRule.objects.get(slug="same-condition")
    # Today's rule: each breach's warning and critical are one incident. Grouping by severity too: two each.
    assert grouping.grouping_preview(rules=[rule]).incidents == 5

    browser_login(page, lead)
    page.goto("/incidents/grouping/")
    page.wait_for_selector("h1:has-text('Grouping rules')")
    form = page.locator("form", has=page.locator("input[name=slug][value='same-condition']"))
    expect(form.locator("input[name=labels]")).to_have_value("environment, metric, colour")
    form.locator("input[name=labels]").fill("environment, metric, severity")
    form.locator("input[name=optional_labels]").fill("")
    form.locator("button[value=preview]").click()

    preview = page.locator("[data-testid=grouping-preview]")
    expect(preview).to_be_visible()
    expect(preview).to_contain_text("Over the last 7 days this rule would have made 10 incidents instead of 5")
    expect(preview).to_contain_text("(from 2 alerts, 10 firing reports)")
    rule.refresh_from_db()
    assert rule.labels == ["environment", "metric", "colour"]  # a preview saves nothing
    assert not AuditEvent.objects.filter(verb="grouping_rule.save").exists()

    # Back to today's labels with a shorter window: the preview says the same five as before.
    form = page.locator("form", has=page.locator("input[name=slug][value='same-condition']"))
    form.locator("input[name=window_minutes]").fill("10")
    form.locator("button[value=preview]").click()
    expect(preview).to_contain_text("would have made 5 incidents instead of 5")
    form = page.locator("form", has=page.locator("input[name=slug][value='same-condition']"))
    form.locator("input[name=labels]").fill("environment, metric, severity")
    form.locator("input[name=optional_labels]").fill("")
    # Plain forms disable their buttons once submitted (static/js/portal.js): the clicked one's
    # action=save must still reach the view, or Save would only preview again.
    with page.expect_request(lambda r: r.method == "POST" and "/incidents/grouping/" in r.url) as sent:
        form.locator("button[value=save]").click()
    assert "action=save" in (sent.value.post_data or "")
    expect(page.locator("body")).to_contain_text("Grouping rule Same environment, metric and colour saved.")
    rule.refresh_from_db()
    assert rule.labels == ["environment", "metric", "severity"] and rule.optional_labels == []
    assert AuditEvent.objects.filter(verb="grouping_rule.save", actor=lead).count() == 1
