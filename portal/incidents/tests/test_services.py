import pytest

from portal.incidents import ingest, services
from portal.incidents.models import Alert, AlertDelivery, Incident, TimelineEntry


def raise_db(firing=True, fingerprint="db-conn", severity="critical"):
    return ingest.alert_ingest_internal(
        source="health", fingerprint=fingerprint, name="DatabaseConnectionsHigh", severity=severity, firing=firing,
        summary="connections at 92%", labels={"service": "api"},
    )


def test_internal_alert_opens_one_incident_and_resolves_it(db, responder):
    alert = raise_db()
    raise_db()  # a repeat changes nothing
    assert Alert.objects.count() == 1 and Incident.objects.count() == 1
    inc = alert.incident
    assert inc.status == "triggered" and inc.severity == "critical" and inc.service == "api"
    assert AlertDelivery.objects.filter(source="internal", status="processed").count() == 2
    services.incident_acknowledge(incident=inc, actor=responder)
    services.incident_acknowledge(incident=inc, actor=responder)  # twice is fine
    raise_db(firing=False)
    inc.refresh_from_db()
    assert inc.status == "resolved" and inc.resolved_by == "system:internal"
    kinds = list(inc.timeline.values_list("kind", flat=True))
    assert kinds.count("acknowledged") == 1 and "alert_resolved" in kinds and kinds[-1] == "resolved"


def test_resolved_before_firing_twin_opens_nothing(db):
    raise_db(firing=False)
    assert Incident.objects.count() == 0
    assert Alert.objects.get().status == "resolved"


def test_timeline_add_and_note_markdown(db, responder):
    inc = raise_db().incident
    services.incident_timeline_add(incident=inc, kind="runbook_step", actor="system:runbooks", text="Checked pool")
    services.incident_note_add(incident=inc, actor=responder, text="**bold** <script>alert(1)</script>")
    note = inc.timeline.get(kind=TimelineEntry.Kind.NOTE)
    from portal.incidents.markdown import render_markdown

    html = render_markdown(note.text)
    assert "<strong>bold</strong>" in html and "<script>" not in html
    md = services.incident_export_markdown(inc)
    assert "## Timeline" in md and "Checked pool" in md


def test_resolve_then_acknowledge_is_refused(db, responder):
    inc = raise_db().incident
    services.incident_resolve(incident=inc, actor=responder, reason="fixed")
    with pytest.raises(services.InvalidTransition):
        services.incident_acknowledge(incident=inc, actor=responder)
    # a fresh firing within the window reopens the same incident
    raise_db(firing=False)
    raise_db()
    assert Incident.objects.count() == 1
