import pytest

from portal.checklist.models import ChecklistItem
from portal.checklist.seed import seed_items
from portal.plan.loader import SeedStats, load_plan


@pytest.fixture
def items(db):
    seed_items(load_plan(), reset=False, stats=SeedStats())
    return {i.slug: i for i in ChecklistItem.objects.all()}


@pytest.fixture
def item(items):
    return items["load-testing"]
