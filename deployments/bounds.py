"""Phase bounds and the plan's thresholds: the one place deployments read them from."""

from __future__ import annotations

from dataclasses import dataclass

from portal.phases.selectors import current_phase
from portal.plan.loader import load_plan
from portal.plan.models import PlanFact


@dataclass(frozen=True)
class PhaseBounds:
    number: int
    name: str
    instances_min: int
    instances_max: int


def phase_bounds() -> PhaseBounds:
    """The current growth phase's instance range per colour (portal.phases.selectors.current_phase)."""
    phase = current_phase()
    return PhaseBounds(phase.number, phase.name, int(phase.instances_min), int(phase.instances_max))


def _threshold_rows(level: str) -> list[dict]:
    fact = PlanFact.objects.filter(section="thresholds", key=level).first()
    if fact is not None and isinstance(fact.data, list):
        return fact.data
    return list((load_plan().get("thresholds") or {}).get(level) or [])


def threshold(level: str, metric: str, default: float) -> float:
    """The plan's threshold value, e.g. threshold("critical", "error_rate", 5.0)."""
    for row in _threshold_rows(level):
        if row.get("metric") == metric:
            try:
                return float(row["value"])
            except (KeyError, TypeError, ValueError):
                break
    return default
