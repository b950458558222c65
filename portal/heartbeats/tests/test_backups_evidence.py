"""The backup job's heartbeat is evidence on "Database backups automated", next to the snapshot's age."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from portal.checklist.verify import run_check
from portal.heartbeats import services
from portal.heartbeats.models import BACKUP_SLUG, Heartbeat
from portal.heartbeats.seed import seed

pytestmark = pytest.mark.django_db


def test_the_backups_verification_shows_the_backup_heartbeat(aws_platform):
    seed({}, reset=False)
    heartbeat = Heartbeat.objects.get(slug=BACKUP_SLUG)
    services.heartbeat_ping(heartbeat=heartbeat, now=timezone.now() - timedelta(hours=1))
    r = run_check("backups", aws_platform)
    assert r.outcome == "passing", r.summary
    assert r.evidence["backup_heartbeat"]["status"] == "up" and "backup job heartbeat up" in r.summary
    assert r.evidence["latest_snapshot_age_hours"] is not None

    assert services.heartbeats_check(now=timezone.now() + timedelta(days=2)) == [BACKUP_SLUG]
    r = run_check("backups", aws_platform)
    assert r.outcome == "failing" and "backup job's heartbeat is down" in r.summary
    assert r.evidence["backup_heartbeat"]["status"] == "down"
