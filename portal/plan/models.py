from __future__ import annotations

import hashlib
import json

from django.db import models


def data_hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


class PlanFact(models.Model):
    """One fact of the infrastructure plan (a cost line, a storage estimate, a performance target...).

    `seeded_hash` is the hash of `data` as last loaded from plan.yaml: when the two differ an
    operator edited the row, and seed_defaults leaves it alone unless --reset.
    """

    section = models.CharField(max_length=50)
    key = models.CharField(max_length=100)
    position = models.PositiveIntegerField(default=0)
    data = models.JSONField()
    seeded_hash = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["section", "position", "key"]
        constraints = [models.UniqueConstraint(fields=["section", "key"], name="plan_fact_section_key_uniq")]

    def __str__(self) -> str:
        return f"{self.section}/{self.key}"

    @property
    def edited(self) -> bool:
        return bool(self.seeded_hash) and data_hash(self.data) != self.seeded_hash
