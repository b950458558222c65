"""Who did something: a person, an API token or a part of the portal itself.

Every service takes `actor` as a user, an ApiToken, an Actor or a system string and reads it through
`Actor.of`, so an audit row, an incident timeline, a deployment event and a checklist signature label
the same actor the same way: `alice`, `token:ci-deploy`, `system:rollout`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from portal.accounts.models import ApiToken

LABEL_MAX = 150  # the width of every *_label column

SYSTEM_PREFIX = "system:"


@dataclass(frozen=True)
class Actor:
    kind: Literal["user", "token", "system"]
    user: Any = None  # the signed-in user (kind "user")
    token: ApiToken | None = None  # the API token (kind "token")
    name: str = ""  # the part of the portal (kind "system"): "rollout", "health", "manage.py drill"

    @classmethod
    def system(cls, name: str = "") -> Actor:
        return cls(kind="system", name=name)

    @classmethod
    def of(cls, value: Any) -> Actor:
        """A user, an ApiToken, an Actor, a 'system:<name>' string or None (the portal itself)."""
        if isinstance(value, Actor):
            return value
        if value is None:
            return SYSTEM
        if isinstance(value, ApiToken):
            return cls(kind="token", token=value)
        if isinstance(value, str):
            if value == "system":
                return SYSTEM
            return cls.system(value.removeprefix(SYSTEM_PREFIX))
        if getattr(value, "is_authenticated", False):
            return cls(kind="user", user=value)
        # An anonymous user never reaches a change; if one does, say so rather than guess a name.
        return cls.system("anonymous")

    @property
    def label(self) -> str:
        if self.kind == "user":
            label = self.user.get_username()
        elif self.kind == "token":
            assert self.token is not None
            label = self.token.audit_label
        else:
            label = f"{SYSTEM_PREFIX}{self.name}" if self.name else "system"
        return label[:LABEL_MAX]

    @property
    def person(self) -> Any:
        """The person behind the actor: the user, or whoever created the token (None for the portal)."""
        if self.kind == "token":
            assert self.token is not None
            return self.token.created_by
        return self.user

    @property
    def is_system(self) -> bool:
        return self.kind == "system"

    def __str__(self) -> str:
        return self.label


SYSTEM = Actor.system()
