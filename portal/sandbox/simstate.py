"""The sandbox simulator's shared state (in the database): what moto cannot tell us.

moto reports every registered target healthy and never deregisters targets on scale-in, so in
the sandbox the targets of a colour are its group's current instances and their health is ours
(portal.sandbox.patches answers DescribeTargetHealth and DescribeAutoScalingGroups with it).
"""

from __future__ import annotations

from portal.cloud.models import Environment, SimulatorState

LIFECYCLE_TO_TARGET = {
    "Pending": ("initial", "Elb.RegistrationInProgress", "Target registration is in progress"),
    "Pending:Wait": ("initial", "Elb.RegistrationInProgress", "Target registration is in progress"),
    "Pending:Proceed": ("initial", "Elb.RegistrationInProgress", "Target registration is in progress"),
    "Terminating": ("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"),
    "Terminating:Wait": ("draining", "Target.DeregistrationInProgress", "Target deregistration is in progress"),
}


def state_for(env: Environment) -> SimulatorState:
    state, _ = SimulatorState.objects.get_or_create(environment=env)
    return state


def marked_unhealthy_ids() -> set[str]:
    """Every instance id an unhealthy-instance drill marked, in any environment (moto's ids are unique)."""
    ids: set[str] = set()
    for marks in SimulatorState.objects.exclude(unhealthy={}).values_list("unhealthy", flat=True):
        ids.update(marks or {})
    return ids
