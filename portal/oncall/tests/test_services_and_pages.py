"""Services (permissions, validation, audit), pages, the API, the calendar feeds and the command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from icalendar import Calendar

from portal.audit.models import AuditEvent
from portal.errors import Conflict, Forbidden, Invalid
from portal.oncall import delivery, selectors, services
from portal.oncall.models import ContactMethod, Override, Schedule, TestPage
from portal.oncall.schedule import final_schedule, merge_segments
from tests.plugins.aws import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def schedule(lead, responder, responder2):
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return services.schedule_create(slug="primary", name="Primary", time_zone="Europe/Berlin", actor=lead, layers=[
        {"members": [responder2.username, lead.username], "shift_hours": 12, "starts_at": start}])


def test_schedule_create_is_for_leads_validated_and_audited(lead, responder):
    start = datetime(2027, 3, 1, 8, tzinfo=UTC)
    with pytest.raises(Forbidden):
        services.schedule_create(slug="x", name="X", layers=[{"members": [responder.username], "shift_hours": 24, "starts_at": start}], actor=responder)
    with pytest.raises(Invalid, match="no members"):
        services.schedule_create(slug="x", name="X", layers=[{"members": [], "shift_hours": 24, "starts_at": start}], actor=lead)
    with pytest.raises(Invalid, match="zero|at least one hour"):
        services.schedule_create(slug="x", name="X", layers=[{"members": [responder.username], "shift_hours": 0, "starts_at": start}], actor=lead)
    with pytest.raises(Invalid, match="time zone"):
        services.schedule_create(slug="x", name="X", time_zone="Mars/Olympus", layers=[{"members": [responder.username], "shift_hours": 24, "starts_at": start}], actor=lead)
    assert not Schedule.objects.exists()
    s = services.schedule_create(slug="x", name="X", layers=[{"members": [responder.username], "shift_hours": 168, "starts_at": start}], actor=lead)
    layer = s.layers.get()
    assert (layer.frequency, layer.interval, layer.shift_hours) == ("weekly", 1, 168)
    event = AuditEvent.objects.get(verb="oncall.schedule.create")
    assert event.actor == lead and event.after["layers"][0]["members"] == [responder.username]
    with pytest.raises(Conflict):
        services.schedule_create(slug="x", name="X", layers=[{"members": [responder.username], "shift_hours": 24, "starts_at": start}], actor=lead)


def test_take_the_pager_twice_in_a_minute_makes_one_override(schedule, responder, viewer):
    # Either side of a minute boundary: a double click is one take wherever the clock stands.
    now = timezone.now().replace(second=58, microsecond=0) + timedelta(minutes=1)
    first, created = services.pager_take(schedule=schedule, hours=4, actor=responder, now=now)
    again, created_again = services.pager_take(schedule=schedule, hours=4, actor=responder, now=now + timedelta(seconds=5))
    assert created and not created_again and again.pk == first.pk
    assert Override.objects.count() == 1
    assert AuditEvent.objects.filter(verb="oncall.override.create").count() == 1
    assert selectors.schedule_summary(schedule, now + timedelta(seconds=10)).now.user == responder
    with pytest.raises(Forbidden):
        services.pager_take(schedule=schedule, hours=4, actor=viewer)


def test_overrides_for_others_are_for_leads_and_newest_wins(schedule, responder, responder2, lead):
    now = timezone.now()
    with pytest.raises(Forbidden):
        services.override_create(schedule=schedule, user=responder2, starts_at=now, ends_at=now + timedelta(hours=2), actor=responder)
    older, _ = services.override_create(schedule=schedule, user=responder2, starts_at=now, ends_at=now + timedelta(hours=3), actor=lead)
    newer, _ = services.override_create(schedule=schedule, user=responder, starts_at=now, ends_at=now + timedelta(hours=1), actor=lead)
    assert selectors.schedule_summary(schedule, now + timedelta(minutes=1)).now.user == responder
    assert selectors.schedule_summary(schedule, now + timedelta(minutes=90)).now.user == responder2
    with pytest.raises(Forbidden):
        services.override_delete(override=older, actor=responder)  # not theirs
    services.override_delete(override=newer, actor=responder)  # their own
    assert AuditEvent.objects.filter(verb="oncall.override.delete").count() == 1


def test_coverage_gaps_found(lead, responder):
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    s = services.schedule_create(slug="office", name="Office", actor=lead, layers=[{
        "members": [responder.username], "shift_hours": 24, "starts_at": now - timedelta(days=1),
        "restrictions": {"weekdays": [0, 1, 2, 3, 4], "start": "09:00", "end": "17:00"}}])
    summary = selectors.schedule_summary(s, now)
    assert summary.gaps and 14 * 24 - summary.gap_hours == pytest.approx(10 * 8, abs=8)


def test_contact_method_verification_with_a_code(responder, admin_user, viewer, monkeypatch):
    sent = []
    monkeypatch.setitem(delivery.TRANSPORTS, "sms", lambda m: sent.append(m) or delivery.DeliveryResult(True, "ok"))
    with pytest.raises(Invalid, match="E.164"):
        services.contact_method_add(user=responder, kind="sms", value="0151 1234", actor=responder)
    with pytest.raises(Invalid, match="Slack"):
        services.contact_method_add(user=responder, kind="slack", value="oscar", actor=responder)
    with pytest.raises(Forbidden):
        services.contact_method_add(user=responder, kind="sms", value="+4915112345678", actor=viewer)
    method = services.contact_method_add(user=responder, kind="sms", value="+49 151 1234 5678", actor=responder)
    assert method.value == "+4915112345678" and not method.is_verified
    code = sent[0].body.split("code is ")[1][:6]
    assert code not in ContactMethod.objects.get(pk=method.pk).code_hash
    with pytest.raises(Invalid, match="wrong code"):
        services.contact_method_verify(method=method, code="000000" if code != "000000" else "111111", actor=responder)
    assert ContactMethod.objects.get(pk=method.pk).code_attempts == 1  # the wrong try counted despite the refusal
    assert services.contact_method_verify(method=method, code=code, actor=responder).is_verified
    # admins manage anyone's
    other = services.contact_method_add(user=responder, kind="slack", value="U024BE7LH", actor=admin_user, verified=True)
    assert other.is_verified
    with pytest.raises(Forbidden):
        services.contact_method_add(user=responder, kind="voice", value="+4915112345678", actor=responder, verified=True)


def test_test_page_is_recorded_even_for_an_unverified_method(responder, settings):
    # A port nothing listens on (not the sandbox's default, which a running `make run` may hold).
    settings.TWILIO_API_BASE = f"http://127.0.0.1:{free_port()}"
    method = services.contact_method_add(user=responder, kind="email", value="oscar@example.test", actor=responder)
    assert "verification code" in mail.outbox[0].body
    page = services.test_page_send(method=method, actor=responder)
    assert page.result == "sent" and mail.outbox[-1].subject == "FTW Ops: test page"
    sms = services.contact_method_add(user=responder, kind="sms", value="+4915112345678", actor=responder)
    failed = services.test_page_send(method=sms, actor=responder)
    assert failed.result == "failed" and "ConnectionError" in failed.detail  # no Twilio answers in this test: recorded as failed
    assert TestPage.objects.filter(user=responder).count() == 2
    with pytest.raises(Conflict):
        services.test_page_send(method=method, actor=responder)


def test_pages_dashboard_panel_and_take_form(client, schedule, responder):
    client.force_login(responder)
    assert "oncall-panel" in client.get("/").content.decode()
    body = client.get("/oncall/panel/").content.decode()
    assert 'data-testid="oncall-now-primary"' in body and "you-are-on-call" not in body
    r = client.post("/oncall/take/", {"schedule": "primary", "hours": "2", "next": "/"})
    assert r.status_code == 302 and r["Location"] == "/"
    client.post("/oncall/take/", {"schedule": "primary", "hours": "2", "next": "https://evil.example/"})
    assert Override.objects.count() == 1  # the same minute: the first override stands
    body = client.get("/oncall/panel/").content.decode()
    assert "You are on call for Primary until" in body
    page = client.get("/oncall/").content.decode()
    assert f'data-testid="now-primary">{responder.username}<' in page and "<svg" in page
    assert client.get("/oncall/me/").status_code == 200


def test_me_page_add_verify_and_rules(client, responder):
    client.force_login(responder)
    client.post("/oncall/me/contact-methods/", {"kind": "email", "value": "oscar@example.test"})
    method = ContactMethod.objects.get(user=responder)
    code = mail.outbox[0].body.split("code is ")[1][:6]
    client.post(f"/oncall/me/contact-methods/{method.public_id}/verify/", {"code": code})
    assert ContactMethod.objects.get(pk=method.pk).is_verified
    client.post("/oncall/me/rules/", {"severity": "critical", "kind": "sms", "delay_minutes": "0"})
    client.post("/oncall/me/rules/", {"severity": "critical", "kind": "voice", "delay_minutes": "3"})
    body = client.get("/oncall/me/").content.decode()
    assert "3 min unacknowledged" in body and "verified" in body


def test_schedule_feed_parses_and_matches_the_computed_shifts(client, schedule, lead):
    assert client.get("/oncall/primary.ics?token=nothing").status_code == 404
    raw = services.schedule_feed_token_reset(schedule=schedule, actor=lead)
    r = client.get(f"/oncall/primary.ics?token={raw}")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/calendar")
    events = [(e.decoded("dtstart"), e.decoded("dtend"), str(e.get("summary"))) for e in Calendar.from_ical(r.content).walk("VEVENT")]
    from portal.oncall.calendar import window

    start, end = window()
    expected = merge_segments(final_schedule(selectors.schedule_spec(schedule, start, end), start, end), by_source=False)
    assert [(a, b) for a, b, _ in events] == [(s.start, s.end) for s in expected]
    assert all(f"On call: {s.user.username} (Primary)" == t for s, (_, _, t) in zip(expected, events, strict=True))
    new = services.schedule_feed_token_reset(schedule=schedule, actor=lead)
    assert client.get(f"/oncall/primary.ics?token={raw}").status_code == 404  # the old link stops working
    assert client.get(f"/oncall/primary.ics?token={new}").status_code == 200
    assert AuditEvent.objects.filter(verb="oncall.schedule.feed_token_reset").count() == 2


def test_personal_feed(client, schedule, lead, responder2):
    raw = services.personal_feed_token_reset(user=lead, actor=lead)
    cal = Calendar.from_ical(client.get(f"/oncall/me.ics?token={raw}").content)
    summaries = {str(e.get("summary")) for e in cal.walk("VEVENT")}
    assert summaries == {f"On call: {lead.username} (Primary)"}


def test_api_oncall_schedules_and_overrides(api_client, make_token, schedule, responder, responder2, lead):
    from portal.accounts.services import api_token_create

    read = make_token("read")
    body = api_client.get("/api/v1/oncall", token=read).json()
    assert body[0]["schedule"] == "primary" and body[0]["now"]["user"] == responder2.username
    assert body[0]["next"]["user"] == lead.username and body[0]["now"]["until"] == body[0]["next"]["from"]
    listed = api_client.get("/api/v1/schedules", token=read).json()
    assert listed[0]["layers"][0]["members"] == [responder2.username, lead.username] and listed[0]["layers"][0]["shift_hours"] == 12
    lead_token = make_token("lead")
    r = api_client.post("/api/v1/schedules", {"slug": "db", "name": "Database", "time_zone": "UTC", "layers": [
        {"members": [responder.username], "shift_hours": 0, "starts_at": "2027-03-01T09:00:00+01:00"}]}, token=lead_token)
    assert r.status_code == 422 and r.json()["error"] == "invalid"
    r = api_client.post("/api/v1/schedules", {"slug": "db", "name": "Database", "time_zone": "UTC", "layers": [
        {"members": [responder.username], "shift_hours": 24, "starts_at": "2027-03-01T09:00:00+01:00"}]}, token=lead_token)
    assert r.status_code == 201 and r.json()["layers"][0]["members"] == [responder.username]
    # An actions token acts for its own person only.
    token, own_token = api_token_create(name="oscar-cli", scope="actions", actor=responder)
    assert token.created_by == responder
    start, end = timezone.now(), timezone.now() + timedelta(hours=2)
    iso = {"starts_at": start.isoformat(), "ends_at": end.isoformat()}
    assert api_client.post("/api/v1/schedules/primary/overrides", {"user": responder2.username, **iso}, token=own_token).status_code == 403
    r = api_client.post("/api/v1/schedules/primary/overrides", {"user": responder.username, **iso}, token=own_token)
    assert r.status_code == 201, r.content
    now = {row["schedule"]: row["now"] for row in api_client.get("/api/v1/oncall", token=read).json()}
    assert now["primary"]["user"] == responder.username
    r = api_client.c.delete(f"/api/v1/schedules/primary/overrides/{r.json()['id']}", headers={"Authorization": f"Bearer {own_token}"})
    assert r.status_code == 204 and not Override.objects.exists()


def test_contact_method_command(responder):
    call_command("contact_method", "add", responder.username, "sms", "+4915112345678", "--verified")
    method = ContactMethod.objects.get(user=responder)
    assert method.is_verified and AuditEvent.objects.get(verb="oncall.contact_method.add").actor_label == "system:contact_method"


def test_demo_rotation_seed(responder, responder2, lead):
    from portal.oncall.seed import seed_demo_rotation

    names = [responder.username, responder2.username, lead.username]
    seeded = seed_demo_rotation(names)
    assert [s.slug for s in seeded] == ["primary", "secondary"]
    seed_demo_rotation(names)  # idempotent
    assert Schedule.objects.count() == 2 and ContactMethod.objects.filter(kind="email").count() == 3
    assert all(s.now is not None for s in selectors.oncall_summaries())
