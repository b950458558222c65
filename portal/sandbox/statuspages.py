"""Fake status pages for the plan's external services, served by the sandbox process.

`GET /<slug>/api/v2/status.json` answers like Atlassian Statuspage; `GET /<slug>/` answers 200
(or 503 during an outage) for plain HTTP checks. A service-outage drill makes its service report a
major outage. The truth is the sandbox environment's SimulatorState.outages (in the database).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.db import connection
from django.utils import timezone

from portal.cloud.models import Environment, SimulatorState
from portal.health.models import Check
from portal.health.services import check_url_point
from portal.plan.loader import load_plan


def services() -> dict[str, dict]:
    """The plan's external services by slug."""
    return {s["slug"]: s for s in load_plan().get("services", [])}


def status_page_url(env: Environment, slug: str) -> str | None:
    """Where the sandbox serves `slug`'s status (None when the sandbox has no status server): from data,
    the port the sandbox recorded in its environment's SimulatorState."""
    port = SimulatorState.objects.filter(environment=env).values_list("status_port", flat=True).first()
    svc = services().get(slug)
    if not port or svc is None:
        return None
    if svc.get("kind") == "statuspage":
        return f"http://127.0.0.1:{port}/{slug}/api/v2/status.json"
    return f"http://127.0.0.1:{port}/{slug}/"


def service_checks_point_at(env: Environment, *, actor) -> int:
    """Once, when the sandbox registers its environment: the seeded service checks read this status
    server instead of the public pages (kept as their `public_url`), under the sandbox environment's
    outbound policy. Without a status server they keep the public URL and report it unreachable."""
    n = 0
    for check in Check.objects.filter(group=Check.Group.EXTERNAL).order_by("pk"):
        slug = (check.config or {}).get("service")
        url = status_page_url(env, slug) if slug else None
        if url:
            check_url_point(check=check, url=url, environment=env, actor=actor)
            n += 1
    return n


def _outages(env_name: str) -> dict:
    try:
        return SimulatorState.objects.filter(environment__name=env_name).values_list("outages", flat=True).first() or {}
    finally:
        connection.close()  # a request thread of its own: never leave its connection open


def make_handler(env_name: str):
    known = services()

    class Handler(BaseHTTPRequestHandler):
        server_version = "ftw-sandbox-status/1"

        def log_message(self, format, *args):  # noqa: A002 - quiet: the sandbox prints its own lines
            return

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's naming
            parts = [p for p in self.path.split("?", 1)[0].split("/") if p]
            if not parts or parts[0] not in known:
                self._send(404, b'{"error": "unknown service"}', "application/json")
                return
            slug = parts[0]
            outage = _outages(env_name).get(slug)
            if parts[1:] == ["api", "v2", "status.json"]:
                indicator, words = ("major", "Major System Outage") if outage else ("none", "All Systems Operational")
                body = {"page": {"id": f"sandbox-{slug}", "name": known[slug].get("name", slug),
                                 "url": f"http://{self.headers.get('Host', '127.0.0.1')}/{slug}/",
                                 "time_zone": "Etc/UTC", "updated_at": timezone.now().isoformat()},
                        "status": {"indicator": indicator, "description": words}}
                self._send(200, json.dumps(body).encode(), "application/json")
            elif len(parts) == 1:
                if outage:
                    self._send(503, b"Service Unavailable (sandbox drill)", "text/plain")
                else:
                    self._send(200, f"{known[slug].get('name', slug)} is up (sandbox)".encode(), "text/plain")
            else:
                self._send(404, b"not found", "text/plain")

    return Handler


def serve(host: str, port: int, env_name: str) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), make_handler(env_name))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="sandbox-status-pages", daemon=True).start()
    return server
