"""A Celery worker killed with SIGKILL (the OOM killer, a host going away) in the middle of work.

- During an alert storm: nothing received is lost, no incident is opened twice, no alert is counted
  twice. The messages the dead worker had taken stay unacknowledged in Redis; the outbox sweep sends
  their deliveries again and the replacement worker processes them once.
- During a rollout step: the worker dies while its weight change is on its way to AWS (a proxy in
  front of the sandbox holds that call, the test kills the worker, then lets the call through, so
  AWS has the new weights and the database does not). A fresh worker, kicked by beat's driver,
  picks the rollout up at the step it was on and finishes it: every step once, none skipped.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.faults.stack import alertmanager_body, free_port, integrity, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(900)]


def test_worker_sigkilled_during_an_alert_storm_loses_nothing_and_duplicates_nothing(make_stack):
    stack = make_stack()
    stack.only_periodic("portal.incidents.tasks.sweep_deliveries")
    token = stack.api_token("alerts:write")
    stack.start_web(workers=2, threads=4)
    stack.start_worker("worker-a", queues="default", concurrency=2)
    stack.start_beat()

    groups, per_group, per_request = 40, 30, 10  # 1,200 alerts in 120 requests, plus Alertmanager's repeats
    bodies = []
    for g in range(groups):
        fps = [f"sk-{g}-{i}" for i in range(per_group)]
        for start in range(0, per_group, per_request):
            bodies.append(alertmanager_body(f"KillStorm{g}", fps[start:start + per_request]))
    sends = bodies + bodies[::7]  # every seventh request sent again, as Alertmanager does after a timeout
    failures: list[str] = []

    def post(body):
        r = requests.post(stack.base + "/api/v1/alerts/alertmanager", data=json.dumps(body), timeout=30,
                          headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        if r.status_code != 200:
            failures.append(f"{r.status_code} {r.text[:200]}")

    killed_at: dict = {}

    def kill_mid_storm():
        # Once the worker is busy (some processed, more waiting), SIGKILL it and all its pool processes.
        def busy():
            done = stack.sql("SELECT count(*) FROM incidents_alertdelivery WHERE status = 'processed'")
            waiting = stack.sql("SELECT count(*) FROM incidents_alertdelivery WHERE status = 'pending'")
            return done >= 10 and waiting >= 2 and (done, waiting)
        killed_at["processed"], killed_at["pending"] = wait_for(busy, timeout=120, every=0.05, what="the worker to be busy")
        stack.sigkill("worker-a")

    killer = threading.Thread(target=kill_mid_storm)
    killer.start()
    # A storm: six senders at once, as fast as the portal answers, so work piles up in front of the worker.
    with ThreadPoolExecutor(max_workers=6) as pool:
        for body in sends:
            pool.submit(post, body)
    killer.join(timeout=150)
    assert not killer.is_alive() and killed_at, "the worker was never caught busy"
    assert not stack.alive("worker-a")
    assert not failures, failures[:3]

    stack.start_worker("worker-b", queues="default", concurrency=2)
    wait_for(lambda: stack.sql("SELECT count(*) FROM incidents_alertdelivery WHERE status <> 'processed'") == 0,
             timeout=300, every=1, what="every delivery to be processed after the worker was killed")

    kept = integrity(stack, "sk-")
    assert kept["deliveries"] == len(sends), kept
    assert kept["alerts"] == kept["distinct_alerts"] == groups * per_group, kept
    assert kept["unattached"] == 0, kept
    assert kept["incidents"] == kept["grouping_keys"] == groups, kept
    assert kept["firing_entries"] == groups * per_group, kept
    print(f"worker SIGKILLed with {killed_at['processed']} deliveries processed and {killed_at['pending']} waiting; "
          f"{len(sends)} deliveries, {groups * per_group} alerts, {groups} incidents, nothing lost or doubled")


class HoldingProxy:
    """An HTTP proxy in front of the AWS sandbox that can hold one ModifyListener call (a weight change)."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.hold_call = 0  # hold the n-th ModifyListener call (0 = none)
        self.modify_calls = 0
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if b"Action=ModifyListener" in body:
                    with proxy.lock:
                        proxy.modify_calls += 1
                        hold = proxy.modify_calls == proxy.hold_call
                    if hold:
                        proxy.held.set()
                        proxy.release.wait(60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                r = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers, timeout=30)
                try:
                    self.send_response(r.status_code)
                    for k, v in r.headers.items():
                        if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(r.content)))
                    self.end_headers()
                    self.wfile.write(r.content)
                except OSError:
                    pass  # the caller is gone (killed): AWS has done the call all the same

            do_GET = do_POST = do_PUT = do_DELETE = _forward

        class QuietServer(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the killed worker's connection resets: expected here

        self.port = free_port()
        self.server = QuietServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_worker_sigkilled_during_a_rollout_step_and_the_rollout_resumes(make_stack):
    stack = make_stack()
    stack.only_periodic("deployments.tasks.deployments_drive")
    sandbox = stack.start_sandbox(free_port(), interval=1.0)
    proxy = HoldingProxy(sandbox)
    try:
        _rollout_through_a_kill(stack, proxy)
    finally:
        proxy.close()


def _rollout_through_a_kill(stack, proxy: HoldingProxy) -> None:
    with stack.sql_conn() as c:
        c.execute("UPDATE cloud_environment SET endpoint_url = %s WHERE name = 'sandbox'", (proxy.url,))
    stack.shell(
        "from deployments.models import AnalysisTemplate, Strategy\n"
        "t = AnalysisTemplate.objects.create(slug='fault', name='Fault test', interval_seconds=1, min_requests=1,"
        " error_margin_pct=50, latency_margin_pct=200, pass_error_rate_pct=100)\n"
        "Strategy.objects.create(slug='canary-fault', name='Canary (fault test)', kind='canary', weights=[10, 25, 50, 100],"
        " hold_seconds=[3, 3, 3, 3], watch_seconds=2, template=t)\n")
    token = stack.api_token("actions")
    stack.start_web()
    stack.start_worker("worker-a", queues="actions", concurrency=1)
    stack.start_beat()
    proxy.hold_call = 2  # the second weight change: step 2, 10 % -> 25 %

    r = requests.post(stack.base + "/api/v1/deployments", timeout=30, headers={"Authorization": f"Bearer {token}"},
                      json={"environment": "sandbox", "version": "v2-fault", "strategy": "canary-fault",
                            "launch_template_version": "$Latest"})
    assert r.status_code == 201, r.text
    public_id = r.json()["id"]

    assert proxy.held.wait(180), f"the rollout never reached its second weight change:\n{stack.log_tails()}"
    state_before = stack.sql("SELECT state FROM deployments_deployment WHERE public_id = %s", public_id)
    stack.sigkill("worker-a")  # mid-step: the ModifyListener call is out, no reply yet
    proxy.release.set()        # ...and AWS carries it out: the listener moves, the database never heard
    assert state_before == "shifting", state_before

    stack.start_worker("worker-b", queues="actions", concurrency=1)

    def finished():
        state = stack.sql("SELECT state FROM deployments_deployment WHERE public_id = %s", public_id)
        return state in ("completed", "failed", "rolled_back", "paused", "aborted") and state
    final = wait_for(finished, timeout=300, every=1, what="the rollout to finish after the worker was killed")
    events = []
    with stack.sql_conn() as c:
        events = [row[0] for row in c.execute(
            "SELECT e.message FROM deployments_deploymentevent e JOIN deployments_deployment d ON d.id = e.deployment_id "
            "WHERE d.public_id = %s ORDER BY e.at, e.id", (public_id,))]
    assert final == "completed", f"rollout ended {final}:\n" + "\n".join(events[-15:])
    steps = [m.split(":")[0] for m in events if m.startswith("Step ")]
    assert steps == ["Step 1 of 4", "Step 2 of 4", "Step 3 of 4", "Step 4 of 4"], steps
    weights = requests.get(stack.base + f"/api/v1/deployments/{public_id}", timeout=30,
                           headers={"Authorization": f"Bearer {token}"}).json()
    assert proxy.modify_calls >= 5  # the held call, its repeat by the new worker, and the other three steps
    print(f"rollout completed after the worker was killed mid-step; {proxy.modify_calls} weight changes sent; {weights.get('weights')}")
