"""The sandbox's Cost Explorer figures follow the current growth phase, and a cost-spike drill makes them jump.

The plan's cost table is for 300k users; the sandbox's month-to-date is each line's share of the
current phase's budget (the line scaled by budget / table total), running at BASELINE_SHARE of it, so
a phase-1 platform costs what phase 1 budgets. An active cost-spike drill runs the month at its level
(percent of the budget, DEFAULT_SPIKE_PERCENT unless set). The figures are seeded through moto's
`/moto-api/static/ce/cost-and-usage-results` (portal.sandbox.platform.seed_costs); the newest seeded
answer is the one Cost Explorer gives (portal.sandbox.patches).
"""

from __future__ import annotations

import datetime as dt
import logging
from decimal import Decimal

from portal.cloud.models import Drill, Environment
from portal.phases.selectors import NoPhases, current_phase
from portal.plan.loader import load_plan
from portal.sandbox.platform import cost_results, seed_costs

log = logging.getLogger(__name__)

BASELINE_SHARE = 0.8  # a healthy sandbox spends 80 % of its phase's budget
DEFAULT_SPIKE_PERCENT = 250.0


def cost_spike_percent(drills) -> float | None:
    levels = [d.level if d.level is not None else DEFAULT_SPIKE_PERCENT for d in drills if d.kind == Drill.Kind.COST_SPIKE]
    return max(levels) if levels else None


def phase_cost_items(plan: dict, budget: Decimal, share: float) -> list[dict]:
    costs = plan.get("costs") or {}
    items = costs.get("items") or []
    table = float(costs.get("total") or sum(float(i["monthly"]) for i in items) or 1)
    return [{**i, "monthly": round(float(i["monthly"]) * float(budget) / table * share, 2)} for i in items]


def costs_sync(env: Environment, *, drills=None, seeded: dict | None = None, today: dt.date | None = None) -> dict:
    """Seed the month's figures for the current phase (and any cost-spike drill) unless `seeded`, what was
    seeded last, already says the same. Returns what is seeded now."""
    today = today or dt.datetime.now(dt.UTC).date()
    if drills is None:
        now = dt.datetime.now(dt.UTC)
        drills = list(Drill.objects.filter(environment=env, kind=Drill.Kind.COST_SPIKE, stopped_at__isnull=True, ends_at__gt=now))
    plan = load_plan()
    try:
        phase = current_phase()
        number, budget = phase.number, Decimal(str(phase.monthly_cost))
    except NoPhases:  # phases not seeded yet: the plan file's first phase, as the platform builder does
        first = (plan.get("phases") or [{}])[0]
        number, budget = int(first.get("number", 1)), Decimal(str(first.get("monthly_cost", 0)))
    spike = cost_spike_percent(drills)
    share = spike / 100.0 if spike is not None else BASELINE_SHARE
    wanted = {"phase": number, "budget": float(budget), "share": share, "day": today.isoformat()}
    if seeded == wanted:
        return wanted
    items = phase_cost_items(plan, budget, share)
    seed_costs(cost_results({"costs": {"items": items}}, today), endpoint_url=env.endpoint_url or None, copies=1)
    log.info("sandbox Cost Explorer: phase %s at %.0f %% of its %s budget", number, share * 100, budget)
    return wanted
