"""The sandbox simulator's shared state (in the database): what moto cannot tell us.

moto reports every registered target healthy and never deregisters targets on scale-in, so in
the sandbox the targets of a colour are its group's current instances and their health is ours.
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


def unhealthy_instances(env: Environment) -> set[str]:
    row = SimulatorState.objects.filter(environment_id=env.pk).values_list("unhealthy", flat=True).first()
    return set(row or {})


def simulated_target_health(env: Environment, colour: str):
    from portal.cloud.aws import TargetHealth, describe_groups

    group = describe_groups(env).get(colour)
    if group is None:
        return []
    out = []
    for inst in group.instances:
        if inst.lifecycle_state == "InService":
            if inst.health_status == "Unhealthy":
                out.append(TargetHealth(inst.id, "unhealthy", "Target.FailedHealthChecks", "Health checks failed"))
            else:
                out.append(TargetHealth(inst.id, "healthy"))
        elif inst.lifecycle_state in LIFECYCLE_TO_TARGET:
            out.append(TargetHealth(inst.id, *LIFECYCLE_TO_TARGET[inst.lifecycle_state]))
    return out
