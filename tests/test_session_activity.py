"""The idle timeout counts what a person does: background refreshes neither renew nor write the session."""

from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session

from portal.middleware import SessionLifetimeMiddleware

SEEN = SessionLifetimeMiddleware.SEEN_KEY
BACKGROUND = {"HTTP_X_PORTAL_BACKGROUND": "1"}


def _row(client) -> Session:
    return Session.objects.get(session_key=client.session.session_key)


def _seen(client) -> float:
    return float(_row(client).get_decoded()[SEEN])


def _age_session(client, seconds: float) -> None:
    session = client.session
    session[SEEN] = session[SEEN] - seconds
    session.save()


def test_background_poll_leaves_last_activity_and_the_row_alone(client, responder):
    client.force_login(responder)
    assert client.get("/").status_code == 200
    _age_session(client, 60)
    before = _row(client)
    for _ in range(3):
        assert client.get("/health/slo-panel/", **BACKGROUND).status_code == 200
    after = _row(client)
    assert after.session_data == before.session_data  # nothing was written
    assert after.expire_date == before.expire_date   # and the expiry did not move


def test_a_person_request_updates_last_activity(client, responder):
    client.force_login(responder)
    assert client.get("/").status_code == 200
    _age_session(client, 60)
    stale = _seen(client)
    old_expiry = _row(client).expire_date
    assert client.get("/incidents/").status_code == 200
    assert _seen(client) > stale + 59
    assert _row(client).expire_date > old_expiry


def test_idle_session_ends_although_panels_kept_polling(client, responder, settings):
    client.force_login(responder)
    assert client.get("/").status_code == 200
    _age_session(client, settings.SESSION_IDLE_SECONDS + 5)
    r = client.get("/health/slo-panel/", **BACKGROUND)
    assert r.status_code == 302 and "expired=1" in r["Location"]
    assert client.get("/").status_code == 302  # the session is gone for the person too


@pytest.mark.browser
def test_dashboard_polls_are_background_and_a_click_is_activity(page, live_server, responder):
    from conftest import browser_login

    polls: list[dict] = []
    page.on("request", lambda req: polls.append(req.headers) if req.headers.get("hx-request") == "true" else None)
    browser_login(page, responder)
    page.goto("/")
    page.wait_for_selector("h1:has-text('On-call dashboard')")
    session_key = next(c["value"] for c in page.context.cookies() if c["name"] == "sessionid")

    def seen() -> float:
        return float(Session.objects.get(session_key=session_key).get_decoded()[SEEN])

    landed = seen()
    # The dashboard's panels refresh themselves; wait for a round of polls to be answered.
    for _ in range(2):  # two answered polls after the landing
        with page.expect_response(lambda r: r.request.headers.get("hx-request") == "true", timeout=30000):
            pass
    assert polls and all(h.get("x-portal-background") == "1" for h in polls)
    assert seen() == landed
    page.click("nav.nav a:has-text('Incidents')")
    page.wait_for_url("**/incidents/")
    assert seen() > landed
