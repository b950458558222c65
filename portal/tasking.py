"""How services start background work: by task name, after the transaction commits.

Services never import their app's `tasks` module (tasks sit on top and import services); they name
the task. A broker that does not answer is logged, never raised: each caller's sweep or driver
picks the work up again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction

log = logging.getLogger(__name__)


def send_now(name: str, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> None:
    """Publish task `name` at once, with its own queue and options (eager where Celery is set eager)."""
    from portal.celery import app

    task = app.tasks.get(name)
    if task is None:
        # The web process imports the apps' tasks modules only when asked: load them once, as a worker does.
        app.loader.import_default_modules()
        task = app.tasks.get(name)
    if task is not None:
        task.apply_async(args=tuple(args), kwargs=kwargs or {})
    else:  # not registered in this process: the router still sends it to the right queue by name
        app.send_task(name, args=tuple(args), kwargs=kwargs or {})


def enqueue(name: str, *args: Any, **kwargs: Any) -> None:
    """Publish task `name` once the current transaction commits; a broker failure is logged."""

    def send() -> None:
        try:
            send_now(name, args, kwargs)
        except Exception:  # noqa: BLE001 - the sweep or driver re-sends; the caller's commit stands
            log.warning("could not enqueue %s%r; its sweep will pick it up", name, args, exc_info=True)

    transaction.on_commit(send)
