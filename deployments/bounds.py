"""Phase bounds: the one place deployments read them from (thresholds come from portal.health.thresholds)."""

from __future__ import annotations

from dataclasses import dataclass

from portal.phases.selectors import current_phase, per_colour_range


@dataclass(frozen=True)
class PhaseBounds:
    number: int
    name: str
    instances_min: int
    instances_max: int


def phase_bounds() -> PhaseBounds:
    """The current growth phase's instance range per colour (portal.phases.selectors.current_phase), as the
    lead's setting reads the plan's range: per colour, or for the whole platform (halved per colour)."""
    phase = current_phase()
    lo, hi = per_colour_range(phase)
    return PhaseBounds(phase.number, phase.name, lo, hi)
