"""moto's gaps, covered inside the sandbox (never by branches in portal.cloud.aws).

The patches apply to the process that runs moto: the `sandbox` command, the test suite's moto server
process (portal.sandbox.moto_process) and a test's in-process `mock_aws`.

- CloudWatch: percentile statistics (p50/p95/p99 from the raw values, as CloudWatch does), and a
  narrower scan of stored datapoints per GetMetricData.
- Cost Explorer: GetCostForecast from the seeded monthly cost.
- Auto Scaling: AWS's min/max check on SetDesiredCapacity.
- Health: moto reports every registered target healthy and never deregisters targets on scale-in.
  Here a target group's targets are its groups' current instances, their health follows the
  instance's lifecycle, and the simulator's unhealthy marks (SimulatorState.unhealthy, read from
  the database: the moto process is a Django process) make an instance Unhealthy in
  DescribeAutoScalingGroups and its target unhealthy in DescribeTargetHealth.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
import math
import re
import threading

from django.db import DatabaseError
from moto.autoscaling.exceptions import ValidationError as AsgValidationError
from moto.autoscaling.models import AutoScalingBackend, autoscaling_backends
from moto.ce.models import CostExplorerBackend
from moto.ce.responses import CostExplorerResponse
from moto.cloudwatch.models import CloudWatchBackend, MetricAggregatedDatum, MetricDatum, Statistics
from moto.elbv2.exceptions import TargetGroupNotFoundError
from moto.elbv2.models import ELBv2Backend, FakeHealthStatus

from portal.plan.loader import load_plan
from portal.sandbox.simstate import LIFECYCLE_TO_TARGET, marked_unhealthy_ids

log = logging.getLogger(__name__)

_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
_patched = False
# account id -> {"monthly": float}: the seeded monthly cost the forecast extends
SANDBOX_COSTS: dict[str, dict[str, float]] = {}


def _percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(pct / 100.0 * len(ordered)) - 1, 0)  # nearest-rank, as CloudWatch documents
    return ordered[min(rank, len(ordered) - 1)]


def plan_monthly_cost() -> float:
    return float(sum(float(i["monthly"]) for i in (load_plan().get("costs") or {}).get("items", [])))


def seeded_monthly(answer: dict | None) -> float | None:
    """The monthly rate a seeded month-to-date answer runs at (its amount over the days it covers)."""
    if not answer:
        return None
    try:
        period = answer["ResultsByTime"][0]
        start = dt.date.fromisoformat(period["TimePeriod"]["Start"])
        end = dt.date.fromisoformat(period["TimePeriod"]["End"])
        amount = sum(float(g["Metrics"]["UnblendedCost"]["Amount"]) for g in period.get("Groups") or [])
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    elapsed = max((end - start).days, 1)
    return amount / elapsed * calendar.monthrange(start.year, start.month)[1]


def install_moto_patches() -> None:
    """Percentile statistics in moto's CloudWatch, GetCostForecast in its Cost Explorer, AWS's bounds check on
    SetDesiredCapacity, and the simulator's target and instance health (see `install_health_patches`)."""
    global _patched
    if _patched:
        return

    original = Statistics.get_statistics_for_type

    def get_statistics_for_type(self, stat):
        m = _PERCENTILE.match(stat or "")
        if m is None:
            return original(self, stat)
        values: list[float] = []
        for datum in self.metric_data or []:
            if isinstance(datum, MetricDatum):
                values.append(float(datum.value))
            elif isinstance(datum, MetricAggregatedDatum):
                values.append(float(datum.sum) / max(float(datum.sample_count), 1.0))
        return _percentile(values, float(m.group(1)))

    Statistics.get_statistics_for_type = get_statistics_for_type  # type: ignore[method-assign,attr-defined]

    def get_cost_forecast(self) -> str:
        params = json.loads(self.body or "{}")
        period = params.get("TimePeriod") or {}
        start = dt.date.fromisoformat(period["Start"])
        end = dt.date.fromisoformat(period["End"])
        monthly = (seeded_monthly(getattr(self.ce_backend, "sandbox_cost_answer", None))
                   or SANDBOX_COSTS.get(self.current_account, {}).get("monthly") or plan_monthly_cost())
        amount = 0.0
        day = start
        while day < end:
            amount += monthly / calendar.monthrange(day.year, day.month)[1]
            day += dt.timedelta(days=1)
        total = {"Amount": f"{amount:.2f}", "Unit": "USD"}
        return json.dumps({"Total": total, "ForecastResultsByTime": [
            {"TimePeriod": period, "MeanValue": total["Amount"]}]})

    CostExplorerResponse.get_cost_forecast = get_cost_forecast  # type: ignore[method-assign,attr-defined]

    original_cost_and_usage = CostExplorerBackend.get_cost_and_usage

    def get_cost_and_usage(self, body):
        # moto answers each request body once from its queue and then repeats it; the sandbox seeds again
        # when the phase or a cost-spike drill changes the figures, so the newest seeded answer wins.
        if self.cost_usage_results_queue:
            self.sandbox_cost_answer = self.cost_usage_results_queue[-1]
            self.cost_usage_results_queue.clear()
            self.cost_usage_results.clear()
        answer = getattr(self, "sandbox_cost_answer", None)
        return answer if answer is not None else original_cost_and_usage(self, body)

    CostExplorerBackend.get_cost_and_usage = get_cost_and_usage  # type: ignore[method-assign]

    original_set_desired = AutoScalingBackend.set_desired_capacity

    def set_desired_capacity(self, group_name, desired_capacity):
        # AWS refuses a desired capacity outside the group's bounds; moto accepts anything.
        group = self.autoscaling_groups.get(group_name)
        if group is None:
            raise AsgValidationError("AutoScalingGroup name not found - null")
        if desired_capacity is not None and desired_capacity > group.max_size:
            raise AsgValidationError(f"New SetDesiredCapacity value {desired_capacity} is above max value "
                                     f"{group.max_size} for the AutoScalingGroup.")
        if desired_capacity is not None and desired_capacity < group.min_size:
            raise AsgValidationError(f"New SetDesiredCapacity value {desired_capacity} is below min value "
                                     f"{group.min_size} for the AutoScalingGroup.")
        return original_set_desired(self, group_name, desired_capacity)

    AutoScalingBackend.set_desired_capacity = set_desired_capacity  # type: ignore[method-assign,attr-defined]

    # moto scans every stored datapoint once per period of every query; with an hour of simulated
    # metrics a 60-point series takes seconds. Narrow the scan to the queried metric names.

    scope = threading.local()
    original_all = CloudWatchBackend.get_all_metrics
    original_gmd = CloudWatchBackend.get_metric_data

    def get_all_metrics(self):
        data = original_all(self)
        names = getattr(scope, "names", None)
        return [m for m in data if m.name in names] if names else data

    def get_metric_data(self, queries, start_time, end_time, scan_by="TimestampAscending"):
        names = None
        if all("MetricStat" in q or "Expression" not in q for q in queries):  # math may reference anything
            names = {q["MetricStat"]["Metric"]["MetricName"] for q in queries if "MetricStat" in q}
        scope.names = names
        try:
            return original_gmd(self, queries, start_time, end_time, scan_by)
        finally:
            scope.names = None

    CloudWatchBackend.get_all_metrics = get_all_metrics  # type: ignore[method-assign,attr-defined]
    CloudWatchBackend.get_metric_data = get_metric_data  # type: ignore[method-assign,attr-defined]
    install_health_patches()
    _patched = True


