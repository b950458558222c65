"""PostgreSQL stopped under a running portal, then started again.

What must hold: a webhook never gets a 2xx for something that was not stored (it gets a 5xx, and
Alertmanager or SNS sends it again); /readyz names the database; /healthz (liveness) stays up so
the orchestrator does not restart the web processes for a database outage; and when PostgreSQL
returns, the same gunicorn, worker and beat processes carry on by themselves: webhooks are stored
and processed, people can log in and read pages, with nobody restarting anything.
"""

from __future__ import annotations

import time

import pytest
import requests

from tests.faults.stack import alertmanager_body, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(600)]


def test_webhooks_answer_5xx_while_postgres_is_down_and_the_portal_recovers_without_a_restart(make_stack, pg):
    stack = make_stack()
    hook = stack.start_alert_intake()
    alertmanager = stack.base + "/api/v1/alerts/alertmanager"

    r = hook.post(alertmanager, json=alertmanager_body("BeforeDbOutage", ["pgo-before-0"]), timeout=30)
    assert r.status_code == 200, r.text
    wait_for(lambda: stack.sql("SELECT count(*) FROM incidents_incident") == 1, timeout=60, what="the first incident")
    person = stack.login()
    assert person.get(stack.base + "/incidents/", timeout=10).status_code == 200
    pids = {key: stack.procs[key].pid for key in ("web", "worker", "beat")}
    wait_for(lambda: "Sending due task" in stack.log("beat"), timeout=60, what="beat to be scheduling")

    pg.stop()
    failing: list[float] = []
    try:
        for i in range(5):
            t = time.perf_counter()
            r = hook.post(alertmanager, json=alertmanager_body(f"DuringDbOutage{i}", [f"pgo-out-{i}"]), timeout=30)
            elapsed = time.perf_counter() - t
            assert r.status_code >= 500, f"webhook answered {r.status_code} while nothing could be stored: {r.text[:300]}"
            assert elapsed < 10, f"webhook took {elapsed:.1f} s to fail with the database down"
            failing.append(elapsed)
        ready = requests.get(stack.base + "/readyz", timeout=15)
        assert ready.status_code == 503 and ready.json()["database"] == "down", ready.text
        assert requests.get(stack.base + "/healthz", timeout=10).status_code == 200
        page = person.get(stack.base + "/incidents/", timeout=15)
        assert page.status_code >= 500  # an error page, fast, rather than a hang
        # A beat started while the database is down (a host reboot) waits for it instead of exiting.
        stack.start_beat("late-beat")
        time.sleep(8)  # the worker and both beats live through some seconds of it, as they would in an outage
        assert stack.alive("late-beat"), stack.log("late-beat")[-2000:]
    finally:
        pg.start()
    back = time.monotonic()

    # The same processes, nobody restarted anything: webhooks are stored again and processed.
    def stored_again():
        r = hook.post(alertmanager, json=alertmanager_body("AfterDbOutage", ["pgo-after-0"]), timeout=30)
        return r.status_code == 200
    wait_for(stored_again, timeout=60, every=1, what="a webhook to be stored after PostgreSQL returned")
    recovered = time.monotonic() - back
    wait_for(lambda: stack.sql("SELECT count(*) FROM incidents_alertdelivery WHERE status <> 'processed'") == 0,
             timeout=120, every=1, what="the worker to process the delivery after PostgreSQL returned")
    assert stack.sql("SELECT count(*) FROM incidents_incident") == 2
    assert stack.sql("SELECT count(*) FROM incidents_alert WHERE fingerprint LIKE 'pgo-out-%%'") == 0  # nothing half-kept
    assert stack.sql("SELECT count(*) FROM incidents_alertdelivery") == 2  # the one before and the one after
    assert requests.get(stack.base + "/readyz", timeout=10).status_code == 200
    page = person.get(stack.base + "/incidents/", timeout=10)
    assert page.status_code == 200 and "AfterDbOutage" in page.text
    assert stack.login().get(stack.base + "/", timeout=10).status_code == 200
    for key, pid in pids.items():
        assert stack.alive(key) and stack.procs[key].pid == pid, f"{key} exited during the outage:\n{stack.log(key)[-2000:]}"
    # Beat still schedules: the outbox sweep runs again after the outage.
    sweeps = stack.log("worker").count("sweep_deliveries")
    wait_for(lambda: stack.log("worker").count("sweep_deliveries") > sweeps, timeout=90, every=1,
             what="beat to send the outbox sweep again after the outage")
    # The beat started during the outage takes its place once the database is back: it schedules if
    # the first beat's lease ran out meanwhile, else it stands by (exactly one beat schedules).
    wait_for(lambda: any(mark in stack.log("late-beat") for mark in
                         ("standing by: another beat holds the lease", "leading: this beat schedules")),
             timeout=90, every=1, what="the beat started during the outage to take its place once the database is back")
    print(f"PostgreSQL down: webhooks answered 5xx in at most {max(failing) * 1000:.0f} ms; "
          f"stored again {recovered:.1f} s after PostgreSQL accepted connections, with the same processes")
