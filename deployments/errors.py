"""The deployments app's refusals, in the portal's one error family (portal.errors).

Each keeps the status and code the API has always answered; `except Conflict` (or any portal.errors
class) catches the matching deployments error too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portal.errors import Conflict, Forbidden, Invalid, PortalError

if TYPE_CHECKING:
    from deployments.models import Deployment, Rollback


class DeploymentError(PortalError):
    """A refused action: `status` and `code` map onto the API's {"error", "detail"}."""

    status, code = 400, "bad_request"


class AlreadyInProgress(DeploymentError, Conflict):
    status, code = 409, "conflict"

    def __init__(self, detail: str, *, rollback: Rollback | None = None, deployment: Deployment | None = None):
        super().__init__(detail)
        self.rollback = rollback
        self.deployment = deployment


class NothingToRollBack(AlreadyInProgress):
    """Traffic is already where a rollback would send it (e.g. the other click finished first)."""


class InvalidState(DeploymentError, Conflict):
    status, code = 409, "conflict"


class CooldownActive(DeploymentError, Conflict):
    status, code = 409, "conflict"


class InvalidInput(DeploymentError, Invalid):
    status, code = 422, "invalid"


class NeedsApproval(DeploymentError, Forbidden):
    status, code = 403, "forbidden"


class ImageNotApproved(DeploymentError, Invalid):
    """The release would boot an image that is not on the environment's allow-list (deployments.images)."""

    status, code = 422, "image_not_approved"
