"""Roles are Django groups holding the portal's permissions; views check permissions, never group names."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission

VIEWER, RESPONDER, LEAD, ADMIN = "viewer", "responder", "lead", "admin"
ROLES = (VIEWER, RESPONDER, LEAD, ADMIN)

ROLE_PERMISSIONS: dict[str, tuple[str, ...]] = {
    VIEWER: ("view_portal",),
    RESPONDER: ("view_portal", "respond"),
    LEAD: ("view_portal", "respond", "sign_off", "approve", "view_audit"),
    ADMIN: ("view_portal", "respond", "sign_off", "approve", "view_audit", "administer"),
}

# Full names as used with user.has_perm().
VIEW = "accounts.view_portal"
RESPOND = "accounts.respond"
SIGN_OFF = "accounts.sign_off"
APPROVE = "accounts.approve"
VIEW_AUDIT = "accounts.view_audit"
ADMINISTER = "accounts.administer"


def ensure_roles() -> None:
    perms = {p.codename: p for p in Permission.objects.filter(content_type__app_label="accounts")}
    if not perms:
        return
    for role, codenames in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        wanted = [perms[c] for c in codenames if c in perms]
        if set(group.permissions.all()) != set(wanted):
            group.permissions.set(wanted)


def role_of(user) -> str:
    """The highest role a user holds (superusers count as admin)."""
    if getattr(user, "is_superuser", False):
        return ADMIN
    names = {g.name for g in user.groups.all()}
    for role in reversed(ROLES):
        if role in names:
            return role
    return ""
