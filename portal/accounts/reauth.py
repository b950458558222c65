"""Recent-login checks: every production change asks for the password again when the person logged
in (or last confirmed it) more than REAUTH_SECONDS ago.

Views apply `@step_up(what=..., environment=...)` under their permission decorator; a test walks
the URL map and fails on a changing view that has neither `step_up` nor a reason to go without."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpResponse
from django.shortcuts import redirect

from portal.cloud.models import Environment

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


def any_production():
    """For changes that apply to every environment (threshold rules): the first production one, if any."""
    return Environment.objects.filter(is_production=True).order_by("name").first()


def step_up(*, what: str | Callable, environment: Callable, back: Callable | None = None):
    """Ask for the password before a POST that changes `environment(request, *args, **kwargs)` when
    that environment is production and the password is older than REAUTH_SECONDS.

    `what` says what the person is about to do ("roll back {env}"; `{env}` is the environment's
    name), or is a callable (request, env, *args, **kwargs) -> str. `back` (same arguments as
    `environment`, plus env) is where the confirmation returns to; by default the page acted from.
    GET requests (forms) go through unchecked: only the change asks."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if request.method == "POST":
                env = environment(request, *args, **kwargs)
                if env is not None and needs_reauth(request, env):
                    label = what(request, env, *args, **kwargs) if callable(what) else what.format(env=env.name)
                    url = back(request, env, *args, **kwargs) if back is not None else None
                    return reauth_response(request, label, back=url)
            return view(request, *args, **kwargs)

        wrapped.step_up = True  # type: ignore[attr-defined]
        return wrapped

    return decorator
