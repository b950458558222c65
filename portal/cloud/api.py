"""JSON API for environments (mounted at /api/v1/environments)."""

from __future__ import annotations

from ninja import Router

from portal.api_auth import require_scope
from portal.cloud.drift import drift_summary, environment_drift
from portal.cloud.errors import CloudError
from portal.cloud.models import Environment
from portal.cloud.selectors import environment_json
from portal.errors import NotFound, Unavailable

router = Router()


@router.get("", summary="The environments the portal manages")
def list_environments(request):
    require_scope(request, "read")
    return {"environments": [{"name": e.name, "region": e.region, "is_production": e.is_production,
                              "automation_paused": e.automation_paused} for e in Environment.objects.all()]}


@router.get("/{name}", summary="An environment's groups, listener weights and automation state")
def get_environment(request, name: str):
    require_scope(request, "read")
    env = Environment.objects.filter(name=name).first()
    if env is None:
        raise NotFound(f"no environment named {name!r}")
    try:
        return environment_json(env)
    except CloudError as exc:
        raise Unavailable(exc.detail, code="cloud_error") from exc  # this endpoint has always named it so


@router.get("/{name}/drift", summary="The account against the plan and the phase's bounds, line by line (ok or drifted)")
def get_drift(request, name: str):
    require_scope(request, "read")
    env = Environment.objects.filter(name=name).first()
    if env is None:
        raise NotFound(f"no environment named {name!r}")
    lines = environment_drift(env)
    return {"environment": env.name, "summary": drift_summary(lines), "lines": [x.as_dict() for x in lines]}
