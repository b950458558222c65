"""Recent-login checks: a production rollback, failover or scale beyond the phase asks for the
password again when the person logged in (or last confirmed it) more than REAUTH_SECONDS ago."""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpResponse
from django.shortcuts import redirect

AUTH_AT_KEY = "portal_auth_at"


@receiver(user_logged_in, dispatch_uid="portal_reauth_login_time")
def _remember_login(sender, request, user, **kwargs):
    if request is not None and hasattr(request, "session"):
        now = time.time()
        request.session[AUTH_AT_KEY] = now
        request.session["portal_login_at"] = now


def mark_confirmed(request) -> None:
    request.session[AUTH_AT_KEY] = time.time()


def needs_reauth(request, environment) -> bool:
    """True when `environment` is production and the password was last given too long ago."""
    if not getattr(environment, "is_production", False):
        return False
    auth_at = request.session.get(AUTH_AT_KEY)
    return auth_at is None or time.time() - float(auth_at) > settings.REAUTH_SECONDS


def reauth_response(request, what: str, back: str | None = None) -> HttpResponse:
    """Send the person to confirm their password, then back to the page they acted from."""
    back = back or request.headers.get("Referer") or "/"
    url = f"/accounts/reauth/?{urlencode({'next': back, 'what': what[:120]})}"
    if getattr(request, "htmx", False):
        response = HttpResponse(status=401)
        response["HX-Redirect"] = url
        return response
    return redirect(url)
