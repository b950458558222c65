"""JSON API for growth phases (mounted at /api/v1/phases)."""

from __future__ import annotations

from ninja import Router

from portal.api_auth import require_scope
from portal.phases.status import phase_status

router = Router()


@router.get("/current", summary="The current growth phase and how the platform stands against it")
def current(request):
    require_scope(request, "read")
    return phase_status(live=True).as_json()
