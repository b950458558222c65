"""Reads about growth phases. `current_phase()` and `phase_for_users(n)` are contracts (docs/contracts.md)."""

from __future__ import annotations

import math

from portal.phases.models import GrowthPhase, PhaseSettings, PhaseState, UserCountSample


class NoPhases(LookupError):
    """No phases are stored (seed_defaults was never run, or plan.yaml has none)."""


def _phases() -> list[GrowthPhase]:
    # A read only: the phases come from seed_defaults (portal.phases.seed), never from a selector.
    phases = list(GrowthPhase.objects.order_by("number"))
    if not phases:
        raise NoPhases("no growth phases are defined; run manage.py seed_defaults")
    return phases


def all_phases() -> list[GrowthPhase]:
    return _phases()


def phase_for_users(n: int) -> GrowthPhase:
    """The phase whose [users_min, users_max) holds n; the top phase also takes n >= its max."""
    if n is None or int(n) < 0:
        raise ValueError(f"a user count must be a non-negative number, got {n!r}")
    n = int(n)
    phases = _phases()
    for phase in phases:
        if phase.users_min <= n < phase.users_max:
            return phase
    top = phases[-1]
    if n >= top.users_max:
        return top
    return phases[0]  # below the first phase's minimum (a plan starting above 0)


def current_phase() -> GrowthPhase:
    """The phase a lead set; before anyone set one, the first phase (Foundation)."""
    state = PhaseState.objects.select_related("phase").filter(key="platform").first()
    if state is not None:
        return state.phase
    return _phases()[0]


def phase_state() -> PhaseState | None:
    return PhaseState.objects.select_related("phase", "set_by").filter(key="platform").first()


def next_phase(phase: GrowthPhase) -> GrowthPhase | None:
    return GrowthPhase.objects.filter(number__gt=phase.number).order_by("number").first()


def latest_user_sample() -> UserCountSample | None:
    return UserCountSample.objects.order_by("-at").first()


def instance_range_scope() -> str:
    """Whether a phase's instance range is per colour (the default) or for the whole platform."""
    row = PhaseSettings.objects.filter(key="platform").first()
    return row.instance_range_scope if row is not None else PhaseSettings.RangeScope.PER_COLOUR


def per_colour_range(phase: GrowthPhase, scope: str | None = None) -> tuple[int, int]:
    """The instances one colour may run in `phase`. Read for the whole platform, each colour gets half
    (rounded so both colours at their bounds stay within the range; at least one instance)."""
    scope = scope or instance_range_scope()
    lo, hi = int(phase.instances_min), int(phase.instances_max)
    if scope != PhaseSettings.RangeScope.PLATFORM:
        return lo, hi
    half_lo = max(1, math.ceil(lo / 2))
    return half_lo, max(half_lo, hi // 2)
