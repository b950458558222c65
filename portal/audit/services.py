"""The one way to write an audit row. Call it inside the transaction of the change it records.

A change that fails rolls its transaction back, and its audit row with it: `audit_failures`
(or the `audits_failures` decorator) writes the failure's row after the rollback instead.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, models, transaction

from portal import context
from portal.actors import Actor
from portal.audit.models import AuditEvent

log = logging.getLogger(__name__)


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder, default=str))


def actor_columns(actor: Any) -> dict[str, Any]:
    """The audit row's actor columns, written from the one Actor (see portal.actors)."""
    who = Actor.of(actor)
    return {"actor": who.user, "actor_token": who.token, "actor_label": who.label}


def audit_record(
    *,
    actor: Any,
    verb: str,
    target: models.Model | tuple[str, str] | None = None,
    before: Any = None,
    after: Any = None,
    extra: dict | None = None,
    result: str = "ok",
) -> AuditEvent:
    """Append an audit event. `target` is a model instance or a (type, id) pair."""
    event = audit_event(actor=actor, verb=verb, target=target, before=before, after=after, extra=extra, result=result)
    event.save()
    return event


def audit_events_write(events: list[AuditEvent]) -> None:
    """Append many events built by audit_event() in one statement (a batch of changes, one transaction)."""
    AuditEvent.objects.bulk_create(events)


def audit_event(
    *,
    actor: Any,
    verb: str,
    target: models.Model | tuple[str, str] | None = None,
    before: Any = None,
    after: Any = None,
    extra: dict | None = None,
    result: str = "ok",
) -> AuditEvent:
    """The row audit_record() appends, not yet written: for audit_events_write()."""
    target_type = target_id = target_label = ""
    if isinstance(target, models.Model):
        target_type = target._meta.label_lower
        target_id = str(getattr(target, "public_id", None) or getattr(target, "slug", None) or target.pk)
        target_label = str(target)[:200]
    elif isinstance(target, tuple):
        target_type, target_id = str(target[0]), str(target[1])
    ctx = context.current()
    return AuditEvent(
        **actor_columns(actor),
        verb=verb,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        before=_jsonable(before),
        after=_jsonable(after),
        extra=_jsonable(extra or {}),
        result=result,
        remote_addr=ctx.remote_addr,
        request_id=ctx.request_id,
    )


# ----------------------------------------------------------------------------------------------
# Failures: written outside the transaction that rolls back

_ROWS = "_portal_audit_rows"


def describe_error(exc: BaseException) -> str:
    """The exception's class and message (what AWS said), for an audit row's `extra.error`."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__


def audit_record_later(exc: BaseException, *, actor: Any, verb: str, target: models.Model | tuple[str, str] | None = None,
                       before: Any = None, after: Any = None, extra: dict | None = None) -> None:
    """Attach a result="error" row to `exc`, raised inside a transaction that will roll back; the first
    `audit_failures` boundary it leaves outside every transaction writes it."""
    rows = exc.__dict__.setdefault(_ROWS, [])
    rows.append({"actor": actor, "verb": verb, "target": target, "before": before, "after": after,
                 "extra": {**(extra or {}), "error": describe_error(exc)}, "result": "error"})


def _outside_transactions() -> bool:
    # The test case's own atomic blocks do not count (the same rule as atomic(durable=True)).
    blocks = transaction.get_connection().atomic_blocks
    return not blocks or all(getattr(block, "_from_testcase", False) for block in blocks)


@contextmanager
def audit_failures(*, actor: Any, verb: str, target: Any = None, extra: dict | None = None,
                   expected: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """Leave a result="error" audit row when the block raises, once its transaction has rolled back.

    `expected` are refusals the caller reports itself (bad input, a conflict): they get no row unless
    they wrap another error (`raise ... from exc`, e.g. AWS refusing the change). A row attached deeper
    down (`audit_record_later`) is more precise and replaces this one. Inside a caller's transaction
    the rows travel on with the exception to the caller's own boundary.
    """
    try:
        yield
    except Exception as exc:
        rows = exc.__dict__.get(_ROWS)
        if rows is None and not (isinstance(exc, expected) and exc.__cause__ is None):
            audit_record_later(exc, actor=actor, verb=verb, target=target, extra=extra)
            rows = exc.__dict__[_ROWS]
        if rows and _outside_transactions():
            try:
                with transaction.atomic():
                    for row in rows:
                        audit_record(**row)
            except DatabaseError:  # the database itself may be the failure: never hide the original error
                log.exception("could not write the audit row of a failed %s", verb)
            rows.clear()
        raise


def audits_failures(verb: str, *, target: str | Callable[[dict], Any] = "environment", actor: Actor | str | None = None,
                    expected: tuple[type[BaseException], ...] = ()) -> Callable:
    """Decorate a keyword-only service: `audit_failures` around it, target and actor from its arguments
    (`target` names the keyword or maps the keywords to a target; `actor` is a fixed system actor)."""

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            what = target(kwargs) if callable(target) else kwargs.get(target)
            with audit_failures(actor=actor or kwargs.get("actor"), verb=verb, target=what, expected=expected):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
