from decimal import Decimal

from portal.phases.models import GrowthPhase, PhaseFocusItem
from portal.phases.seed import seed
from portal.plan.loader import load_plan


def test_phase_seed_is_idempotent_and_keeps_edits(db):
    plan = load_plan()
    seed(plan, reset=False)
    assert GrowthPhase.objects.count() == 4 and PhaseFocusItem.objects.count() == 11
    again = seed(plan, reset=False)
    assert again.created == 0 and again.updated == 0
    GrowthPhase.objects.filter(slug="scale").update(monthly_cost=Decimal("5000"))
    assert seed(plan, reset=False).kept_edited == 1
    assert GrowthPhase.objects.get(slug="scale").monthly_cost == Decimal("5000")
    seed(plan, reset=True)
    assert GrowthPhase.objects.get(slug="scale").monthly_cost == Decimal("4750")
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.filter(task="portal.phases.tasks.phases_sample_users").count() == 1
