"""However many beats are started, exactly one schedules; a standby takes over when the leader is gone."""

from datetime import timedelta

import pytest
from django.utils import timezone

from portal import beat
from portal.health.models import Heartbeat


def test_one_holder_at_a_time_and_a_standby_takes_over_a_dead_lease(db):
    t0 = timezone.now()
    assert beat.lease_hold("a", now=t0)
    assert not beat.lease_hold("b", now=t0 + timedelta(seconds=1))
    assert beat.lease_hold("a", now=t0 + timedelta(seconds=5))  # renewed by its holder
    # "a" stopped renewing: once the lease is older than LEASE_SECONDS, "b" takes it, and "a" is out.
    later = t0 + timedelta(seconds=5 + beat.LEASE_SECONDS + 1)
    assert beat.lease_hold("b", now=later)
    assert not beat.lease_hold("a", now=later + timedelta(seconds=1))
    row = Heartbeat.objects.get(name=beat.LEASE_NAME)
    assert row.detail["holder"] == "b" and row.detail["pid"]


@pytest.mark.django_db(transaction=True)
def test_the_standby_beat_sends_nothing(monkeypatch):
    from portal.celery import app

    sent = []


    first = beat.PortalScheduler(app=app, lazy=True)
    second = beat.PortalScheduler(app=app, lazy=True)
    monkeypatch.setattr(beat.DatabaseScheduler, "tick", lambda self, *a, **k: sent.append(self) or 1.0)
    assert first.tick() == 1.0
    assert second.tick() == beat.STANDBY_SECONDS
    assert first.tick() == 1.0
    assert sent == [first, first] and first.leading and not second.leading
