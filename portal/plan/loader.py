"""Reads plan.yaml and loads it through each app's seeder (settings.PORTAL_SEEDERS)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from portal.plan.models import PlanFact, data_hash

PLAN_FILE = Path(__file__).with_name("plan.yaml")


@cache
def load_plan(path: str | None = None) -> dict[str, Any]:
    with open(path or PLAN_FILE, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@dataclass
class SeedStats:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    kept_edited: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: SeedStats) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.kept_edited += other.kept_edited
        self.notes.extend(other.notes)


def upsert_seeded(model, lookup: dict, values: dict, *, reset: bool, stats: SeedStats, hash_field: str = "seeded_hash"):
    """Create or refresh a seeded row; a row whose data an operator changed is kept unless reset.

    The model needs a `seeded_hash` CharField; `values` are the seeded columns.
    """
    digest = data_hash(values)
    obj = model.objects.filter(**lookup).first()
    if obj is None:
        obj = model.objects.create(**lookup, **values, **{hash_field: digest})
        stats.created += 1
        return obj
    current = {k: getattr(obj, k) for k in values}
    current_digest = data_hash(current)
    stored = getattr(obj, hash_field)
    if current_digest == digest:
        if stored != digest:
            setattr(obj, hash_field, digest)
            obj.save(update_fields=[hash_field])
        stats.unchanged += 1
        return obj
    if stored and current_digest != stored and not reset:
        stats.kept_edited += 1
        stats.notes.append(f"kept edited {model._meta.label_lower} {lookup}")
        return obj
    for k, v in values.items():
        setattr(obj, k, v)
    setattr(obj, hash_field, digest)
    obj.save()
    stats.updated += 1
    return obj


def seed_plan_facts(plan: dict[str, Any], *, reset: bool) -> SeedStats:
    """Every section of the plan as PlanFact rows (the generic store the pages read)."""
    stats = SeedStats()
    for section, body in plan.items():
        if isinstance(body, list):
            items = [
                (str(item.get("slug") or item.get("number") or i) if isinstance(item, dict) else str(i), i, item)
                for i, item in enumerate(body)
            ]
        elif isinstance(body, dict):
            items = [(str(k), i, v) for i, (k, v) in enumerate(body.items())]
        else:
            items = [("value", 0, body)]
        for key, position, data in items:
            upsert_seeded(PlanFact, {"section": section, "key": key}, {"position": position, "data": data}, reset=reset, stats=stats)
    return stats


def seed_all(*, reset: bool = False) -> SeedStats:
    plan = load_plan()
    total = SeedStats()
    with transaction.atomic():
        total.add(seed_plan_facts(plan, reset=reset))
        for dotted in getattr(settings, "PORTAL_SEEDERS", []):
            seeder = import_string(dotted)
            result = seeder(plan, reset=reset)
            if isinstance(result, SeedStats):
                total.add(result)
    return total


def facts(section: str) -> list[dict[str, Any]]:
    return [f.data for f in PlanFact.objects.filter(section=section)]


def periodic_task_ensure(*, name: str, task: str, every_seconds: int, queue: str, stats: SeedStats,
                         expire_seconds: int | None = None) -> None:
    """Register a beat schedule row once; a later seed fixes its task and queue but keeps an
    operator's interval and enabled flag (editable in the admin)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    interval, _ = IntervalSchedule.objects.get_or_create(every=int(every_seconds), period=IntervalSchedule.SECONDS)
    row, created = PeriodicTask.objects.get_or_create(
        name=name, defaults={"task": task, "interval": interval, "queue": queue, "expire_seconds": expire_seconds},
    )
    if created:
        stats.created += 1
    elif row.task != task or row.queue != queue:
        row.task, row.queue = task, queue
        row.save(update_fields=["task", "queue"])
        stats.updated += 1
    else:
        stats.unchanged += 1
