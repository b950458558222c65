"""Phase bounds: the one place deployments read them from (thresholds come from portal.health.thresholds)."""

from __future__ import annotations

from dataclasses import dataclass

from portal.phases.selectors import current_phase


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