def install_health_patches() -> None:
    """DescribeAutoScalingGroups and DescribeTargetHealth answer with the simulator's health."""

    original_describe_groups = AutoScalingBackend.describe_auto_scaling_groups

    def describe_auto_scaling_groups(self, names, filters=None):
        groups = original_describe_groups(self, names, filters)
        unhealthy = unhealthy_marks()
        for group in groups:
            for state in group.instance_states:
                marked = state.instance.id in unhealthy
                if marked or getattr(state, "simulator_marked", False):
                    state.health_status = "Unhealthy" if marked else "Healthy"
                    state.simulator_marked = marked
        return groups

    AutoScalingBackend.describe_auto_scaling_groups = describe_auto_scaling_groups  # type: ignore[method-assign]

    def describe_target_health(self, target_group_arn, targets):
        target_group = self.target_groups.get(target_group_arn)
        if target_group is None:
            raise TargetGroupNotFoundError()
        asg = autoscaling_backends[self.account_id][self.region_name]
        groups = [g for g in asg.autoscaling_groups.values() if target_group_arn in (g.target_group_arns or [])]
        if not groups:  # targets registered by hand, not through a group: moto's own answer
            return original_target_health(self, target_group_arn, targets)
        unhealthy = unhealthy_marks()
        wanted = {t["Id"] for t in targets or []}
        out = []
        for group in groups:
            for state in group.instance_states:
                iid = state.instance.id
                if wanted and iid not in wanted:
                    continue
                port = target_group.port
                if state.lifecycle_state == "InService":
                    # SetInstanceHealth's Unhealthy counts too; our own mark only while it stands.
                    set_by_hand = state.health_status == "Unhealthy" and not getattr(state, "simulator_marked", False)
                    if iid in unhealthy or set_by_hand:
                        out.append(FakeHealthStatus(iid, port, target_group.health_check_port, "unhealthy",
                                                    "Target.FailedHealthChecks", "Health checks failed"))
                    else:
                        out.append(FakeHealthStatus(iid, port, target_group.health_check_port, "healthy"))
                elif state.lifecycle_state in LIFECYCLE_TO_TARGET:
                    out.append(FakeHealthStatus(iid, port, target_group.health_check_port,
                                                *LIFECYCLE_TO_TARGET[state.lifecycle_state]))
        return out

    original_target_health = ELBv2Backend.describe_target_health
    ELBv2Backend.describe_target_health = describe_target_health  # type: ignore[method-assign]


def unhealthy_marks() -> set[str]:
    """The instance ids the simulator marked unhealthy (ids are unique across moto's accounts)."""
    try:
        return marked_unhealthy_ids()
    except DatabaseError:
        # The test suite's moto server process has no migrated database of its own: no marks there.
        log.debug("no simulator state readable in this moto process", exc_info=True)
        return set()
