"""The JSON API under /api/v1/: bearer tokens only (no cookies), JSON errors {"error", "detail"}.

Apps add their routers in portal/api_routers.py; endpoints check a scope with `require_scope`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security import HttpBearer

from portal.accounts.clientip import docs_guard
from portal.accounts.models import ApiToken, hash_token

log = logging.getLogger(__name__)
LAST_USED_EVERY = timedelta(minutes=1)


class ApiError(Exception):
    """Raise from an endpoint or service to answer {"error": code, "detail": words} with `status`."""

    def __init__(self, status: int, code: str, detail: str):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        if not token or len(token) > 200:
            return None
        now = timezone.now()
        # Read on every call, never cached: a revoked or expired token gets 401 on its next call.
        api_token = ApiToken.objects.filter(ApiToken.usable_q(now), token_hash=hash_token(token)).first()
        if api_token is None:
            return None
        # Touch at most once a minute, conditionally, so concurrent calls write the row once.
        if api_token.last_used_at is None or api_token.last_used_at < now - LAST_USED_EVERY:
            ApiToken.objects.filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY), pk=api_token.pk
            ).update(last_used_at=now)
        request.api_token = api_token  # type: ignore[attr-defined]
        return api_token


class ScopedTokenAuth(TokenAuth):
    """A token that must also grant `scope`, checked before the body is parsed: a caller without
    the scope gets 403 whatever it sends, never a 422 that describes the body it may not use.
    Every POST operation names its scope this way (the webhooks check theirs before reading the body)."""

    def __init__(self, scope: str):
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        api_token = super().authenticate(request, token)
        if api_token is not None and not api_token.grants(self.scope):
            raise ApiError(403, "forbidden", f"this token's scope ({api_token.scope}) does not allow {self.scope!r}")
        return api_token


def require_scope(request: HttpRequest, scope: str, environment=None) -> ApiToken:
    """The request's token, which must grant `scope` (and may change `environment`, when given)."""
    token = getattr(request, "auth", None)
    if not isinstance(token, ApiToken):
        raise ApiError(401, "unauthorized", "a bearer token is required")
    if not token.grants(scope):
        raise ApiError(403, "forbidden", f"this token's scope ({token.scope}) does not allow {scope!r}")
    if environment is not None:
        require_environment_grant(token, environment)
    return token


def require_environment_grant(token, environment) -> None:
    """A token of `actions` or `lead` scope changes a production environment only with a grant by name
    (`create_api_token --environment NAME`). Call it wherever an API write resolves its environment."""
    if isinstance(token, ApiToken) and not token.may_change(environment):
        raise ApiError(403, "forbidden", f"this token has no grant for the production environment {environment.name!r} "
                                         f"(create a token with --environment {environment.name})")


api = NinjaAPI(
    title="FairTradeWorker Ops Portal API",
    version="1",
    urls_namespace="api",
    openapi_url="/openapi.json",
    docs_url="/docs",
    auth=TokenAuth(),
    docs_decorator=docs_guard,
)


@api.exception_handler(ApiError)
def _api_error(request, exc: ApiError):
    return api.create_response(request, {"error": exc.code, "detail": exc.detail}, status=exc.status)


@api.exception_handler(AuthenticationError)
def _auth_error(request, exc):
    return api.create_response(
        request, {"error": "unauthorized", "detail": "missing or invalid bearer token"}, status=401
    )


@api.exception_handler(NinjaValidationError)
def _validation_error(request, exc: NinjaValidationError):
    parts = []
    for err in exc.errors[:20]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "payload"))
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return api.create_response(request, {"error": "invalid", "detail": "; ".join(parts) or "invalid request"}, status=422)


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    codes = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
             409: "conflict", 413: "too_large", 422: "invalid", 503: "unavailable"}
    return api.create_response(request, {"error": codes.get(exc.status_code, "error"), "detail": str(exc)}, status=exc.status_code)


from portal import api_routers  # noqa: E402,F401  (registers the apps' routers)
