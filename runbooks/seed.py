"""seed_defaults hook: load the runbook library and check the plan's runbooks all have a file."""

from __future__ import annotations

from portal.plan.loader import SeedStats
from runbooks.loader import sync_library
from runbooks.models import Runbook


def seed(plan: dict, *, reset: bool) -> SeedStats:
    # `reset` has nothing to undo here: the YAML files in git are the only source of a runbook's steps.
    stats = SeedStats()
    report = sync_library(actor="system:seed_defaults")
    stats.created += len(report.created)
    stats.updated += len(report.updated)
    stats.unchanged += len(report.unchanged)
    for error in report.errors:
        stats.notes.append(f"runbook not loaded: {error}")
    loaded = set(Runbook.objects.exclude(current_version=None).values_list("slug", flat=True))
    for item in plan.get("runbooks") or []:
        slug = item.get("slug")
        if slug and slug not in loaded:
            stats.notes.append(f"the plan names runbook {slug!r} but runbooks/library/{slug}.yaml did not load")
    return stats
