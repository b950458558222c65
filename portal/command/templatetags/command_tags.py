"""`{% load command_tags %}{% incident_command incident %}`: the roles and SEV of an incident, for any page;
`{% command_declare_form %}`: the declare form (the dashboard includes it)."""

from __future__ import annotations

from datetime import UTC, datetime

from django import template

from portal.accounts.roles import RESPOND
from portal.command import selectors, views

register = template.Library()


@register.inclusion_tag("command/_roles.html", takes_context=True)
def incident_command(context, incident):
    request = context.get("request")
    user = getattr(request, "user", None)
    ctx = views.incident_context(incident, user) if user is not None else {"incident": incident, "roles": selectors.roles_of(incident)}
    ctx["request"] = request
    ctx["csrf_token"] = context.get("csrf_token")
    return ctx


@register.inclusion_tag("command/_declare.html", takes_context=True)
def command_declare_form(context):
    request = context.get("request")
    user = getattr(request, "user", None)
    return {**views.declare_context(), "request": request, "csrf_token": context.get("csrf_token"),
            "can_respond": bool(user is not None and user.has_perm(RESPOND))}


@register.filter
def seconds(value) -> str:
    return selectors.fmt_seconds(value)


@register.filter
def when(value) -> str:
    """An ISO time from the measured facts as people read it: 2026-12-02 05:54:56 UTC."""
    if not value:
        return "–"
    try:
        at = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return str(value)
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")

