"""Redis (the broker) stopped for a minute while Alertmanager keeps sending.

What an on-call engineer would notice: every webhook still answers 200 within 2 s and keeps its
payload in PostgreSQL; the pages keep working and an acknowledgement still lands; /readyz says the
broker is down (and the database is not); and once Redis is back, the outbox sweep gets every
delivery processed within 5 minutes: one incident per alert group, nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import re
import time

import pytest
import requests

from tests.faults.stack import alertmanager_body, integrity, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(900)]

OUTAGE_SECONDS = float(os.environ.get("FAULTS_REDIS_OUTAGE_SECONDS", "60"))


def test_webhooks_pages_and_readyz_hold_while_redis_is_down_and_everything_is_processed_after(make_stack, redis_server):
    stack = make_stack()
    hook = stack.start_alert_intake()

    def post(body) -> tuple[requests.Response, float]:
        t = time.perf_counter()
        r = hook.post(stack.base + "/api/v1/alerts/alertmanager", json=body, timeout=30)
        return r, time.perf_counter() - t

    r, _ = post(alertmanager_body("BeforeOutage", ["rds-before-0"]))
    assert r.status_code == 200, r.text
    wait_for(lambda: stack.sql("SELECT count(*) FROM incidents_incident") == 1, timeout=60, what="the first incident")
    incident_id = stack.sql("SELECT public_id::text FROM incidents_incident")
    person = stack.login()

    redis_server.stop()
    stopped = time.monotonic()
    latencies: list[float] = []
    groups = 0
    page_checks = 0
    while time.monotonic() - stopped < OUTAGE_SECONDS:
        body = alertmanager_body(f"DuringOutage{groups}", [f"rds-out-{groups}-{k}" for k in range(3)])
        r, elapsed = post(body)
        assert r.status_code == 200, f"webhook {groups} answered {r.status_code} with the broker down: {r.text[:300]}"
        latencies.append(elapsed)
        groups += 1
        if groups % 10 == 1:
            t = time.perf_counter()
            ready = requests.get(stack.base + "/readyz", timeout=10)
            assert time.perf_counter() - t < 5, "/readyz took too long to say the broker is down"
            assert ready.status_code == 503
            assert ready.json()["broker"] == "down" and ready.json()["database"] == "ok", ready.text
            assert requests.get(stack.base + "/healthz", timeout=10).status_code == 200
            for url in ("/", "/incidents/", f"/incidents/{incident_id}/"):
                page = person.get(stack.base + url, timeout=10)
                assert page.status_code == 200, f"{url} answered {page.status_code} with the broker down"
            assert "BeforeOutage" in person.get(stack.base + "/incidents/", timeout=10).text
            page_checks += 1
        time.sleep(1)
    assert max(latencies) < 2.0, f"slowest webhook took {max(latencies):.2f} s with the broker down"

    # A responder acknowledges during the outage: the change is kept (notifications wait for the broker).
    page = person.get(stack.base + f"/incidents/{incident_id}/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    ack = person.post(stack.base + f"/incidents/{incident_id}/acknowledge/", data={"csrfmiddlewaretoken": csrf},
                      headers={"Referer": stack.base + f"/incidents/{incident_id}/"}, timeout=10)
    assert ack.status_code in (200, 302), ack.text[:300]
    assert stack.sql("SELECT status FROM incidents_incident WHERE public_id = %s", incident_id) == "acknowledged"

    # Everything received is stored and waiting, none of it processed yet (the worker cannot get it).
    kept = integrity(stack, "rds-")
    assert kept["deliveries"] == groups + 1
    assert kept["pending"] == groups, kept
    assert stack.alive("worker") and stack.alive("beat") and stack.alive("web")

    redis_server.start()
    back = time.monotonic()
    wait_for(lambda: stack.sql("SELECT count(*) FROM incidents_alertdelivery WHERE status <> 'processed'") == 0,
             timeout=300, every=1, what="every delivery received during the outage to be processed")
    caught_up = time.monotonic() - back
    assert requests.get(stack.base + "/readyz", timeout=10).status_code == 200

    kept = integrity(stack, "rds-")
    assert kept["alerts"] == kept["distinct_alerts"] == groups * 3 + 1, kept
    assert kept["unattached"] == 0, kept
    assert kept["incidents"] == kept["grouping_keys"] == groups + 1, kept
    assert kept["firing_entries"] == groups * 3 + 1, kept
    print(f"Redis down {OUTAGE_SECONDS:.0f} s: {groups} webhooks, slowest {max(latencies) * 1000:.0f} ms, "
          f"{page_checks} page checks; all processed {caught_up:.1f} s after Redis returned")
