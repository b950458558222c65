"""The portal's one error family: every refusal a service raises carries an HTTP status, a code and words.

The API answers `{"error": code, "detail": detail}` with `status` (one handler, portal.api_errors), and pages
show `detail` (one helper, `portal.errors.page_error`). Apps derive their own errors from these
classes; nothing maps statuses per app.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url


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


class Unauthorized(PortalError):
    status, code = 401, "unauthorized"


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


def page_error(request: HttpRequest, exc: PortalError, *, back: str, **back_kwargs) -> HttpResponse:
    """A page's answer to a refused action: the 403 page for a refusal of the person, otherwise the
    words as an error message on the page `back` (a URL or a URL name, with `back_kwargs`).
    An htmx request is told to go there (HX-Redirect) rather than have a redirect swapped into a region."""
    if exc.status == Forbidden.status:
        return render(request, "403.html", {"message": exc.detail}, status=Forbidden.status)
    messages.error(request, exc.detail)
    url = resolve_url(back, **back_kwargs)
    if getattr(request, "htmx", False):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)
