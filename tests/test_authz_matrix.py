"""Authorization matrix, generated from the URL configuration and the API's OpenAPI schema.

Every page route (walked from django.urls.get_resolver(), except admin/, static and the API) must
have an entry in MATRIX giving the least role allowed to GET it and to POST it; every API operation
must have an entry in API_MATRIX giving the token scope it needs. A route or operation without an
entry fails, naming it, so a new route cannot land without a decision about who may use it.

For each route x role (anonymous, viewer, responder, lead, admin) and each method:
  * denied: 403 (anonymous: 302 to the login page, or 401 + HX-Redirect for htmx), and no audit row;
  * allowed: never 403 nor a redirect to the login page (200, 404 for a dummy object, 405 and
    redirects after a POST are fine), never 5xx;
  * not applicable (None): 405, or a denial; never a change.
For each API operation x token (none, alerts:write, read, actions, lead): no token -> 401, a
token without the scope -> 403 and no audit row, a token with it -> neither 401 nor 403.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import IntConverter, SlugConverter, StringConverter, UUIDConverter

from portal.audit.models import AuditEvent

PUBLIC = "public"  # anyone, signed in or not
ROLES = ("anonymous", "viewer", "responder", "lead", "admin")
RANK = {role: i for i, role in enumerate(ROLES)}
LOGIN_URL = "/accounts/login/"
SKIPPED_PREFIXES = ("admin/", "api/v1/", "static/", "media/", "__debug__/")

V, R, L, A = "viewer", "responder", "lead", "admin"

# route name -> (least role for GET, least role for POST); None = the method is not applicable
# (the view answers 405), PUBLIC = no sign-in needed.
MATRIX: dict[str, tuple[str | None, str | None]] = {
    # portal
    "dashboard": (V, V),  # no require_GET: a POST renders the same page
    "healthz": (PUBLIC, None),
    "readyz": (PUBLIC, None),
    "metrics": (PUBLIC, None),
    "login": (PUBLIC, PUBLIC),
    "logout": (None, PUBLIC),  # Django's LogoutView is POST-only
    "reauth": (V, V),  # confirm one's own password before a dangerous production action
    "audit:list": (L, L),
    # incidents
    "incidents:list": (V, V),
    "incidents:panel": (V, V),
    "incidents:rejected": (L, L),
    "incidents:detail": (V, V),
    "incidents:timeline": (V, V),
    "incidents:live": (V, None),  # the incident page's status and action regions (htmx)
    "incidents:causes": (V, None),
    "incidents:changes": (V, None),
    "incidents:signal": (V, None),  # the chart's JSON
    "incidents:export": (V, V),
    "incidents:acknowledge": (None, R),
    "incidents:resolve": (None, R),
    "incidents:reopen": (None, R),
    "incidents:assign": (None, R),
    "incidents:note": (None, R),
    "incidents:postmortem": (None, R),
    "incidents:bulk": (None, R),
    "incidents:silences": (V, V),  # no require_GET: a POST renders the same page
    "incidents:silence_create": (None, R),
    "incidents:silence_delete": (None, R),
    "incidents:silence_banner": (V, None),
    "incidents:maintenance_create": (None, R),
    "incidents:maintenance_delete": (None, R),
    "incidents:grouping": (V, L),  # leads edit and preview; everyone reads
    # outgoing webhooks (leads)
    "webhooks:list": (L, L),  # no require_GET: a POST renders the same page
    "webhooks:create": (None, L),
    "webhooks:enable": (None, L),
    "webhooks:delete": (None, L),
    # health
    "health:index": (V, None),
    "health:grid": (V, None),
    "health:panel": (V, None),
    "health:slo_panel": (V, None),
    "health:thresholds": (V, None),
    "health:threshold_update": (None, L),
    "health:check": (V, None),
    "health:run_now": (None, R),
    "health:set_enabled": (None, R),
    # checklist
    "checklist:board": (V, None),
    "checklist:summary": (V, None),
    "checklist:panel": (V, None),
    "checklist:verify_all": (None, R),
    "checklist:item": (V, None),
    "checklist:sign_off": (None, L),
    "checklist:revoke": (None, L),
    "checklist:mark_ready": (None, R),
    "checklist:add_evidence": (None, R),
    "checklist:load_test": (None, R),
    "checklist:evidence_file": (V, None),
    "checklist:verify": (None, R),
    "checklist:configure": (None, L),
    # phases
    "phases:page": (V, None),
    "phases:panel": (V, None),
    "phases:move": (None, L),
    "phases:enter_users": (None, L),
    "phases:range_scope": (None, L),
    "phases:focus": (None, R),
    "phases:chart_users": (V, None),
    "phases:chart_instances": (V, None),
    "phases:chart_cost": (V, None),
    # environments (cloud)
    "cloud:list": (V, None),
    "cloud:new": (A, A),
    "cloud:drills": (A, None),
    "cloud:drill_start": (None, A),
    "cloud:drills_stop_all": (None, A),
    "cloud:drill_stop": (None, A),
    "cloud:detail": (V, None),
    "cloud:live": (V, None),
    "cloud:drift": (V, None),
    "cloud:drift_item": (V, None),
    "cloud:edit": (A, A),
    # runbooks
    "runbooks:library": (V, None),
    "runbooks:run": (V, None),
    "runbooks:run_body": (V, None),
    "runbooks:run_export": (V, None),
    "runbooks:run_abandon": (None, R),
    "runbooks:step_record": (None, R),
    "runbooks:step_check": (V, None),
    "runbooks:step_action": (None, R),  # and the lead role for RDS failover steps (checked inside)
    "runbooks:step_escalate": (None, R),
    "runbooks:incident_runs": (V, None),
    "runbooks:detail": (V, None),
    "runbooks:start": (V, R),  # GET shows what will start; POST starts it
    # deployments
    "deployments:index": (V, None),
    "deployments:live": (V, None),
    "deployments:panel": (V, None),
    "deployments:banner": (V, None),
    "deployments:chart": (V, None),
    "deployments:create": (None, R),
    "deployments:rollback": (None, R),
    "deployments:scale": (None, R),
    "deployments:approve_scale": (None, L),
    "deployments:automation": (None, R),
    "deployments:rds_failover": (None, L),
    "deployments:images": (None, L),
    "deployments:detail": (V, None),
    "deployments:control": (None, R),
    "deployments:freezes": (V, None),
    "deployments:freeze_create": (None, R),
    "deployments:freeze_lift": (None, L),
    "deployments:dora": (V, None),
    "deployments:templates": (V, None),
    # on call
    "oncall:index": (V, None),
    "oncall:panel": (V, None),
    "oncall:take": (None, R),  # for oneself
    "oncall:override_delete": (None, R),  # one's own; others' need the lead role (checked inside)
    "oncall:me": (V, None),
    "oncall:contact_add": (None, V),  # one's own contact methods and rules
    "oncall:contact_verify": (None, V),
    "oncall:contact_resend": (None, V),
    "oncall:contact_delete": (None, V),
    "oncall:test_page": (None, V),
    "oncall:rule_add": (None, V),
    "oncall:rule_delete": (None, V),
    "oncall:me_feed_reset": (None, V),
    "oncall:personal_feed": (PUBLIC, None),  # the secret token is the credential; a wrong one is a 404
    "oncall:schedule_feed": (PUBLIC, None),
    "oncall:schedule_feed_reset": (None, L),
    # handoff
    "handoff:panel": (V, None),
    "handoff:note_write": (None, R),
    # inbound: an email page's link; its signed single-use token is the credential (a dead one is a 404), GET only shows
    "inbound:email_action": (PUBLIC, PUBLIC),
    # heartbeats: pause and resume for responders, a new ping token for leads
    "heartbeats:list": (V, None),
    "heartbeats:pause": (None, R),
    "heartbeats:resume": (None, R),
    "heartbeats:token": (None, L),
    # incident command: responders declare and command; everyone reads; the public status page needs no login (404 when off)
    "command:declare": (None, R),
    "command:panel": (V, None),
    "command:action_items": (V, None),
    "command:action_state": (None, R),
    "command:incident": (V, None),
    "command:role_take": (None, R),
    "command:sev_change": (None, R),
    "command:promote": (None, R),
    "command:merge": (None, R),
    "command:update_post": (None, R),
    "command:subscriber_add": (None, R),
    "command:review": (V, R),  # GET shows the measured facts; POST saves the narrative
    "command:review_markdown": (V, None),
    "command:review_print": (V, None),
    "command:action_add": (None, R),
    "status:staff": (V, None),
    "status:public": (PUBLIC, None),
    "sandbox:messages": (V, None),  # the sandbox only: its stand-ins hold no real person's messages
    "sandbox:message_answer": (None, R),  # answers a page as the phone it went to (signed like Twilio)
}

# Routes where a dummy kwarg would hide the permission check behind a 404: the check runs after the
# object is looked up, so the case builds a real object (see _real_kwargs).
NEEDS_REAL_OBJECT = {"runbooks:start"}


# ------------------------------------------------------------------------------------------------
# Discovery


def _walk(resolver: URLResolver, prefix: str = "", namespace: str | None = None):
    for p in resolver.url_patterns:
        route = str(p.pattern)
        if isinstance(p, URLResolver):
            if (prefix + route).startswith(SKIPPED_PREFIXES):
                continue
            ns = p.namespace
            full_ns = f"{namespace}:{ns}" if namespace and ns else (ns or namespace)
            yield from _walk(p, prefix + route, full_ns)
        elif isinstance(p, URLPattern):
            if (prefix + route).startswith(SKIPPED_PREFIXES):
                continue
            name = p.name
            if name is None:
                yield f"<unnamed {prefix + route}>", p
                continue
            yield (f"{namespace}:{name}" if namespace else name), p


def page_routes() -> dict[str, URLPattern]:
    return dict(_walk(get_resolver()))


def _dummy(converter) -> object:
    if isinstance(converter, UUIDConverter):
        return uuid.uuid4()
    if isinstance(converter, IntConverter):
        return 1
    if isinstance(converter, SlugConverter):
        return "sandbox"
    if isinstance(converter, StringConverter):
        return "x"
    raise AssertionError(f"no dummy value for converter {converter!r}: teach _dummy about it")


def _url(name: str, pattern: URLPattern, kwargs: dict | None = None) -> str:
    if kwargs is None:
        kwargs = {k: _dummy(c) for k, c in pattern.pattern.converters.items()}
    return reverse(name, kwargs=kwargs)


def _real_kwargs(name: str) -> dict:
    if name == "runbooks:start":
        from runbooks.models import Runbook

        runbook = Runbook.objects.order_by("slug").first()
        if runbook is None:
            from django.core.management import call_command

            call_command("seed_defaults", verbosity=0)
            runbook = Runbook.objects.order_by("slug").first()
        assert runbook is not None, "seed_defaults created no runbook"
        return {"slug": runbook.slug}
    raise AssertionError(name)


ROUTES = page_routes()


def test_every_page_route_has_a_matrix_entry():
    missing = sorted(set(ROUTES) - set(MATRIX))
    assert not missing, (
        "page routes without an entry in tests/test_authz_matrix.py MATRIX (say who may GET and POST them): "
        + ", ".join(missing)
    )


def test_matrix_has_no_stale_entries():
    stale = sorted(set(MATRIX) - set(ROUTES))
    assert not stale, "MATRIX entries for routes that no longer exist: " + ", ".join(stale)


def test_matrix_values_are_roles():
    for name, pair in MATRIX.items():
        for least in pair:
            assert least is None or least == PUBLIC or least in RANK and least != "anonymous", (name, least)


# ------------------------------------------------------------------------------------------------
# Pages


def _is_login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith(LOGIN_URL)


def _denied(response, role: str, htmx: bool) -> bool:
    if role == "anonymous":
        if htmx:
            return response.status_code == 401 and response.get("HX-Redirect", "").startswith(LOGIN_URL)
        return _is_login_redirect(response)
    return response.status_code == 403


def _call(client, method: str, url: str, htmx: bool = False):
    headers = {"HX-Request": "true"} if htmx else {}
    if method == "GET":
        return client.get(url, headers=headers)
    return client.post(url, data={}, headers=headers)


def _role_allowed(least: str, role: str) -> bool:
    return least == PUBLIC or (role != "anonymous" and RANK[role] >= RANK[least])


@pytest.mark.usefixtures("growth_phases")  # pages that show the phase read the seeded phases
@pytest.mark.django_db
@pytest.mark.parametrize("name", sorted(ROUTES))
def test_page_route_matrix(name, client, users_by_role):
    assert name in MATRIX, f"route {name!r} ({ROUTES[name].pattern}) has no entry in MATRIX"
    pattern = ROUTES[name]
    url = _url(name, pattern, _real_kwargs(name) if name in NEEDS_REAL_OBJECT else None)
    get_least, post_least = MATRIX[name]
    failures = []
    for role in ROLES:
        client.logout()
        if role != "anonymous":
            client.force_login(users_by_role[role])
        for method, least in (("GET", get_least), ("POST", post_least)):
            for htmx in (False, True) if role == "anonymous" else (False,):
                before = AuditEvent.objects.count()
                response = _call(client, method, url, htmx)
                changed = AuditEvent.objects.count() - before
                code = response.status_code
                where = f"{method} {url} as {role}{' (htmx)' if htmx else ''} -> {code}"
                if least is None:
                    if not (code == 405 or _denied(response, role, htmx)):
                        failures.append(f"{where}: method not applicable, expected 405 or a denial")
                    if changed:
                        failures.append(f"{where}: wrote {changed} audit row(s) on a method that is not applicable")
                elif least == PUBLIC:
                    # Public: never refused (logout sends everyone on to the login page, which is fine).
                    if code in (401, 403) or (code >= 500 and name != "readyz"):
                        failures.append(f"{where}: a public route refused or failed")
                elif _role_allowed(least, role):
                    if code == 403 or _is_login_redirect(response) or (code == 401 and role == "anonymous"):
                        failures.append(f"{where}: {role} should be allowed (least role {least})")
                    elif code >= 500 and name != "readyz":  # readyz answers 503 when a dependency is down
                        failures.append(f"{where}: server error")
                else:
                    if not _denied(response, role, htmx):
                        failures.append(f"{where}: {role} should be denied (least role {least})")
                    if changed:
                        failures.append(f"{where}: a denied request wrote {changed} audit row(s)")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------------------------------------
# API

TOKENS = ("none", "alerts:write", "read", "actions", "lead")
# What each token scope may call (written out here, not imported, so a change to the grants shows).
GRANTS = {
    "none": set(),
    "alerts:write": {"alerts:write"},
    "read": {"read"},
    "actions": {"read", "actions"},
    "lead": {"read", "actions", "lead"},
}
OWN_AUTH = "own-auth"  # authenticates the sender itself (SNS: signed messages), no bearer token

# "METHOD /api/v1/path" -> the scope it needs.
API_MATRIX: dict[str, str] = {
    "GET /api/v1/audit": "lead",
    "POST /api/v1/alerts/alertmanager": "alerts:write",
    "POST /api/v1/alerts/sns": OWN_AUTH,
    "POST /api/v1/inbound/twilio/sms": OWN_AUTH,  # X-Twilio-Signature over PORTAL_PUBLIC_URL + path
    "POST /api/v1/inbound/twilio/voice": OWN_AUTH,
    "POST /api/v1/inbound/slack/interactions": OWN_AUTH,  # X-Slack-Signature v0 with SLACK_SIGNING_SECRET
    "GET /api/v1/incidents": "read",
    "GET /api/v1/incidents/{incident_id}": "read",
    "POST /api/v1/incidents/{incident_id}/acknowledge": "actions",
    "POST /api/v1/incidents/{incident_id}/resolve": "actions",
    "POST /api/v1/incidents/{incident_id}/notes": "actions",
    "POST /api/v1/incidents/bulk": "actions",
    "GET /api/v1/silences": "read",
    "POST /api/v1/silences": "actions",
    "DELETE /api/v1/silences/{silence_id}": "actions",
    "GET /api/v1/maintenance-windows": "read",
    "POST /api/v1/maintenance-windows": "actions",
    "DELETE /api/v1/maintenance-windows/{window_id}": "actions",
    "GET /api/v1/health/checks": "read",
    "GET /api/v1/health/checks/{slug}": "read",
    "POST /api/v1/health/checks/{slug}/run": "actions",
    "GET /api/v1/health/slos": "read",
    "GET /api/v1/thresholds": "read",
    "PUT /api/v1/thresholds/{metric}/{severity}": "lead",
    "GET /api/v1/environments": "read",
    "GET /api/v1/environments/{name}": "read",
    "GET /api/v1/environments/{name}/drift": "read",
    "GET /api/v1/checklist": "read",
    "GET /api/v1/checklist/{slug}": "read",
    "POST /api/v1/checklist/{slug}/sign-off": "lead",
    "POST /api/v1/checklist/{slug}/revoke": "lead",
    "POST /api/v1/checklist/{slug}/verify": "actions",
    "POST /api/v1/checklist/{slug}/load-test": "actions",
    "GET /api/v1/phases/current": "read",
    "GET /api/v1/runbooks": "read",
    "GET /api/v1/runbooks/runs/{run_id}": "read",
    "POST /api/v1/runbooks/runs/{run_id}/steps/{step_id}": "actions",  # and lead for RDS failover steps
    "POST /api/v1/runbooks/{slug}/runs": "actions",
    "GET /api/v1/runbooks/{slug}": "read",
    "GET /api/v1/deployments": "read",
    "GET /api/v1/strategies": "read",
    "POST /api/v1/strategies": "lead",
    "GET /api/v1/analysis-templates": "read",
    "POST /api/v1/analysis-templates": "lead",
    "GET /api/v1/analysis-templates/{slug}/replay": "read",
    "POST /api/v1/deployments": "actions",
    "GET /api/v1/deployments/{deployment_id}": "read",
    "POST /api/v1/deployments/{deployment_id}/pause": "actions",
    "POST /api/v1/deployments/{deployment_id}/resume": "actions",
    "POST /api/v1/deployments/{deployment_id}/promote": "actions",
    "POST /api/v1/deployments/{deployment_id}/abort": "actions",
    "POST /api/v1/environments/{name}/rollback": "actions",
    "GET /api/v1/environments/{name}/rollback": "read",
    "POST /api/v1/environments/{name}/scale": "actions",
    "GET /api/v1/environments/{name}/freezes": "read",
    "POST /api/v1/environments/{name}/freezes": "actions",
    "DELETE /api/v1/environments/{name}/freezes/{freeze_id}": "lead",
    "GET /api/v1/environments/{name}/dora": "read",
    "GET /api/v1/oncall": "read",
    "GET /api/v1/schedules": "read",
    "POST /api/v1/schedules": "lead",
    "PUT /api/v1/schedules/{slug}": "lead",
    "POST /api/v1/schedules/{slug}/overrides": "actions",  # for the token's own person; lead for others
    "DELETE /api/v1/schedules/{slug}/overrides/{override_id}": "actions",
    "GET /api/v1/heartbeats": "read",
    "POST /api/v1/heartbeats": "lead",
    "POST /api/v1/heartbeats/{slug}/ping": OWN_AUTH,  # the heartbeat's own ping token (Authorization: Bearer), hashed
    "POST /api/v1/heartbeats/{slug}/ping/{token}": OWN_AUTH,  # the ping token in the path; a wrong one is a 401
    "GET /api/v1/heartbeats/{slug}/ping/{token}": OWN_AUTH,
    "POST /api/v1/incidents": "actions",
    "GET /api/v1/incidents/{incident_id}/updates": "read",
    "POST /api/v1/incidents/{incident_id}/updates": "actions",
    "GET /api/v1/incidents/{incident_id}/roles": "read",
    "POST /api/v1/incidents/{incident_id}/roles": "actions",
    "GET /api/v1/incidents/{incident_id}/actions": "read",
    "POST /api/v1/incidents/{incident_id}/actions": "actions",
    "GET /api/v1/action-items": "read",
    "POST /api/v1/inbound/slack/commands": OWN_AUTH,  # X-Slack-Signature v0; the sender's verified Slack method names the person
}

# A minimal body that passes schema validation, so a missing scope is not hidden behind a 422.
API_BODIES: dict[str, dict] = {
    "POST /api/v1/alerts/alertmanager": {"version": "4", "status": "firing", "alerts": []},
    "POST /api/v1/incidents/{incident_id}/notes": {"text": "authz matrix"},
    "POST /api/v1/incidents/bulk": {"action": "acknowledge", "ids": []},
    "POST /api/v1/silences": {"matchers": {"environment": "authz"}, "ends_at": "2030-01-01T00:00:00Z", "reason": "authz matrix"},
    "POST /api/v1/maintenance-windows": {"environment": "authz", "starts_at": "2030-01-01T00:00:00Z", "duration_minutes": 60,
                                         "reason": "authz matrix"},
    "POST /api/v1/checklist/{slug}/sign-off": {"note": ""},
    "POST /api/v1/checklist/{slug}/revoke": {"reason": "authz matrix"},
    "POST /api/v1/runbooks/runs/{run_id}/steps/{step_id}": {"status": "done"},
    "POST /api/v1/runbooks/{slug}/runs": {},
    "POST /api/v1/deployments": {"version": "v0.0.0-authz"},
    "POST /api/v1/strategies": {"slug": "authz", "template": "nope"},
    "POST /api/v1/analysis-templates": {"slug": "authz", "alpha": 0.9},
    "POST /api/v1/environments/{name}/scale": {"colour": "blue", "desired": 1, "reason": "authz matrix"},
    "POST /api/v1/environments/{name}/freezes": {"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-01T01:00:00Z",
                                                 "reason": "authz matrix"},
    "POST /api/v1/schedules": {"slug": "authz", "layers": []},
    "POST /api/v1/heartbeats": {"name": "authz", "period_seconds": 60, "grace_seconds": 0},
    "POST /api/v1/incidents": {"title": "authz matrix", "severity": "SEV3"},
    "POST /api/v1/incidents/{incident_id}/updates": {"status": "investigating", "message": "authz matrix"},
    "POST /api/v1/incidents/{incident_id}/roles": {"role": "commander"},
    "POST /api/v1/incidents/{incident_id}/actions": {"title": "authz matrix"},
    "PUT /api/v1/schedules/{slug}": {},
    "PUT /api/v1/thresholds/{metric}/{severity}": {"value": 5},
    "POST /api/v1/schedules/{slug}/overrides": {"user": "nobody", "starts_at": "2030-01-01T00:00:00Z",
                                                "ends_at": "2030-01-01T01:00:00Z"},
}

PATH_DUMMIES = {"slug": "sandbox", "name": "sandbox", "step_id": "x"}


def api_operations() -> list[str]:
    from portal.api import api

    schema = api.get_openapi_schema()
    ops = []
    for path, methods in schema["paths"].items():
        for method in methods:
            if method.lower() in ("get", "post", "put", "patch", "delete"):
                ops.append(f"{method.upper()} {path}")
    return sorted(ops)


API_OPS = api_operations()


def _api_url(path: str) -> str:
    def sub(m):
        key = m.group(1)
        return PATH_DUMMIES.get(key, str(uuid.uuid4()))

    return re.sub(r"{(\w+)}", sub, path)


def test_every_api_operation_has_a_matrix_entry():
    missing = sorted(set(API_OPS) - set(API_MATRIX))
    assert not missing, "API operations without an entry in API_MATRIX (say which scope they need): " + ", ".join(missing)
    stale = sorted(set(API_MATRIX) - set(API_OPS))
    assert not stale, "API_MATRIX entries for operations that no longer exist: " + ", ".join(stale)


@pytest.mark.usefixtures("growth_phases")  # pages that show the phase read the seeded phases
@pytest.mark.django_db
@pytest.mark.parametrize("op", API_OPS)
def test_api_operation_matrix(op, api_client, make_token):
    assert op in API_MATRIX, f"API operation {op!r} has no entry in API_MATRIX"
    needed = API_MATRIX[op]
    method, path = op.split(" ", 1)
    url = _api_url(path)
    body = API_BODIES.get(op, {})
    tokens = {scope: make_token(scope) for scope in TOKENS if scope != "none"}
    failures = []

    def call(token):
        if method == "GET":
            return api_client.get(url, token=token)
        if method in ("PUT", "DELETE"):
            return api_client.c.generic(method, url, json.dumps(body), content_type="application/json",
                                        headers=api_client._h(token))
        return api_client.post(url, body, token=token)

    cases = [(scope, tokens.get(scope)) for scope in TOKENS] + [("invalid", "ftw_not-a-real-token")]
    for scope, raw in cases:
        before = AuditEvent.objects.count()
        response = call(raw)
        changed = AuditEvent.objects.count() - before
        code = response.status_code
        where = f"{op} ({url}) with token {scope} -> {code} {response.content[:200]!r}"
        if code >= 500:
            failures.append(f"{where}: server error")
        if needed == OWN_AUTH:
            # No bearer token involved: a dummy, unsigned body is refused whoever sends it.
            if code not in (400, 401, 403, 422):
                failures.append(f"{where}: an unsigned delivery must be refused")
            if changed:
                failures.append(f"{where}: a refused delivery wrote {changed} audit row(s)")
            continue
        if scope in ("none", "invalid"):
            if code != 401:
                failures.append(f"{where}: expected 401 without a valid token")
            elif response.json().get("error") != "unauthorized":
                failures.append(f"{where}: 401 body is not the JSON error shape")
        elif needed not in GRANTS[scope]:
            if code != 403:
                failures.append(f"{where}: expected 403 (needs {needed})")
            elif response.json().get("error") != "forbidden":
                failures.append(f"{where}: 403 body is not the JSON error shape")
        elif code in (401, 403):
            failures.append(f"{where}: a {scope} token should be allowed (needs {needed})")
        if (scope in ("none", "invalid") or (needed not in GRANTS.get(scope, set()))) and changed:
            failures.append(f"{where}: a refused call wrote {changed} audit row(s)")
        if method == "POST" and scope in GRANTS and scope != "none" and needed not in GRANTS[scope]:
            # The scope is checked before the body: an empty or malformed body still gets 403, and changes nothing.
            for bad in ("{}", "[]", "not json"):
                before = AuditEvent.objects.count()
                refused = api_client.post(url, token=raw, raw=bad)
                changed = AuditEvent.objects.count() - before
                if refused.status_code != 403 or changed:
                    failures.append(f"{op} with token {scope} and body {bad!r} -> {refused.status_code}, "
                                    f"{changed} audit row(s): expected 403 and no change")
    assert not failures, "\n".join(failures)


# ------------------------------------------------------------------------------------------------
# Second-level checks the dummy-object matrix cannot reach: a runbook's RDS failover step needs the
# lead role (page) and the lead scope (API), although the step endpoints need only respond/actions.


@pytest.mark.django_db
def test_runbook_failover_step_needs_lead_on_page_and_api(client, users_by_role, api_client, make_token, monkeypatch):
    import dataclasses

    from runbooks import actions, services
    from runbooks.loader import sync_library
    from runbooks.models import Runbook, StepOutcome

    called = []
    monkeypatch.setitem(actions.ACTIONS, "rds_failover", dataclasses.replace(
        actions.ACTIONS["rds_failover"], func=lambda **kw: called.append(1) or {"words": "failover requested"}))
    assert sync_library().ok
    responder = users_by_role["responder"]
    run = services.run_start(runbook=Runbook.objects.get(slug="database-issues"), actor=responder)
    for step in ("connections", "slow-queries", "locks", "backups"):
        services.step_record(run=run, step_id=step, status="done", actor=responder)
    services.step_record(run=run, step_id="failover-needed", status="done", answer="yes-failover", actor=responder)
    services.step_record(run=run, step_id="pause-automation", status="skipped", note="already paused", actor=responder)
    outcomes = StepOutcome.objects.count()

    page = f"/runbooks/runs/{run.public_id}/steps/failover/action/"
    api = f"/api/v1/runbooks/runs/{run.public_id}/steps/failover"
    for role in ("viewer", "responder"):
        client.force_login(users_by_role[role])
        before = AuditEvent.objects.count()
        assert client.post(page).status_code == 403, role
        assert AuditEvent.objects.count() == before
    for scope in ("read", "actions"):
        token = make_token(scope)  # creating a token is itself audited: count after it
        before = AuditEvent.objects.count()
        r = api_client.post(api, {"status": "done"}, token=token)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (scope, r.content)
        assert AuditEvent.objects.count() == before
    assert not called and StepOutcome.objects.count() == outcomes

    r = api_client.post(api, {"status": "done"}, token=make_token("lead"))
    assert r.status_code not in (401, 403), r.content
    assert called == [1]
