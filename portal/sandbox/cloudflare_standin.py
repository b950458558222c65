"""A local stand-in of exactly the CloudFlare API v4 endpoints the portal uses (portal.cloud.cloudflare).

`GET /client/v4/zones` (name filter, pages), `GET|PATCH|PUT /zones/{zone}/dns_records[/{id}]`,
`GET|PUT /zones/{zone}/rulesets/phases/{phase}/entrypoint`, `GET /accounts/{account}/r2/buckets` and
`GET /accounts/{account}/r2/metrics`, each in CloudFlare's envelope (`success`, `errors`, `result`,
`result_info`) behind a Bearer token. State is in memory; `seeded()` fills it as the plan describes the
edge: the domain and app host proxied to the sandbox's load balancer, the photo/video/document hosts
proxied and cached, R2 buckets, per-user and per-endpoint rate limits. Listens on 127.0.0.1 only.

One endpoint CloudFlare does not have, for the sandbox's simulator only (what /moto-api is for moto):
`PUT /client/v4/__sandbox/r2/usage` with `{"buckets": {name: bytes}}` and the same token sets the R2
usage the metrics report, the sum over the named buckets the stand-in holds (the simulator may tick
in another process than this one). The portal's product code never calls it.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SANDBOX_TOKEN = "sandbox-cloudflare-token"  # the stand-in's only token; it never reaches CloudFlare
SANDBOX_ACCOUNT = "0" * 31 + "1"
MEDIA = ("photos", "videos", "documents")


def _id() -> str:
    return secrets.token_hex(16)


class State:
    def __init__(self, token: str = SANDBOX_TOKEN, account_id: str = SANDBOX_ACCOUNT):
        self.token, self.account_id = token, account_id
        self.lock = threading.Lock()
        self.zones: dict[str, dict] = {}
        self.records: dict[str, list[dict]] = {}
        self.rulesets: dict[tuple[str, str], dict] = {}
        self.buckets: list[dict] = []
        self.r2_bytes = 0  # the account's R2 payload bytes, what GET .../r2/metrics reports

    def set_r2_usage(self, sizes: dict[str, int]) -> dict:
        """The account's usage from per-bucket sizes: buckets this account does not hold are left out."""
        held = {b["name"] for b in self.buckets}
        counted = {name: int(size) for name, size in sizes.items() if name in held}
        self.r2_bytes = sum(counted.values())
        return {"payload_bytes": self.r2_bytes, "buckets": sorted(counted), "ignored": sorted(set(sizes) - held)}

    def zone_by_name(self, name: str) -> dict | None:
        return next((z for z in self.zones.values() if z["name"] == name), None)

    def add_zone(self, name: str) -> dict:
        z = {"id": _id(), "name": name, "status": "active", "paused": False, "type": "full",
             "name_servers": ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"], "plan": {"id": "pro", "name": "Pro Website"},
             "account": {"id": self.account_id, "name": "FairTradeWorker"}, "created_on": "2026-01-01T00:00:00Z",
             "modified_on": "2026-01-01T00:00:00Z"}
        self.zones[z["id"]] = z
        self.records[z["id"]] = []
        return z

    def add_record(self, zone_id: str, name: str, type_: str, content: str, proxied: bool = True) -> dict:
        r = {"id": _id(), "zone_id": zone_id, "zone_name": self.zones[zone_id]["name"], "name": name, "type": type_,
             "content": content, "proxied": proxied, "proxiable": True, "ttl": 1, "settings": {}, "meta": {},
             "comment": None, "tags": [], "created_on": "2026-01-01T00:00:00Z", "modified_on": "2026-01-01T00:00:00Z"}
        self.records[zone_id].append(r)
        return r

    def set_rules(self, zone_id: str, phase: str, rules: list[dict]) -> dict:
        rs = {"id": _id(), "name": phase, "kind": "zone", "phase": phase, "version": "1",
              "last_updated": "2026-01-01T00:00:00Z",
              "rules": [{"id": r.get("id") or _id(), "version": "1", "last_updated": "2026-01-01T00:00:00Z",
                         "enabled": True, **r} for r in rules]}
        self.rulesets[(zone_id, phase)] = rs
        return rs


def seed_state(state: State, *, domain: str, load_balancer_dns: str, buckets: dict[str, str],
               r2_bytes: int = 0) -> dict:
    """The plan's edge: returns the zone."""
    with state.lock:
        z = state.zone_by_name(domain) or state.add_zone(domain)
        zid = z["id"]
        state.records[zid] = []
        state.add_record(zid, domain, "CNAME", load_balancer_dns)
        state.add_record(zid, f"app.{domain}", "CNAME", load_balancer_dns)
        state.add_record(zid, f"api.{domain}", "CNAME", load_balancer_dns)
        for logical in MEDIA:
            bucket = buckets.get(logical, f"ftw-{logical}")
            state.add_record(zid, f"{logical}.{domain}", "CNAME", f"{bucket}.{state.account_id}.r2.cloudflarestorage.com")
        hosts = " ".join(f'"{m}.{domain}"' for m in MEDIA)
        state.set_rules(zid, "http_request_cache_settings", [{
            "description": "Cache photos, videos and documents at the edge", "expression": f"(http.host in {{{hosts}}})",
            "action": "set_cache_settings", "action_parameters": {"cache": True, "edge_ttl": {"mode": "override_origin", "default": 86400}}}])
        state.set_rules(zid, "http_ratelimit", [
            {"description": "Per-user limit: 600 requests a minute per API token",
             "expression": f'(http.host eq "api.{domain}")', "action": "block",
             "ratelimit": {"characteristics": ["cf.colo.id", 'http.request.headers["authorization"]'], "period": 60,
                           "requests_per_period": 600, "mitigation_timeout": 60}},
            {"description": "Per-endpoint limit: sign-in", "expression": '(http.request.uri.path eq "/api/v1/auth/login")',
             "action": "block", "ratelimit": {"characteristics": ["cf.colo.id", "ip.src"], "period": 60,
                                              "requests_per_period": 10, "mitigation_timeout": 600}},
        ])
        state.buckets = [{"name": b, "creation_date": "2026-01-01T00:00:00Z", "location": "enam", "storage_class": "Standard"}
                         for b in sorted(buckets.values())]
        state.r2_bytes = int(r2_bytes)
        return z


