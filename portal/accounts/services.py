from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.db import transaction

from portal.accounts.models import ApiToken, TokenScope, hash_token
from portal.accounts.roles import ADMIN, ROLES, ensure_roles
from portal.audit.services import audit_record


class AccountError(ValueError):
    pass


@transaction.atomic
def user_create_or_update(*, username: str, role: str, password: str, email: str = "", actor=None, validate: bool = True):
    """Create the user or update its password and role; the user holds exactly one role."""
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not username or len(username) > 150:
        raise AccountError("username must be 1-150 characters")
    User = get_user_model()
    user = User.objects.filter(username=username).first()
    if validate:
        validate_password(password, user=user)
    ensure_roles()
    created = user is None
    before = None if created else {"role": [g.name for g in user.groups.all()], "is_active": user.is_active}
    if created:
        user = User(username=username, email=email)
    user.set_password(password)
    user.is_staff = role == ADMIN
    user.is_active = True
    if email:
        user.email = email
    user.save()
    user.groups.set([Group.objects.get(name=role)])
    audit_record(
        actor=actor,
        verb="user.create" if created else "user.update",
        target=user,
        before=before,
        after={"role": [role], "is_active": True},
    )
    return user, created


@transaction.atomic
def api_token_create(*, name: str, scope: str, actor=None) -> tuple[ApiToken, str]:
    """Create a token; the raw value is returned once and only its hash is kept."""
    if scope not in TokenScope.values:
        raise AccountError(f"unknown scope {scope!r}; choose one of {', '.join(TokenScope.values)}")
    if ApiToken.objects.filter(name=name).exists():
        raise AccountError(f"a token named {name!r} exists already")
    raw = ApiToken.generate()
    token = ApiToken.objects.create(
        name=name, scope=scope, token_hash=hash_token(raw), prefix=raw[:10],
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(actor=actor, verb="api_token.create", target=token, after={"name": name, "scope": scope})
    return token, raw
