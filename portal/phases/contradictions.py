"""Where the seed plan contradicts itself, said to a lead instead of being resolved silently.

Each finding names the two facts that disagree, with their values, and how the portal reads them
now (and where a lead changes that). Found from the plan (plan.yaml) and the stored phases.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from portal.phases.models import PhaseSettings
from portal.phases.selectors import all_phases, instance_range_scope, per_colour_range
from portal.plan.loader import load_plan

# ElastiCache node types' memory in GiB (AWS's published figures for the families the plan may name).
CACHE_NODE_GIB = {
    "cache.t3.micro": 0.5, "cache.t3.small": 1.37, "cache.t3.medium": 3.09, "cache.t4g.micro": 0.5,
    "cache.t4g.small": 1.37, "cache.t4g.medium": 3.09, "cache.m5.large": 6.38, "cache.m6g.large": 6.38,
    "cache.r5.large": 13.07, "cache.r5.xlarge": 26.32, "cache.r5.2xlarge": 52.82, "cache.r6g.large": 13.07,
    "cache.r6g.xlarge": 26.32, "cache.r7g.large": 13.07,
}
CACHE_MISMATCH_RATIO = 2.0  # a node with more than twice (or less than half) the memory the plan gives it


@dataclass
class Contradiction:
    slug: str
    title: str
    detail: str
    reading: str  # how the portal reads it now
    values: dict[str, Any] = field(default_factory=dict)


def _money(value) -> str:
    return f"${Decimal(str(value)):,.0f}"


def instance_ranges(plan: dict, phases, scope: str) -> list[Contradiction]:
    compute = (plan.get("components") or {}).get("compute") or {}
    lo, hi = compute.get("autoscale_min"), compute.get("autoscale_max")
    if lo is None or hi is None:
        return []
    out = []
    for p in phases:
        if p.instances_min >= int(lo) and p.instances_max <= int(hi):
            continue
        colour_lo, colour_hi = per_colour_range(p, scope)
        out.append(Contradiction(
            slug=f"instances-phase-{p.number}",
            title=f"Phase {p.number} says {p.instances_min}-{p.instances_max} instances; the compute line says auto-scale {lo}-{hi}",
            detail=(f"Phase {p.number} ({p.name}) runs {p.instances_min}-{p.instances_max} instances, outside the compute "
                    f"component's auto-scale range of {lo}-{hi}. Read per colour, blue and green each take "
                    f"{p.instances_min}-{p.instances_max} (up to {2 * p.instances_max} during a blue-green switch); read for "
                    f"the whole platform, both colours together stay within {p.instances_min}-{p.instances_max}."),
            reading=(f"Read as {PhaseSettings.RangeScope(scope).label.lower()}: deployments scale each colour within "
                     f"{colour_lo}-{colour_hi} in this phase. A lead changes this below."),
            values={"phase": p.number, "phase_range": [p.instances_min, p.instances_max], "compute_autoscale": [int(lo), int(hi)],
                    "per_colour": [colour_lo, colour_hi]},
        ))
    return out


def cache_memory(plan: dict) -> list[Contradiction]:
    cache = (plan.get("components") or {}).get("cache") or {}
    node, memory = cache.get("node_type"), cache.get("memory_gb")
    node_gib = CACHE_NODE_GIB.get(str(node or ""))
    if node_gib is None or not memory:
        return []
    ratio = node_gib / float(memory)
    if 1 / CACHE_MISMATCH_RATIO <= ratio <= CACHE_MISMATCH_RATIO:
        return []
    fits = min((n for n, gib in CACHE_NODE_GIB.items() if gib >= float(memory)), key=lambda n: CACHE_NODE_GIB[n], default=None)
    return [Contradiction(
        slug="cache-memory",
        title=f"The cache is {memory:g} GB on {node}, a node type with about {node_gib:g} GiB",
        detail=(f"The plan gives the Redis cache {memory:g} GB of memory but names {node}, which has about {node_gib:g} GiB "
                f"({ratio:.0f}x). Either the node is larger than the cache needs{f' ({fits} has {CACHE_NODE_GIB[fits]:g} GiB)' if fits else ''}, "
                f"or {memory:g} GB is the data expected in it, not the node's size."),
        reading=f"The portal checks the node type ({node}) and cost; the {memory:g} GB figure is not enforced anywhere.",
        values={"node_type": node, "node_gib": node_gib, "plan_memory_gb": float(memory)},
    )]


def optimized_budget(plan: dict, phases) -> list[Contradiction]:
    costs = plan.get("costs") or {}
    total, optimized = costs.get("total"), costs.get("optimized_total")
    if total is None or optimized is None or Decimal(str(total)) == Decimal(str(optimized)):
        return []
    out = []
    for p in phases:
        if Decimal(str(p.monthly_cost)) != Decimal(str(optimized)):
            continue
        out.append(Contradiction(
            slug=f"optimized-budget-phase-{p.number}",
            title=f"Phase {p.number}'s {_money(p.monthly_cost)} is the optimized figure, not the cost table's {_money(total)}",
            detail=(f"Phase {p.number} ({p.name}) budgets {_money(p.monthly_cost)} a month: the plan's optimized cost "
                    f"{costs.get('optimized_note') or ''}, while its cost table at 300k users adds up to {_money(total)}. Without "
                    f"the reserved instances and R2 in place, the phase runs over its budget by design."),
            reading=(f"Budget alerts compare with {_money(p.monthly_cost)}; each cost line's share is the table's line scaled "
                     f"by {_money(p.monthly_cost)} / {_money(total)}."),
            values={"phase": p.number, "phase_budget": float(p.monthly_cost), "cost_table_total": float(total),
                    "optimized_total": float(optimized)},
        ))
    return out


def seed_contradictions(plan: dict | None = None) -> list[Contradiction]:
    plan = plan or load_plan()
    phases = all_phases()
    scope = instance_range_scope()
    return instance_ranges(plan, phases, scope) + cache_memory(plan) + optimized_budget(plan, phases)
