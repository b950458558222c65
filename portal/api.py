"""The JSON API under /api/v1/: the one NinjaAPI, its error handlers, and every app's router.

Auth lives in portal.api_auth and error answers in portal.api_errors; routers import those, never
this module, so adding a router is one line here. The router modules name the operation ids
(`<module>_<function>`), which scripts/schemathesis.sh and tests/test_authz_matrix.py rely on.
"""

from __future__ import annotations

from ninja import NinjaAPI

from deployments.api import router as deployments_router
from deployments.api_release_ops import router as release_ops_router
from deployments.api_strategies import router as strategies_router
from portal.accounts.clientip import docs_guard
from portal.api_auth import TokenAuth
from portal.api_errors import install_error_handlers
from portal.audit.api import router as audit_router
from portal.checklist.api import router as checklist_router
from portal.cloud.api import router as environments_router
from portal.command.api import router as command_router
from portal.health.api import router as health_router
from portal.health.api import thresholds_router
from portal.heartbeats.api import router as heartbeats_router
from portal.inbound.api_slack import router as inbound_slack_router
from portal.inbound.api_twilio import router as inbound_twilio_router
from portal.incidents.api import router as incidents_router
from portal.oncall.api import router as oncall_router
from portal.phases.api import router as phases_router
from runbooks.api import router as runbooks_router

api = NinjaAPI(
    title="FairTradeWorker Ops Portal API",
    version="1",
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
    auth=TokenAuth(),
    docs_decorator=docs_guard,
)
install_error_handlers(api)

# The order is the OpenAPI document's order.
api.add_router("/audit", audit_router, tags=["audit"])
api.add_router("/", incidents_router, tags=["incidents"])
api.add_router("/health", health_router, tags=["health"])
api.add_router("/thresholds", thresholds_router, tags=["health"])
api.add_router("/environments", environments_router, tags=["environments"])
api.add_router("/checklist", checklist_router, tags=["checklist"])
api.add_router("/phases", phases_router, tags=["phases"])
api.add_router("/runbooks", runbooks_router, tags=["runbooks"])
api.add_router("/", deployments_router, tags=["deployments"])
api.add_router("/", strategies_router, tags=["deployments"])
api.add_router("/", release_ops_router, tags=["deployments"])
api.add_router("/", oncall_router, tags=["oncall"])
api.add_router("/inbound", inbound_twilio_router, tags=["inbound"])
api.add_router("/inbound", inbound_slack_router, tags=["inbound"])
api.add_router("/heartbeats", heartbeats_router, tags=["heartbeats"])
api.add_router("/", command_router, tags=["command"])
