from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.utils import timezone

from portal.accounts.models import ApiToken, TokenScope, hash_token
from portal.accounts.roles import ADMIN, ROLES, ensure_roles
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.cloud.models import Environment
from portal.errors import Invalid


class AccountError(Invalid, ValueError):
    """An account or token that cannot be made as asked (unknown role, bad name, bad expiry)."""


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
    if user is None:
        before = None
        user = User(username=username, email=email)
    else:
        before = {"role": [g.name for g in user.groups.all()], "is_active": user.is_active}
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
def api_token_create(
    *, name: str, scope: str, actor=None, expires_at: datetime | None = None, environments: list[str] | tuple[str, ...] = (),
) -> tuple[ApiToken, str]:
    """Create a token; the raw value is returned once and only its hash is kept.

    `expires_at`: the token answers 401 from then on. `environments`: the production environments an
    `actions` or `lead` token may change (without a grant it gets 403 there)."""
    if scope not in TokenScope.values:
        raise AccountError(f"unknown scope {scope!r}; choose one of {', '.join(TokenScope.values)}")
    if not name or len(name) > 100:
        raise AccountError("a token name is 1-100 characters")
    if ApiToken.objects.filter(name=name).exists():
        raise AccountError(f"a token named {name!r} exists already")
    if expires_at is not None and expires_at <= timezone.now():
        raise AccountError("the expiry must be in the future")
    grants = sorted({e.strip() for e in environments if e and e.strip()})
    if grants:
        unknown = set(grants) - set(Environment.objects.filter(name__in=grants).values_list("name", flat=True))
        if unknown:
            raise AccountError(f"no environment named {', '.join(sorted(unknown))}")
    raw = ApiToken.generate()
    token = ApiToken.objects.create(
        name=name, scope=scope, token_hash=hash_token(raw), prefix=raw[:10], expires_at=expires_at, environments=grants,
        created_by=Actor.of(actor).user,
    )
    audit_record(actor=actor, verb="api_token.create", target=token,
                 after={"name": name, "scope": scope, "expires_at": expires_at, "environments": grants})
    return token, raw


def expiry_in_days(days: int | None) -> datetime | None:
    if days is None:
        return None
    if days < 1:
        raise AccountError("--expires-days is a whole number of days, 1 or more")
    return timezone.now() + timedelta(days=days)


@transaction.atomic
def api_token_revoke(*, token: ApiToken, actor=None) -> bool:
    """Revoke a token: its next call gets 401 (authentication reads the row on every call).

    Returns False when it was already revoked (revoking twice is a no-op)."""
    now = timezone.now()
    changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)
    if not changed:
        return False
    token.revoked_at = now
    audit_record(actor=actor, verb="api_token.revoke", target=token, before={"revoked_at": None},
                 after={"revoked_at": now})
    return True
