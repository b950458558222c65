"""The phase status against the in-process AWS sandbox: instances, Cost Explorer's seeded data, storage."""

from decimal import Decimal

from portal.phases.models import CapacitySample, CostSnapshot
from portal.phases.selectors import current_phase
from portal.phases.status import phase_status
from portal.phases.tasks import phases_sample_users


def test_status_reads_instances_cost_and_storage(aws_platform, viewer, client):
    phase = current_phase()
    st = phase_status(live=True)
    assert st.environment.name == "sandbox"
    inst = st.instances.data
    assert st.instances.ok and set(inst["colours"]) == {"blue", "green"}
    assert inst["colours"]["blue"]["desired"] == phase.instances_min and inst["colours"]["blue"]["verdict"] in ("within", "below")
    assert inst["colours"]["green"]["verdict"] == "idle"

    cost = st.cost.data
    assert st.cost.ok, st.cost.error
    # the sandbox seeds the plan's 300k-user cost table (9,675/month): far over Foundation's 750 budget
    assert cost["budget"] == Decimal("750.00")
    assert cost["forecast"] is not None and cost["forecast_over_budget"] is True
    lines = {line["slug"]: line for line in cost["by_service"]}
    assert lines["compute"]["month_to_date"] > 0 and lines["bandwidth"]["month_to_date"] > 0
    assert lines["services"]["month_to_date"] > 0  # "External services (AI, SMS, Email)"
    total_by_service = sum((line["month_to_date"] for line in cost["by_service"]), Decimal("0"))
    assert abs(total_by_service - Decimal(str(cost["month_to_date"]))) < Decimal("0.05")

    storage = {s["slug"]: s for s in st.storage.data}
    assert set(storage) == {"photos", "videos", "documents"}
    assert storage["photos"]["bucket"] == aws_platform.buckets["photos"]
    assert storage["photos"]["estimate_bytes"] == 2460000000000

    client.force_login(viewer)
    body = client.get("/phases/").content.decode()
    assert 'data-testid="cost-by-service"' in body and "over budget by" in body
    assert 'data-testid="instances"' in body


def test_sampling_task_keeps_instances_and_cost(aws_platform):
    out = phases_sample_users()
    assert out["instances"]["blue"] is not None
    assert CapacitySample.objects.count() == 1
    snap = CostSnapshot.objects.get()
    assert snap.total > 0 and "AWS Data Transfer" in snap.by_service
    phases_sample_users()
    assert CostSnapshot.objects.count() == 1  # one row a month, updated


def test_api_phase_current_with_the_cloud(aws_platform, api_client, make_token):
    r = api_client.get("/api/v1/phases/current", token=make_token("read"))
    assert r.status_code == 200
    body = r.json()
    assert body["environment"] == "sandbox"
    assert body["instances"]["colours"]["blue"]["desired"] == body["phase"]["instances_min"]
    assert body["cost"]["budget"] == 750.0 and body["cost"]["forecast_over_budget"] is True
    assert {line["slug"] for line in body["cost"]["by_service"]} >= {"compute", "database", "bandwidth"}
    assert [s["slug"] for s in body["storage"]] == ["photos", "videos", "documents"]


def test_moving_the_phase_rechecks_the_auto_scaling_bounds(aws_platform, lead, django_capture_on_commit_callbacks):
    from portal.checklist.models import ChecklistItem
    from portal.checklist.seed import seed_items
    from portal.cloud.clients import client
    from portal.phases.models import GrowthPhase
    from portal.phases.services import phase_move
    from portal.plan.loader import SeedStats, load_plan

    seed_items(load_plan(), reset=False, stats=SeedStats())
    current_phase()
    # groups that cannot hold the Growth phase's 8 instances
    for name in (aws_platform.blue_asg, aws_platform.green_asg):
        client(aws_platform, "autoscaling").update_auto_scaling_group(AutoScalingGroupName=name, MaxSize=4)
    with django_capture_on_commit_callbacks(execute=True):
        phase_move(to_phase=GrowthPhase.objects.get(slug="growth"), actor=lead)
    item = ChecklistItem.objects.get(slug="auto-scaling")
    assert item.verification_outcome == "failing"
    assert "below the phase's 8" in item.verification_summary
