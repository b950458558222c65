"""The incident page at 3 a.m., in Chromium at desktop and phone sizes: the signal as a picture, the
likely cause ranked, the safe action one tap away (a responder rolls back from the page, the listener
reads back blue 100 / green 0), the keyboard, and a viewer who can only watch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from conftest import browser_login
from deployments import cloudops, services
from deployments.models import Rollback
from deployments.tests.conftest import FakeMetrics, clock, drive, fast, strategies  # noqa: F401 - its fixtures
from portal.audit.models import AuditEvent
from portal.health import thresholds
from portal.incidents import ingest, signal
from portal.incidents.models import Incident

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


class SignalMetrics(FakeMetrics):
    """The deployments tests' scripted numbers, plus the last half hour as a series per colour."""

    def series(self, metric, colour, minutes, period_seconds):
        if metric != "error_rate" or not self.request_count(colour, minutes):
            return []
        now = timezone.now()
        return [(now - timedelta(minutes=m), self.values[colour]["error_rate"] * (1.0 if m < 5 else 0.1))
                for m in range(30, -1, -1)]


@pytest.fixture
def green_on_fire(transactional_db, aws_platform, strategies, fast, clock, responder, monkeypatch):  # noqa: F811
    """A freshly deployed green (completed, 100 % of traffic) at 10 % errors and the incident it raised."""
    env = aws_platform
    fake = SignalMetrics(env=env)
    monkeypatch.setattr(cloudops, "metrics", lambda e: fake)
    monkeypatch.setattr(signal, "source_for", lambda incident, fired=None: fake)
    dep = services.deployment_create(environment=env, version="2026.12.01-7", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    assert drive(dep, clock) == "completed"
    assert cloudops.read_weights(env) == {"blue": 0, "green": 100}
    # The driver's clock jumped over the holds and ran ahead of the wall clock: the rollout happened
    # before the incident opens, so move its records back by as much (else they lie in the future).
    ahead = clock.now - timezone.now() + timedelta(seconds=5)
    if ahead > timedelta(0):
        from django.db.models import F

        from deployments.models import Analysis, Deployment, DeploymentEvent
        DeploymentEvent.objects.filter(deployment=dep).update(at=F("at") - ahead)
        Analysis.objects.filter(deployment=dep).update(at=F("at") - ahead)
        Deployment.objects.filter(pk=dep.pk).update(started_at=F("started_at") - ahead, switched_at=F("switched_at") - ahead,
                                                    finished_at=F("finished_at") - ahead)
    fake.values["green"]["error_rate"] = 10.0
    alert = ingest.alert_ingest_internal(
        source="health", fingerprint="sandbox-green-5xx", name="HighErrorRate", severity="critical", firing=True,
        summary="green 5xx at 10 %", labels={"environment": env.name, "metric": "error_rate", "colour": "green", "service": "api"},
        environment=env)
    dep.refresh_from_db()
    return env, dep, alert.incident


def _chart_ready(page):
    chart = page.locator("[data-testid=signal-chart][data-rendered='1']")
    chart.wait_for()
    return chart


def _accept_dialogs(page) -> list[str]:
    questions: list[str] = []

    def accept(dialog):
        questions.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return questions


def test_desktop_chart_cause_acknowledge_key_and_rollback_from_the_page(page, green_on_fire, responder):
    env, dep, incident = green_on_fire
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size(DESKTOP)
    browser_login(page, responder)
    page.goto(incident.get_absolute_url())
    chart = _chart_ready(page)
    critical = thresholds.threshold("error_rate", "critical")
    # The picture: green and blue over the hour, the threshold line, the opening and the deployment marked.
    assert f"critical:{critical.value:g}" in chart.get_attribute("data-thresholds").split()
    assert str(dep.public_id) in chart.get_attribute("data-deployment-marks").split()
    assert int(chart.get_attribute("data-weight-marks")) >= 2  # each weight step of the canary
    assert chart.get_attribute("data-opened") == str(int(incident.opened_at.timestamp()))
    assert "green" in chart.get_attribute("data-series").split() and int(chart.get_attribute("data-points")) > 10
    assert page.locator("#incident-chart canvas").count() == 1
    # The deployment that put green live is the likely cause, first, with its evidence and why.
    first = page.locator("#cause-1")
    assert first.get_attribute("data-kind") == "deployment" and first.get_attribute("data-deployment") == str(dep.public_id)
    assert "green carries the errors" in first.locator("[data-testid=why]").inner_text()
    assert "Weights now: blue 0 / green 100" in first.inner_text()
    assert page.locator("[data-testid=top-cause]").inner_text() == "Deployment 2026.12.01-7 to green"
    # Only the deployments that matter: the one live on green (there is no earlier one here).
    assert page.locator("#incident-deployments li").count() == 1
    assert "live on green" in page.locator("#incident-deployments").inner_text()
    # The change feed has the deployment and its weight changes.
    kinds = page.locator("[data-testid=change-feed] li").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert "deployment" in kinds and "weights" in kinds
    # What is broken, why and what to press are on the first screen of a laptop.
    page.screenshot(path=str(ARTIFACTS / "incident-desktop.png"), full_page=False)
    for sel in ("#incident-status", "#incident-chart", "#cause-1 .inc-cause-head", "#cause-1 [data-testid=why]",
                "[data-testid=rollback-button]", "#ack-button"):
        box = page.locator(sel).first.bounding_box()
        assert box is not None and box["y"] + box["height"] <= DESKTOP["height"], sel

    # ? shows the keys; Escape hides them; a acknowledges.
    page.keyboard.press("?")
    page.locator("[data-testid=keys-overlay]").wait_for(state="visible")
    page.keyboard.press("Escape")
    page.locator("[data-testid=keys-overlay]").wait_for(state="hidden")
    page.keyboard.press("a")
    page.wait_for_selector("#incident-status:has-text('acknowledged')")
    assert page.locator("[data-testid=acked-by]").inner_text() == responder.username
    assert Incident.objects.get(pk=incident.pk).acknowledged_by == responder.username

    # One tap: roll back this deployment, confirmed, and the listener read back shown in place.
    questions = _accept_dialogs(page)
    page.locator("#incident-action [data-testid=rollback-button]").click()
    page.wait_for_selector("#incident-action [data-testid=rollback-status][data-state=completed]", timeout=20000)
    assert questions and "back to blue" in questions[0] and "2026.12.01-7" in questions[0]
    assert page.locator("#incident-action [data-testid=rollback-weights]").inner_text() == "blue 100 / green 0"
    assert "Rolling back to blue" in page.locator("[data-testid=action-result]").inner_text()
    assert page.url.endswith(incident.get_absolute_url())  # never left the incident page
    assert cloudops.read_weights(env) == {"blue": 100, "green": 0}
    assert Rollback.objects.get().requested_by == responder
    assert AuditEvent.objects.filter(verb="environment.rollback", actor=responder).count() == 1
    # The rollback is on the incident's timeline too (who, to which colour).
    assert any("blue" in t and responder.username in t for t in incident.timeline.values_list("text", flat=True))


def test_phone_essentials_first_and_b_rolls_back_after_confirming(page, green_on_fire, responder):
    env, dep, incident = green_on_fire
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_viewport_size(PHONE)
    browser_login(page, responder)
    page.goto(incident.get_absolute_url())
    _chart_ready(page)
    # Status, what fired, the picture, the action, acknowledge: in that order, one column.
    ys = [page.locator(sel).first.bounding_box()["y"] for sel in
          ("#incident-status", "#incident-signal", "#incident-chart", "[data-testid=rollback-button]", "#ack-button", "#cause-1")]
    assert ys == sorted(ys), ys
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"]  # nothing wider than the phone
    assert page.locator("#ack-button").bounding_box()["y"] < 2 * PHONE["height"]  # one short scroll
    page.screenshot(path=str(ARTIFACTS / "incident-phone.png"), full_page=True)
    # b asks first; declined, nothing happens.
    answers = iter([False, True])
    questions: list[str] = []

    def answer(dialog):
        questions.append(dialog.message)
        if next(answers):
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", answer)
    page.keyboard.press("b")
    page.wait_for_selector("#incident-action [data-testid=rollback-button]:not([disabled])")
    assert len(questions) == 1 and not Rollback.objects.exists()
    page.keyboard.press("b")
    page.wait_for_selector("#incident-action [data-testid=rollback-status][data-state=completed]", timeout=20000)
    assert len(questions) == 2 and "back to blue" in questions[1]
    assert page.locator("#incident-action [data-testid=rollback-weights]").inner_text() == "blue 100 / green 0"
    assert cloudops.read_weights(env) == {"blue": 100, "green": 0}


def test_viewer_sees_no_action_and_the_rollback_is_refused(page, green_on_fire, viewer, responder, api_client, make_token):
    env, dep, incident = green_on_fire
    page.set_viewport_size(DESKTOP)
    browser_login(page, viewer)
    page.goto(incident.get_absolute_url())
    _chart_ready(page)
    assert page.locator("#cause-1").get_attribute("data-kind") == "deployment"
    for sel in ("[data-testid=rollback-button]", "#ack-button", "#incident-actions", "form[action^='/deployments/']"):
        assert page.locator(sel).count() == 0, sel
    assert "watch but not act" in page.locator("[data-testid=no-actions]").inner_text()
    # Posting the rollback anyway (with the page's CSRF token) is refused, and so is the API.
    status = page.evaluate(
        """async (env) => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const body = new URLSearchParams({environment: env});
            const r = await fetch('/deployments/rollback/', {method: 'POST', body, headers: {'X-CSRFToken': token}, credentials: 'same-origin'});
            return r.status;
        }""", env.name)
    assert status == 403
    assert api_client.post(f"/api/v1/environments/{env.name}/rollback", {"reason": "x"}, token=make_token("read")).status_code == 403
    assert not Rollback.objects.exists() and cloudops.read_weights(env) == {"blue": 0, "green": 100}
    # Someone else acknowledges: the viewer's page says who, without a reload.
    from portal.incidents import services as incident_services

    incident_services.incident_acknowledge(incident=incident, actor=responder)
    page.wait_for_selector(f"[data-testid=acked-by]:has-text('{responder.username}')")
    assert page.locator("#incident-status").inner_text() == "acknowledged"
