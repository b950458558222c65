from __future__ import annotations

import re
import time
import uuid

from django.conf import settings
from django.contrib.auth import logout
from django.shortcuts import redirect

from portal import context
from portal.accounts.clientip import client_ip

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RequestIdMiddleware:
    """Gives every request an id (from X-Request-ID when sane) that audit rows and logs carry."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = context.set_current(
            context.RequestContext(request_id=request_id, remote_addr=client_ip(request) or "")
        )
        try:
            response = self.get_response(request)
        finally:
            context.reset(token)
        response["X-Request-ID"] = request_id
        return response


BACKGROUND_HEADER = "X-Portal-Background"


def is_background(request) -> bool:
    """A refresh the page made by itself (htmx polling, a chart reloading), not something a person did.

    portal.js marks those requests; anything unmarked counts as the person's, so a missing mark
    can only keep a session alive longer, never end it early.
    """
    return request.headers.get(BACKGROUND_HEADER) == "1"


class SessionLifetimeMiddleware:
    """Ends a session after SESSION_IDLE_SECONDS without a person's request, and 12 hours after login.

    Background refreshes neither count as activity nor write the session: a dashboard left open
    polls its panels every few seconds, and saving the session on each of those kept an unattended
    screen logged in forever and made every panel request a database write.
    """

    KEY = "portal_login_at"
    SEEN_KEY = "portal_seen_at"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            session = request.session
            now = time.time()
            started = session.get(self.KEY)
            seen = session.get(self.SEEN_KEY)
            if started is not None and now - float(started) > settings.SESSION_ABSOLUTE_SECONDS:
                return self._expired(request)
            if seen is not None and now - float(seen) > settings.SESSION_IDLE_SECONDS:
                return self._expired(request)
            if started is None:
                session[self.KEY] = now
            if not is_background(request):
                session[self.SEEN_KEY] = now
        return self.get_response(request)

    @staticmethod
    def _expired(request):
        logout(request)
        return redirect(f"{settings.LOGIN_URL}?next={request.path}&expired=1")


class SecurityHeadersMiddleware:
    """A strict Content Security Policy (no inline scripts) and a few headers Django does not set."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith("/admin/"):
            response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        response.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        return response
