"""Seeder for the cloud app: nothing to load from the plan.

Real environments (staging, production) are not invented here with made-up ARNs: an admin enters
them. The `sandbox` environment is registered by `manage.py sandbox` from what it actually built.
"""

from __future__ import annotations

from portal.plan.loader import SeedStats


def seed(plan: dict, *, reset: bool) -> SeedStats:
    return SeedStats()
