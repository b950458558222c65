"""Evidence the portal produces: a restore run on the DR item, load-test results judged against the plan."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from portal.audit.models import AuditEvent
from portal.checklist.models import Evidence
from portal.checklist.verify_evidence import load_test_targets, parse_load_test
from runbooks import services as runbook_services
from runbooks.loader import sync_library
from runbooks.models import Runbook, RunStatus


def k6_summary(*, rate: float, p95_ms: float, count: int = 180000, failed: float = 0.001) -> dict:
    """The shape `k6 run --summary-export` writes (numbers on each metric, durations in ms)."""
    return {
        "root_group": {"name": "", "path": "", "id": "d41d8cd98f00b204e9800998ecf8427e", "groups": [], "checks": []},
        "metrics": {
            "http_reqs": {"count": count, "rate": rate},
            "http_req_duration": {"avg": p95_ms / 2, "min": 3.1, "med": p95_ms / 2.5, "max": p95_ms * 3,
                                  "p(90)": p95_ms * 0.8, "p(95)": p95_ms},
            "http_req_duration{expected_response:true}": {"avg": 1, "min": 1, "med": 1, "max": 1, "p(90)": 1, "p(95)": 1},
            "http_req_failed": {"passes": int(count * failed), "fails": count - int(count * failed), "value": failed},
            "vus_max": {"value": 1500, "min": 1500, "max": 1500},
        },
    }


def locust_stats(*, requests: int, seconds: float, p95_ms: int, failures: int = 0) -> list[dict]:
    """The shape `locust --headless --json` prints: one entry per request name, a response-time histogram in ms."""
    fast = int(requests * 0.9)
    slow = requests - fast
    return [{
        "name": "/api/jobs", "method": "GET", "start_time": 1_760_000_000.0, "last_request_timestamp": 1_760_000_000.0 + seconds,
        "num_requests": requests, "num_none_requests": 0, "num_failures": failures, "total_response_time": requests * 80,
        "max_response_time": p95_ms * 2, "min_response_time": 4, "total_content_length": requests * 900,
        "response_times": {"40": fast, str(p95_ms): slow}, "num_reqs_per_sec": {"1760000001": 640, "1760000002": 655},
        "num_fail_per_sec": {},
    }]


@pytest.fixture
def load_item(items):
    return items["load-testing"]


def _upload(client, item, payload, name="summary.json"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post(f"/checklist/{item.slug}/load-test/", {"file": SimpleUploadedFile(name, body, content_type="application/json")},
                       follow=True)


def test_the_targets_are_the_plans_peak_and_api_p95():
    t = load_test_targets()
    assert (t.peak_rps, t.p95_ms, t.error_percent) == (600.0, 500.0, 1.0)


def test_a_k6_summary_with_p95_above_target_fails_load_testing_with_the_numbers(client, responder, load_item):
    client.force_login(responder)
    resp = _upload(client, load_item, k6_summary(rate=640.2, p95_ms=730.4))
    ev = load_item.evidence.get()
    assert ev.kind == Evidence.Kind.FILE and ev.file_name == "summary.json"
    assert ev.text.startswith("Load test FAILED: P95 730 ms is not under the 500 ms target")
    assert "640.2 requests/s (plan peak 600/s)" in ev.text
    page = resp.content.decode()
    assert "Load test FAILED" in page and "730 ms" in page
    event = AuditEvent.objects.get(verb="checklist.load_test")
    assert event.extra["passed"] is False and event.extra["measured"]["p95_ms"] == 730.4


def test_a_k6_summary_meeting_600_rps_and_the_p95_passes(client, responder, load_item):
    client.force_login(responder)
    _upload(client, load_item, k6_summary(rate=612.5, p95_ms=312.0))
    ev = load_item.evidence.get()
    assert ev.text.startswith("Load test passed (k6: 612.5 requests/s (plan peak 600/s), P95 312 ms (target < 500 ms)")


def test_a_k6_run_below_the_peak_fails_even_when_fast(client, responder, load_item):
    client.force_login(responder)
    _upload(client, load_item, k6_summary(rate=210.0, p95_ms=95.0))
    assert "210.0 requests/s is below the plan's peak of 600/s" in load_item.evidence.get().text


def test_handle_summary_json_keeps_its_numbers_under_values():
    data = {"metrics": {"http_reqs": {"type": "counter", "values": {"count": 70000, "rate": 655.0}},
                        "http_req_duration": {"type": "trend", "values": {"p(95)": 410.0, "med": 120.0}},
                        "http_req_failed": {"type": "rate", "values": {"rate": 0.002, "passes": 140, "fails": 69860}}},
            "state": {"testRunDurationMs": 106870.2}}
    m = parse_load_test(json.dumps(data).encode())
    assert (m.tool, m.rps, m.p95_ms, m.failure_percent, m.duration_seconds) == ("k6", 655.0, 410.0, 0.2, 106.9)


def test_locust_statistics_are_read_from_their_histogram(client, responder, load_item):
    client.force_login(responder)
    _upload(client, load_item, locust_stats(requests=78000, seconds=120, p95_ms=380), name="locust.json")
    ev = load_item.evidence.get()
    assert ev.text.startswith("Load test passed (locust: 650.0 requests/s (plan peak 600/s), P95 380 ms")


@pytest.mark.parametrize("body, words", [
    (b"requests,p95\n600,300\n", "is not JSON"),
    (json.dumps({"metrics": {"http_reqs": {"count": 10, "rate": 1.0}}}).encode(), "no http_reqs or http_req_duration"),
    (json.dumps({"metrics": {"http_reqs": {"count": 10, "rate": 1.0}, "http_req_duration": {"med": 3}}}).encode(),
     "has no p(95)"),
    (json.dumps({"hello": "world"}).encode(), "neither a k6 summary"),
])
def test_a_malformed_file_gives_a_clear_error_and_stores_nothing(client, responder, load_item, body, words):
    client.force_login(responder)
    resp = _upload(client, load_item, body, name="bad.json")
    assert words in resp.content.decode()
    assert "bad.json" in resp.content.decode()
    assert not Evidence.objects.filter(item=load_item).exists()
    assert not AuditEvent.objects.filter(verb="checklist.load_test").exists()


def test_a_viewer_cannot_upload(client, viewer, load_item):
    client.force_login(viewer)
    resp = client.post(f"/checklist/{load_item.slug}/load-test/", {"file": SimpleUploadedFile("s.json", b"{}")})
    assert resp.status_code == 403
    assert not load_item.evidence.exists()


def test_the_api_judges_an_inline_result(api_client, make_token, load_item):
    resp = api_client.post(f"/api/v1/checklist/{load_item.slug}/load-test", {"result": k6_summary(rate=601.0, p95_ms=499.0)},
                           token=make_token("actions"))
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["passed"] is True and body["measured"]["rps"] == 601.0 and body["targets"]["peak_rps"] == 600.0
    assert load_item.evidence.get().text == body["summary"]


def test_the_api_refuses_a_private_url_without_the_environments_leave_and_stores_nothing(api_client, make_token, load_item):
    resp = api_client.post(f"/api/v1/checklist/{load_item.slug}/load-test", {"url": "http://127.0.0.1:9/summary.json"},
                           token=make_token("actions"))
    assert resp.status_code == 422
    assert "could not fetch the result: OutboundRefused to 127.0.0.1" in resp.json()["detail"]
    assert not load_item.evidence.exists()


def test_a_result_url_is_fetched_through_the_guarded_helper(api_client, make_token, load_item, httpserver, settings):
    from portal.cloud.models import Environment
    from portal.health.services import outbound_policy_set

    env = Environment.objects.create(name="loadtest-env", region="us-east-1")
    outbound_policy_set(environment=env, allow_private_targets=True, actor="system:test")
    httpserver.expect_request("/runs/42/summary.json").respond_with_json(k6_summary(rate=700.0, p95_ms=250.0))
    resp = api_client.post(f"/api/v1/checklist/{load_item.slug}/load-test",
                           {"url": httpserver.url_for("/runs/42/summary.json"), "environment": env.name}, token=make_token("actions"))
    assert resp.status_code == 200, resp.content
    ev = load_item.evidence.get()
    assert ev.file_name == "summary.json" and ev.url.endswith("/runs/42/summary.json")
    assert ev.text.startswith("Load test passed (k6: 700.0 requests/s")


def _walk_restore(run, actor):
    for step_id in ("latest-backup", "restore", "verify-data", "measure", "verified", "cleanup"):
        kw = {}
        if step_id == "latest-backup":
            kw["evidence"] = {"status": "ok", "words": "newest snapshot 3.2 h old"}
        if step_id == "measure":
            kw["note"] = "RTO 41 min, RPO 3 h"
        if step_id == "verified":
            kw["answer"] = "restore-ok"
        runbook_services.step_record(run=run, step_id=step_id, status="done", actor=actor, **kw)


def test_a_completed_restore_run_appears_as_evidence_on_the_dr_item(client, items, responder, django_capture_on_commit_callbacks):
    sync_library()
    runbook = Runbook.objects.get(slug="backup-restore-verification")
    run = runbook_services.run_start(runbook=runbook, actor=responder)
    dr = items["disaster-recovery"]
    with django_capture_on_commit_callbacks(execute=True):
        _walk_restore(run, responder)
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    ev = dr.evidence.get()
    assert ev.kind == Evidence.Kind.LINK and ev.url.endswith(f"/runbooks/runs/{run.public_id}/")
    assert ev.text.startswith("Restore verified (runbook backup-restore-verification")
    assert "RTO 41 min, RPO 3 h" in ev.text and "newest snapshot 3.2 h old" in ev.text
    # Delivered twice (a redelivered task), it is still one piece of evidence.
    from portal.checklist.tasks import checklist_on_event

    checklist_on_event({"kind": "runbook.run_completed", "data": {"run": str(run.public_id)}})
    assert dr.evidence.count() == 1
    client.force_login(responder)
    page = client.get(f"/checklist/{dr.slug}/").content.decode()
    assert "Restore verified" in page and str(run.public_id) in page


def test_a_failed_restore_is_kept_as_what_it_was(items, responder, django_capture_on_commit_callbacks):
    sync_library()
    run = runbook_services.run_start(runbook=Runbook.objects.get(slug="backup-restore-verification"), actor=responder)
    with django_capture_on_commit_callbacks(execute=True):
        for step_id in ("latest-backup", "restore", "verify-data", "measure", "verified"):
            kw = {"evidence": {"words": "ok"}} if step_id == "latest-backup" else {}
            if step_id == "verified":
                kw["answer"] = "restore-failed"
            runbook_services.step_record(run=run, step_id=step_id, status="done", actor=responder, **kw)
        runbook_services.step_escalate(run=run, step_id="escalate", actor=responder)
        runbook_services.step_record(run=run, step_id="cleanup", status="done", actor=responder)
    assert items["disaster-recovery"].evidence.get().text.startswith("Restore FAILED")


def test_other_runbooks_add_no_dr_evidence(items, responder, django_capture_on_commit_callbacks):
    from portal.checklist.services import evidence_attach_restore_run

    sync_library()
    run = runbook_services.run_start(runbook=Runbook.objects.get(slug="slow-performance"), actor=responder)
    assert evidence_attach_restore_run(run_id=str(run.public_id)) is None
    assert not items["disaster-recovery"].evidence.exists()
