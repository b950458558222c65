"""Permission checks for views. Every view names the permission it needs; htmx partials too."""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponse
from django.shortcuts import render


def forbidden(request, message: str = "Your role does not allow this.") -> HttpResponse:
    return render(request, "403.html", {"message": message}, status=403)


def perm_required(perm: str):
    """Anonymous users go to the login page (htmx: told to redirect); others without `perm` get 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            user = request.user
            if not user.is_authenticated:
                if getattr(request, "htmx", False):
                    response = HttpResponse(status=401)
                    response["HX-Redirect"] = settings.LOGIN_URL
                    return response
                return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
            if not user.has_perm(perm):
                return forbidden(request)
            return view(request, *args, **kwargs)

        wrapped.required_perm = perm  # type: ignore[attr-defined]
        return wrapped

    return decorator
