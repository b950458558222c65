"""Each app's API router, mounted on the one NinjaAPI. Add a line when an app gains an api.py."""

from portal.api import api
from portal.audit.api import router as audit_router

api.add_router("/audit", audit_router, tags=["audit"])

# Routers that later apps provide (module path, prefix, tag). Missing modules are skipped so an
# app can start empty.
_OPTIONAL = [
    ("portal.incidents.api", "/", "incidents"),
    ("portal.health.api", "/health", "health"),
    ("portal.cloud.api", "/environments", "environments"),
    ("portal.checklist.api", "/checklist", "checklist"),
    ("portal.phases.api", "/phases", "phases"),
    ("runbooks.api", "/runbooks", "runbooks"),
    ("deployments.api", "/", "deployments"),
    ("portal.oncall.api", "/", "oncall"),
]

import importlib  # noqa: E402
import importlib.util  # noqa: E402

for module_name, prefix, tag in _OPTIONAL:
    if importlib.util.find_spec(module_name) is not None:
        module = importlib.import_module(module_name)
        api.add_router(prefix, module.router, tags=[tag])
