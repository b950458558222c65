"""A verification's answer (the lowest checklist module: verify.py and verify_edge.py both stand on it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from portal.checklist.models import VerificationOutcome


@dataclass
class Result:
    outcome: str
    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)


def passing(summary: str, **evidence) -> Result:
    return Result(VerificationOutcome.PASSING, summary, evidence)


def failing(summary: str, **evidence) -> Result:
    return Result(VerificationOutcome.FAILING, summary, evidence)


def could_not_check(summary: str, **evidence) -> Result:
    return Result(VerificationOutcome.ERROR, summary, evidence)
