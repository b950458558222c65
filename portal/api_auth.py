"""The API's authentication: bearer tokens (no cookies), scopes, and production-environment grants.

Routers import from here, never from the root (portal.api), so the root can import every router.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from portal.accounts.models import ApiToken, hash_token
from portal.errors import Forbidden, Unauthorized

LAST_USED_EVERY = timedelta(minutes=1)


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
            raise Forbidden(f"this token's scope ({api_token.scope}) does not allow {self.scope!r}")
        return api_token


def require_scope(request: HttpRequest, scope: str, environment=None) -> ApiToken:
    """The request's token, which must grant `scope` (and may change `environment`, when given)."""
    token = getattr(request, "auth", None)
    if not isinstance(token, ApiToken):
        raise Unauthorized("a bearer token is required")
    if not token.grants(scope):
        raise Forbidden(f"this token's scope ({token.scope}) does not allow {scope!r}")
    if environment is not None:
        require_environment_grant(token, environment)
    return token


def require_environment_grant(token, environment) -> None:
    """A token of `actions` or `lead` scope changes a production environment only with a grant by name
    (`create_api_token --environment NAME`). Call it wherever an API write resolves its environment."""
    if isinstance(token, ApiToken) and not token.may_change(environment):
        raise Forbidden(f"this token has no grant for the production environment {environment.name!r} "
                        f"(create a token with --environment {environment.name})")
