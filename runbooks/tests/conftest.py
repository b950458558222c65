"""Fixtures for the runbooks tests: the library loaded, an incident, check sources that answer without a cloud."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runbooks.loader import LIBRARY_DIR, sync_library


@pytest.fixture
def library(db):
    report = sync_library()
    assert report.ok, [str(e) for e in report.errors]
    return report


@pytest.fixture
def library_copy(tmp_path: Path) -> Path:
    """A writable copy of the shipped library, for tests that change files."""
    target = tmp_path / "library"
    shutil.copytree(LIBRARY_DIR, target)
    return target


@pytest.fixture
def make_incident(db):
    def make(name: str = "HighErrorRate", environment=None, severity: str = "critical"):
        from portal.incidents.ingest import alert_ingest_internal

        alert = alert_ingest_internal(
            source="test", fingerprint=f"fp-{name}", name=name, severity=severity, firing=True,
            summary="error rate 12% on green", labels={"colour": "green"}, environment=environment,
        )
        alert.refresh_from_db()
        return alert.incident

    return make


@pytest.fixture
def fake_checks(monkeypatch):
    """Every check source answers from a dict the test controls (key: source name)."""
    from runbooks import checks

    answers: dict[str, dict] = {}

    def fake(name):
        def source(ctx):
            if name in answers and isinstance(answers[name], Exception):
                raise answers[name]
            return answers.get(name) or {"status": "ok", "words": f"{name} looks fine", "data": {"source": name}}

        return source

    for name in list(checks.SOURCES):
        monkeypatch.setitem(checks.SOURCES, name, fake(name))
    return answers


@pytest.fixture
def live_error_rate(aws_platform):
    """The sandbox with an hour of traffic and an error-rate drill on green (25% of traffic): the
    first check step of the high error rate runbook reads it live."""
    from runbooks.tests.test_checks import _traffic

    _traffic(aws_platform, green_error_pct=20)
    from runbooks.checks import run_check

    reading = run_check("error_rate_now_vs_hour_ago", environment=aws_platform)
    green = reading["data"]["per_colour"]["green"]
    assert green > 15
    return {"environment": aws_platform, "expect": f"green {green:.2f}%"}
