"""How the API answers an error: always `{"error": code, "detail": words}` with the HTTP status.

One handler for the portal's error family (portal.errors.PortalError and every app error derived
from it), plus the three ninja raises itself (authentication, validation, HttpError).
"""

from __future__ import annotations

from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError

from portal.errors import PortalError

HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "too_large", 422: "invalid", 503: "unavailable"}


def install_error_handlers(api: NinjaAPI) -> None:
    @api.exception_handler(PortalError)
    def portal_error(request, exc: PortalError):
        return api.create_response(request, exc.as_body(), status=exc.status)

    @api.exception_handler(AuthenticationError)
    def authentication_error(request, exc):
        return api.create_response(
            request, {"error": "unauthorized", "detail": "missing or invalid bearer token"}, status=401
        )

    @api.exception_handler(NinjaValidationError)
    def validation_error(request, exc: NinjaValidationError):
        parts = []
        for err in exc.errors[:20]:
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "payload"))
            parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
        return api.create_response(
            request, {"error": "invalid", "detail": "; ".join(parts) or "invalid request"}, status=422
        )

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError):
        return api.create_response(
            request, {"error": HTTP_CODES.get(exc.status_code, "error"), "detail": str(exc)}, status=exc.status_code
        )
