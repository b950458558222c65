"""The portal's one error family: every refusal a service raises carries an HTTP status, a code and words.

The API answers `{"error": code, "detail": detail}` with `status` (one handler, portal.api), and pages
show `detail` (one helper, `portal.errors.page_error`). Apps derive their own errors from these
classes; nothing maps statuses per app.
"""

from __future__ import annotations


class PortalError(Exception):
    """A refused or failed action: `status` and `code` are what the API answers, `detail` what a person reads."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, status: int | None = None):
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def as_body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.detail}


class BadRequest(PortalError):
    status, code = 400, "bad_request"


class Forbidden(PortalError):
    status, code = 403, "forbidden"


class NotFound(PortalError):
    status, code = 404, "not_found"


class Conflict(PortalError):
    """Already in progress, or the state moved on (a second click, a race another request won)."""

    status, code = 409, "conflict"


class Invalid(PortalError):
    status, code = 422, "invalid"


class Unavailable(PortalError):
    """A dependency (AWS, a status page, the broker) did not answer; trying again later may work."""

    status, code = 503, "unavailable"
