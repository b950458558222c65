import pytest

from portal.audit.models import AuditEvent
from portal.phases.models import GrowthPhase
from portal.phases.selectors import current_phase, phase_for_users
from portal.phases.services import PhaseError, phase_move

# The phases come from seed_defaults; these tests read them, so they seed them first.
pytestmark = pytest.mark.usefixtures("growth_phases")


@pytest.mark.parametrize(
    "users,slug",
    [(0, "foundation"), (4_999, "foundation"), (5_000, "growth"), (24_999, "growth"), (25_000, "scale"),
     (99_999, "scale"), (100_000, "optimize"), (299_999, "optimize"), (300_000, "optimize"), (450_000, "optimize")],
)
def test_phase_for_users_boundaries(db, users, slug):
    assert phase_for_users(users).slug == slug


def test_phase_for_users_rejects_negative(db):
    with pytest.raises(ValueError):
        phase_for_users(-1)


def test_phases_come_from_the_plan(db):
    current_phase()  # loads the plan on a fresh database
    phases = {p.slug: p for p in GrowthPhase.objects.all()}
    growth = GrowthPhase.objects.get(slug="growth")
    assert (growth.users_min, growth.users_max, growth.instances_min, growth.instances_max) == (5000, 25000, 4, 8)
    assert int(growth.monthly_cost) == 2100
    assert [f.text for f in growth.focus_items.all()] == ["Enable auto-scaling", "Optimization", "Redis cache"]
    assert list(phases) == ["foundation", "growth", "scale", "optimize"]


def test_current_phase_defaults_to_foundation_and_follows_a_move(db, lead):
    assert current_phase().slug == "foundation"
    growth = GrowthPhase.objects.get(slug="growth")
    state, changed = phase_move(to_phase=growth, actor=lead, reason="5k users", from_number=1)
    assert changed and current_phase().slug == "growth"
    assert (current_phase().instances_min, current_phase().instances_max) == (4, 8)
    # a second click changes nothing and writes no second audit row
    _, changed = phase_move(to_phase=growth, actor=lead, reason="5k users", from_number=1)
    assert not changed
    assert AuditEvent.objects.filter(verb="phase.move").count() == 1


def test_phase_move_one_step_and_back_needs_reason(db, lead):
    current_phase()
    with pytest.raises(PhaseError):
        phase_move(to_phase=GrowthPhase.objects.get(slug="scale"), actor=lead)
    phase_move(to_phase=GrowthPhase.objects.get(slug="growth"), actor=lead)
    with pytest.raises(PhaseError, match="reason"):
        phase_move(to_phase=GrowthPhase.objects.get(slug="foundation"), actor=lead)
    assert current_phase().slug == "growth"