ZONES = re.compile(r"^/zones/?$")
RECORDS = re.compile(r"^/zones/(?P<zone>[0-9a-f]+)/dns_records(?:/(?P<rid>[0-9a-f]+))?/?$")
ENTRYPOINT = re.compile(r"^/zones/(?P<zone>[0-9a-f]+)/rulesets/phases/(?P<phase>[a-z_]+)/entrypoint/?$")
R2_BUCKETS = re.compile(r"^/accounts/(?P<account>[0-9a-f]+)/r2/buckets/?$")
R2_METRICS = re.compile(r"^/accounts/(?P<account>[0-9a-f]+)/r2/metrics/?$")
SANDBOX_R2_USAGE = re.compile(r"^/__sandbox/r2/usage/?$")


class Handler(BaseHTTPRequestHandler):
    server_version = "PortalSandbox-CloudFlare/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    @property
    def state(self) -> State:
        return self.server.state  # type: ignore[attr-defined]

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _ok(self, result: Any, info: dict | None = None) -> None:
        body = {"success": True, "errors": [], "messages": [], "result": result}
        if info is not None:
            body["result_info"] = info
        self._send(200, body)

    def _error(self, status: int, code: int, message: str) -> None:
        self._send(status, {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None})

    def _page(self, rows: list, query: dict) -> None:
        page = int((query.get("page") or ["1"])[0])
        per_page = int(float((query.get("per_page") or ["100"])[0]))
        chunk = rows[(page - 1) * per_page: page * per_page]
        self._ok(chunk, {"page": page, "per_page": per_page, "count": len(chunk), "total_count": len(rows),
                         "total_pages": max(1, -(-len(rows) // per_page))})

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path = url.path.removeprefix("/client/v4")
        query = parse_qs(url.query)
        if self.headers.get("Authorization", "") != f"Bearer {self.state.token}":
            return self._error(403, 9109, "Invalid access token")
        body: dict = {}
        if method in ("PATCH", "PUT", "POST"):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = json.loads(raw or b"{}")
        with self.state.lock:
            if method == "GET" and ZONES.match(path):
                rows = list(self.state.zones.values())
                if query.get("name"):
                    rows = [z for z in rows if z["name"] == query["name"][0]]
                return self._page(rows, query)
            if m := RECORDS.match(path):
                records = self.state.records.get(m["zone"])
                if records is None:
                    return self._error(404, 7003, "Could not route to the zone")
                if method == "GET" and not m["rid"]:
                    rows = records
                    if query.get("name"):
                        rows = [r for r in rows if r["name"] == query["name"][0]]
                    return self._page(rows, query)
                record = next((r for r in records if r["id"] == m["rid"]), None)
                if record is None:
                    return self._error(404, 81044, "Record does not exist.")
                if method in ("PATCH", "PUT"):
                    record.update({k: v for k, v in body.items() if k in ("name", "type", "content", "proxied", "ttl", "comment")})
                return self._ok(record)
            if m := ENTRYPOINT.match(path):
                if m["zone"] not in self.state.zones:
                    return self._error(404, 7003, "Could not route to the zone")
                key = (m["zone"], m["phase"])
                if method == "PUT":
                    return self._ok(self.state.set_rules(m["zone"], m["phase"], list(body.get("rules") or [])))
                if key not in self.state.rulesets:
                    return self._error(404, 10003, "could not find entrypoint ruleset in the phase")
                return self._ok(self.state.rulesets[key])
            if (m := R2_BUCKETS.match(path)) and method == "GET":
                if m["account"] != self.state.account_id:
                    return self._error(403, 10000, "Authentication error")
                return self._ok({"buckets": self.state.buckets})
            if (m := R2_METRICS.match(path)) and method == "GET":
                if m["account"] != self.state.account_id:
                    return self._error(403, 10000, "Authentication error")
                published = {"objects": len(self.state.buckets), "payloadSize": self.state.r2_bytes, "metadataSize": 0}
                return self._ok({"standard": {"published": published, "uploaded": published}})
            if SANDBOX_R2_USAGE.match(path) and method == "PUT":
                sizes = body.get("buckets")
                if not isinstance(sizes, dict) or not all(type(v) is int and v >= 0 for v in sizes.values()):
                    return self._error(400, 1001, 'Send {"buckets": {"<bucket name>": <bytes>, ...}}')
                return self._ok(self.state.set_r2_usage(sizes))
        return self._error(404, 7000, "No route for that URI")

    def do_GET(self):  # noqa: N802 - http.server's names
        self._route("GET")

    def do_PATCH(self):  # noqa: N802
        self._route("PATCH")

    def do_PUT(self):  # noqa: N802
        self._route("PUT")


class CloudflareStandIn:
    def __init__(self, host: str, port: int, state: State | None = None):
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("the CloudFlare stand-in listens on the loopback interface only")
        self.state = state or State()
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.server.state = self.state  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, name="standin-cloudflare", daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        """The API's base URL (what `Cloudflare(base_url=...)` takes)."""
        return f"http://{self.server.server_address[0]}:{self.port}/client/v4"

    def start(self) -> CloudflareStandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(host: str, port: int) -> CloudflareStandIn:
    return CloudflareStandIn(host, port).start()
