"""Rejected webhook deliveries: a sampled log of what the intake refused, kept for a bounded time."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.utils import timezone

from portal.incidents.models import RejectedDelivery
from portal.metrics import EVENTS

log = logging.getLogger(__name__)

# Rejections kept: the first REJECT_SAMPLE_FIRST per source and reason each minute (per process), then
# one row per REJECT_SAMPLE_EVERY standing for them all; rows older than REJECT_RETENTION are pruned.
REJECT_SAMPLE_FIRST = 20
REJECT_SAMPLE_EVERY = 100
REJECT_RETENTION = timedelta(days=7)
REJECT_KEEP_MAX = 20_000


class RejectSampler:
    def __init__(self, *, first: int, every: int, window: float = 60.0):
        self.first, self.every, self.window = first, every, window
        self._state: dict[tuple[str, str], list] = {}  # key -> [window start, stored in window, skipped]
        self._lock = threading.Lock()

    def admit(self, key: tuple[str, str]) -> int:
        """The weight of the row to store for this rejection, or 0 to store nothing."""
        now = time.monotonic()
        with self._lock:
            if len(self._state) > 256:  # reasons are a fixed set; this only bounds junk keys
                self._state.clear()
            state = self._state.setdefault(key, [now, 0, 0])
            if now - state[0] >= self.window:
                state[0], state[1] = now, 0
            if state[1] < self.first:
                state[1] += 1
                weight, state[2] = 1 + state[2], 0
                return weight
            state[2] += 1
            if state[2] >= self.every:
                weight, state[2] = state[2], 0
                return weight
            return 0

    def reset(self) -> None:
        with self._lock:
            self._state.clear()


REJECT_SAMPLER = RejectSampler(first=REJECT_SAMPLE_FIRST, every=REJECT_SAMPLE_EVERY)


def _printable(text: str, limit: int) -> str:
    """Stored text without NULs (PostgreSQL refuses them) or lone surrogates, cut to the column."""
    return text.encode("utf-8", "replace").decode().replace("\x00", "\\x00")[:limit]


def delivery_reject(*, source: str, reason: str, detail: str, status_code: int = 400, remote_addr: str = "", user_agent: str = "", body: bytes | str = b"") -> RejectedDelivery | None:
    EVENTS.labels("delivery_rejected", source).inc()
    weight = REJECT_SAMPLER.admit((source, reason))
    if not weight:
        return None
    excerpt = body[:8000].decode("utf-8", "replace") if isinstance(body, bytes) else body[:8000]
    try:
        return RejectedDelivery.objects.create(
            source=source, reason=_printable(reason, 40), detail=_printable(detail, 500), status_code=status_code,
            remote_addr=_printable(remote_addr, 64), user_agent=_printable(user_agent, 200), excerpt=_printable(excerpt, 2000),
            weight=weight,
        )
    except Exception:  # noqa: BLE001 - the 4xx answer matters more than its log row
        log.warning("could not record a rejected %s delivery", source, exc_info=True)
        return None


def rejected_deliveries_prune(*, now=None) -> int:
    """Delete rejections older than REJECT_RETENTION, and the oldest beyond REJECT_KEEP_MAX rows."""
    now = now or timezone.now()
    deleted, _ = RejectedDelivery.objects.filter(received_at__lt=now - REJECT_RETENTION).delete()
    beyond = list(RejectedDelivery.objects.order_by("-pk").values_list("pk", flat=True)[REJECT_KEEP_MAX : REJECT_KEEP_MAX + 1])
    if beyond:
        more, _ = RejectedDelivery.objects.filter(pk__lte=beyond[0]).delete()
        deleted += more
    return deleted
