"""The beat scheduler: django-celery-beat's DatabaseScheduler that rides out a database outage.

Stock, beat exits when PostgreSQL is down at start-up or when its five-minute full re-read of the
schedule fails. This one waits for the database (backing off to 30 s) and, when a tick fails, drops
the broken connection and re-reads the whole schedule on the next tick, so beat carries on by itself
when the database returns: nobody has to restart it (tests/faults/test_postgres_outage.py).

Exactly one beat schedules, however many are started (two hosts each running the Procfile, a
`--scale`d compose service): each tick renews a lease in the database (the `beat-leader` heartbeat
row, holder and time) and only its holder sends tasks; the others stand by and take over once the
lease has not been renewed for LEASE_SECONDS (the holder died or lost the database).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, InterfaceError, connections, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.schedulers import DatabaseScheduler

from portal.env import env_int

log = logging.getLogger(__name__)
RETRY_SECONDS = 5.0
LEASE_NAME = "beat-leader"
# A tick comes at least every 5 s (django-celery-beat's loop interval): a lease not renewed for this
# long belongs to a beat that is gone.
LEASE_SECONDS = env_int("BEAT_LEASE_SECONDS", 30, minimum=6)
STANDBY_SECONDS = 5.0


def lease_hold(holder: str, *, now=None) -> bool:
    """Take or renew the beat lease for `holder`; False while another holder's lease is live."""
    from portal.health.models import Heartbeat  # models load after the app registry

    now = now or timezone.now()
    detail = {"holder": holder, "host": socket.gethostname(), "pid": os.getpid()}
    won = (Heartbeat.objects.filter(name=LEASE_NAME)
           .filter(Q(detail__holder=holder) | Q(beat_at__lt=now - timedelta(seconds=LEASE_SECONDS)))
           .update(beat_at=now, detail=detail))
    if won:
        return True
    try:
        with transaction.atomic():
            _, created = Heartbeat.objects.get_or_create(name=LEASE_NAME, defaults={"beat_at": now, "detail": detail})
        return created
    except IntegrityError:  # another beat created it first
        return False


def _drop_connections() -> None:
    for conn in connections.all(initialized_only=True):
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - a dead connection may fail to close; it is dropped anyway
            conn.connection = None


class PortalScheduler(DatabaseScheduler):
    holder = ""
    leading: bool | None = None  # None until the first tick: its decision is logged either way

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
            if not self.holder:
                self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
            leading = lease_hold(self.holder)
            if leading != self.leading:
                log.warning("beat %s: %s", self.holder, "leading: this beat schedules" if leading
                            else "standing by: another beat holds the lease")
                if leading:
                    self._initial_read = True  # the schedule as the last leader left it
                self.leading = leading
            if not leading:
                return STANDBY_SECONDS
            return super().tick(*args, **kwargs)
        except (DatabaseError, InterfaceError) as exc:
            log.warning("beat: the database is unavailable (%s); schedule re-read in %.0f s", str(exc).splitlines()[0], RETRY_SECONDS)
            _drop_connections()
            self._initial_read = True
            return RETRY_SECONDS
