"""Per-request context (request id, remote address, actor) for audit rows written deep in services."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    remote_addr: str = ""


_current: contextvars.ContextVar[RequestContext] = contextvars.ContextVar("portal_request", default=RequestContext())  # noqa: B039 - frozen dataclass


def current() -> RequestContext:
    return _current.get()


def set_current(ctx: RequestContext) -> contextvars.Token:
    return _current.set(ctx)


def reset(token: contextvars.Token) -> None:
    _current.reset(token)
