"""Budget and growth alerts against the in-process AWS sandbox: its Cost Explorer answers for the current
phase, a cost-spike drill makes the month jump, and the budget incident opens once."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from portal.cloud.models import Drill
from portal.incidents.models import Alert, Incident
from portal.phases.budget import budget_evaluate
from portal.phases.models import CapacitySample
from portal.phases.selectors import current_phase
from portal.phases.services import user_count_record
from portal.phases.status import phase_status
from portal.phases.tasks import phases_budget_evaluate
from portal.sandbox.costs import costs_sync
from portal.sandbox.services import drill_start, drill_stop


@pytest.fixture
def sandbox_costs(aws_platform):
    """The sandbox as `manage.py sandbox` starts it: Cost Explorer seeded with the current phase's figures."""
    costs_sync(aws_platform)
    return aws_platform


def _budget_incidents():
    return Incident.objects.filter(grouping_key__startswith="internal:budget:")


def test_the_sandboxs_cost_explorer_matches_the_current_phase(sandbox_costs):
    cost = phase_status(live=True).cost.data
    assert cost["budget"] == Decimal("750.00")
    # Foundation runs at 80 % of its $750, not the 300k-user table's $9,675.
    assert cost["forecast"] is not None and Decimal("560") < cost["forecast"] < Decimal("640")
    assert cost["forecast_over_budget"] is False
    assert not any(line["over"] for line in cost["by_service"])
    assert budget_evaluate(environment=sandbox_costs)["phase-1:total"] == "clear"
    assert not _budget_incidents().exists()


def test_a_cost_spike_drill_opens_the_budget_incident_once(sandbox_costs, admin_user, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        drill = drill_start(environment=sandbox_costs, kind=Drill.Kind.COST_SPIKE, minutes=30, actor=admin_user)
    cost = phase_status(live=True).cost.data
    assert cost["forecast"] > Decimal("1800")  # 250 % of the $750 budget

    first = budget_evaluate(environment=sandbox_costs)
    assert first["phase-1:total"] == "firing" and first["phase-1:compute"] == "firing"
    incident = _budget_incidents().get()
    assert incident.severity == "warning" and incident.environment == sandbox_costs
    assert "above phase 1 (Foundation)'s budget of $750.00/month" in incident.title
    alerts = Alert.objects.filter(incident=incident)
    assert alerts.filter(fingerprint="phases:sandbox:phase-1:total", status="firing").count() == 1

    # Evaluated again (the beat's next run, or a redelivered task): the same incident, nothing new.
    again = phases_budget_evaluate(environment_name=sandbox_costs.name)
    assert again["phase-1:total"] == "firing"
    assert _budget_incidents().count() == 1
    incident.refresh_from_db()
    assert incident.reopened_count == 0 and incident.status == Incident.Status.TRIGGERED

    # The drill stops: the figures fall back and the alerts resolve once.
    with django_capture_on_commit_callbacks(execute=True):
        drill_stop(drill=drill, actor=admin_user)
    after = budget_evaluate(environment=sandbox_costs)
    assert after["phase-1:total"] == "resolved"
    assert budget_evaluate(environment=sandbox_costs)["phase-1:total"] == "clear"
    assert not Alert.objects.filter(fingerprint__startswith="phases:sandbox:", status="firing").exists()


def test_a_cost_spike_drill_is_not_per_colour(sandbox_costs, admin_user):
    from portal.sandbox.services import DrillError

    with pytest.raises(DrillError, match="not per colour"):
        drill_start(environment=sandbox_costs, kind=Drill.Kind.COST_SPIKE, colour="blue", actor=admin_user)


def test_users_near_the_top_of_the_phase_warn_a_lead_to_move(sandbox_costs, lead):
    user_count_record(users=3000, actor=lead)
    assert budget_evaluate(environment=sandbox_costs)["phase-1:users"] == "clear"
    user_count_record(users=4600, actor=lead)
    assert budget_evaluate(environment=sandbox_costs)["phase-1:users"] == "firing"
    incident = Incident.objects.get(grouping_key__startswith="internal:growth:")
    assert "4,600 users, 92 % of phase 1 (Foundation)'s upper bound of 5,000" in incident.title
    budget_evaluate(environment=sandbox_costs)
    assert Incident.objects.filter(grouping_key__startswith="internal:growth:").count() == 1


def test_instances_forecast_to_leave_the_range_within_14_days_warn(sandbox_costs):
    now = timezone.now()
    # Phase 1 allows 2-4 per colour; blue grows by one instance every two days from 2: 3 now, 10 in 14 days.
    for hours, blue in ((48, 2), (24, 2), (12, 3), (0, 3)):
        CapacitySample.objects.create(at=now - timedelta(hours=hours), environment=sandbox_costs, blue_in_service=blue,
                                      green_in_service=0)
    out = budget_evaluate(environment=sandbox_costs, now=now)
    assert out["phase-1:instances"] == "firing"
    alert = Alert.objects.get(fingerprint="phases:sandbox:phase-1:instances")
    assert "outside phase 1's 2-4" in alert.summary and current_phase().number == 1


def test_flat_instances_raise_nothing(sandbox_costs):
    now = timezone.now()
    for hours in (48, 24, 0):
        CapacitySample.objects.create(at=now - timedelta(hours=hours), environment=sandbox_costs, blue_in_service=2,
                                      green_in_service=0)
    assert budget_evaluate(environment=sandbox_costs, now=now)["phase-1:instances"] == "clear"
