"""Events reach only the listeners that act on their kind: an alert storm sends nothing to `actions`."""

import pytest

from portal import events, tasking
from portal.cloud.models import Environment
from portal.incidents.ingest import alert_ingest_internal


@pytest.fixture
def sent(monkeypatch):
    names: list[str] = []
    monkeypatch.setattr(tasking, "send_now", lambda name, args=(), kwargs=None: names.append(name))
    return names


def test_opening_an_incident_wakes_webhooks_and_rollouts_not_slack_or_the_checklist(db, sent, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        alert_ingest_internal(source="health", fingerprint="api-down", name="ApiDown", severity="critical",
                              firing=True, summary="api down", labels={}, environment=Environment.objects.get_or_create(name="production")[0])
    assert "portal.webhooks.tasks.fanout" in sent
    assert "deployments.tasks.deployments_on_event" in sent
    assert "portal.incidents.tasks.escalate_incident" in sent
    assert "portal.inbound.slack_tasks.refresh" not in sent
    assert "portal.checklist.tasks.checklist_on_event" not in sent


def test_a_rollout_hears_only_of_critical_incidents_on_a_named_environment():
    name = "deployments.tasks.deployments_on_event"
    assert name in events.subscribers("incident.opened", {"severity": "critical", "environment": "production"})
    assert name not in events.subscribers("incident.opened", {"severity": "warning", "environment": "production"})
    assert name not in events.subscribers("incident.opened", {"severity": "critical", "environment": None})


@pytest.mark.parametrize("kind, wanted, unwanted", [
    ("incident.acknowledged", {"portal.webhooks.tasks.fanout", "portal.inbound.slack_tasks.refresh"},
     {"deployments.tasks.deployments_on_event", "portal.checklist.tasks.checklist_on_event"}),
    ("rollback.finished", {"portal.inbound.slack_tasks.refresh"}, {"deployments.tasks.deployments_on_event"}),
    ("runbook.run_completed", {"portal.checklist.tasks.checklist_on_event", "portal.webhooks.tasks.fanout"},
     {"portal.inbound.slack_tasks.refresh", "deployments.tasks.deployments_on_event"}),
])
def test_each_kind_goes_to_its_listeners(db, sent, django_capture_on_commit_callbacks, kind, wanted, unwanted):
    with django_capture_on_commit_callbacks(execute=True):
        events.emit(kind, {"incident": "x"})
    assert wanted <= set(sent) and not (unwanted & set(sent)), sent


def test_every_listener_is_a_registered_task_and_every_kind_has_one():
    from portal.celery import app

    app.loader.import_default_modules()
    assert set(events.EVENT_SUBSCRIBERS) <= set(app.tasks)
    assert all(events.subscribers(kind) for kind in events.KINDS)
    with pytest.raises(ValueError):
        events.emit("incident.exploded", {})
