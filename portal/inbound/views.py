"""Pages of the inbound app: the email-link confirmation page. A GET shows what the link would do and
changes nothing (mail scanners and link previews fetch links); the button POSTs. No login session: the
link's token is the credential and acts as the page's person."""

from __future__ import annotations

from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from portal.errors import PortalError
from portal.inbound import email_links


@require_http_methods(["GET", "POST"])
def email_action(request, token: str):
    try:
        link = email_links.link_check(token)
    except email_links.LinkDead as exc:
        return render(request, "inbound/email_action.html", {"dead": exc.detail}, status=exc.status)
    if request.method == "GET":
        return render(request, "inbound/email_action.html", {"link": link})
    try:
        outcome = email_links.link_use(token)
    except PortalError as exc:
        return render(request, "inbound/email_action.html", {"dead": exc.detail}, status=exc.status)
    return render(request, "inbound/email_action.html", {"done": outcome, "link": link})
