"""Two responders at once, on PostgreSQL: one outcome per step, one run per incident and runbook."""

import threading

import pytest
from django.db import connection

from runbooks import services
from runbooks.models import Runbook, RunbookRun, StepOutcome

pytestmark = pytest.mark.postgres


def _race(n, func):
    barrier = threading.Barrier(n)
    results, errors = [], []

    def worker(i):
        try:
            barrier.wait()
            results.append(func(i))
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors


@pytest.mark.django_db(transaction=True)
def test_two_responders_mark_the_same_step_one_wins(require_postgres, responder, responder2, fake_checks):
    from runbooks.loader import sync_library

    sync_library()
    run = services.run_start(runbook=Runbook.objects.get(slug="high-error-rate"), actor=responder)
    people = [responder, responder2]
    results, errors = _race(2, lambda i: services.step_record(
        run=run, step_id="dashboard", status=("done", "failed")[i], note=f"by {people[i].username}", actor=people[i]))
    assert StepOutcome.objects.filter(run=run).count() == 1
    assert len(results) == 1 and len(errors) == 1
    assert isinstance(errors[0], services.Conflict) and "already marked" in errors[0].detail


@pytest.mark.django_db(transaction=True)
def test_two_starts_from_one_incident_make_one_run(require_postgres, responder, responder2, make_incident, fake_checks):
    from runbooks.loader import sync_library

    sync_library()
    incident = make_incident()
    rb = Runbook.objects.get(slug="high-error-rate")
    people = [responder, responder2]
    results, errors = _race(2, lambda i: services.run_start(runbook=rb, incident=incident, actor=people[i]))
    assert not errors
    assert RunbookRun.objects.filter(incident=incident).count() == 1
    assert results[0] == results[1]


@pytest.mark.django_db(transaction=True)
def test_double_click_on_an_action_runs_it_once(require_postgres, responder, fake_checks, monkeypatch):
    import dataclasses
    import time

    from runbooks import actions
    from runbooks.loader import sync_library

    calls = []

    def slow_rollback(*, run, step, actor):
        calls.append(1)
        time.sleep(0.3)
        return {"words": "Rollback to blue requested."}

    monkeypatch.setitem(actions.ACTIONS, "rollback", dataclasses.replace(actions.ACTIONS["rollback"], func=slow_rollback))
    sync_library()
    run = services.run_start(runbook=Runbook.objects.get(slug="high-error-rate"), actor=responder)
    for step in ("dashboard", "deployments", "external"):
        services.step_record(run=run, step_id=step, status="done", actor=responder)
    services.step_record(run=run, step_id="cause", status="done", answer="bad-deployment", actor=responder)
    results, errors = _race(2, lambda i: services.step_action_take(run=run, step_id="rollback", actor=responder))
    assert calls == [1]
    assert StepOutcome.objects.filter(run=run, step_id="rollback").count() == 1
    assert len(results) + len(errors) == 2
    assert all(isinstance(e, services.Conflict) for e in errors)
