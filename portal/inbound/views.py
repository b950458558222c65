"""Pages of the inbound app: the email-link confirmation page (GET shows, POST acts)."""

from __future__ import annotations

from django.http import Http404


def email_action(request, token: str):
    raise Http404("Not yet")
