"""The beat scheduler: django-celery-beat's DatabaseScheduler that rides out a database outage.

Stock, beat exits when PostgreSQL is down at start-up or when its five-minute full re-read of the
schedule fails. This one waits for the database (backing off to 30 s) and, when a tick fails, drops
the broken connection and re-reads the whole schedule on the next tick, so beat carries on by itself
when the database returns: nobody has to restart it (tests/faults/test_postgres_outage.py).
"""

from __future__ import annotations

import logging
import time

from django.db import DatabaseError, InterfaceError, connections
from django_celery_beat.schedulers import DatabaseScheduler

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0


def _drop_connections() -> None:
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped anyway
            conn.connection = None


class PortalScheduler(DatabaseScheduler):
    def setup_schedule(self):
        delay = 1.0
        while True:
            try:
                super().setup_schedule()
                return
            except (DatabaseError, InterfaceError) as exc:
                log.warning("beat: the database is unavailable (%s); trying again in %.0f s", str(exc).splitlines()[0], delay)
                _drop_connections()
                self._initial_read = True  # read everything again once it answers
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def tick(self, *args, **kwargs):
        try:
            return super().tick(*args, **kwargs)
        except (DatabaseError, InterfaceError) as exc:
            log.warning("beat: the database is unavailable (%s); schedule re-read in %.0f s", str(exc).splitlines()[0], RETRY_SECONDS)
            _drop_connections()
            self._initial_read = True
            return RETRY_SECONDS
