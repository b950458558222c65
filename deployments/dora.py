"""DORA figures from the portal's own records, per environment and ISO week (Monday 00:00 UTC).

A deployment belongs to the week it finished in. Per week:
- deployment frequency: deployments that reached 100 % on the new colour (`switched_at`), whatever came after;
- lead time: the release's creation to that 100 % (the median over the week's deployments);
- change failure rate: of the week's changes (deployments that finished completed or rolled back), the share
  rolled back, or with a critical incident on the new colour opened within an hour of its 100 % (linked as
  the deployment's incident, or an alert of the incident naming the new colour or the deployment);
- time to restore: for each failure, from its first such incident's opening (or, without an incident, the
  rollback's request) to the rollback's listener read back (`confirmed_at`); an incident fixed without a
  rollback counts until it was resolved. The median over the week's restored failures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from statistics import median

from django.db.models import Prefetch, Q
from django.utils import timezone

from deployments.models import Deployment, DeploymentState, Rollback, RollbackState
from portal.cloud.models import Environment
from portal.incidents.models import Incident, Severity

INCIDENT_WINDOW = timedelta(hours=1)
MAX_WEEKS = 52
CHANGE_STATES = (DeploymentState.COMPLETED, DeploymentState.ROLLED_BACK)


@dataclass
class Week:
    week: str  # ISO week, e.g. 2026-W49
    starts_on: date
    deployments: int = 0
    changes: int = 0
    failures: int = 0
    change_failure_rate_pct: float | None = None
    lead_time_p50_seconds: float | None = None
    restores: int = 0
    unrestored: int = 0
    time_to_restore_p50_seconds: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def week_start(at: datetime) -> datetime:
    day = timezone.localtime(at, UTC).date()
    monday = day - timedelta(days=day.weekday())
    return datetime.combine(monday, time.min, tzinfo=UTC)


def iso_week(at: datetime) -> str:
    year, week, _ = week_start(at).isocalendar()
    return f"{year}-W{week:02d}"


def _on_new_colour(incident: Incident, dep: Deployment) -> bool:
    if incident.pk == dep.incident_id:
        return True
    for alert in incident.alerts.all():
        labels = alert.labels or {}
        if str(labels.get("deployment", "")) == str(dep.public_id):
            return True
        if (labels.get("colour") or labels.get("color")) == dep.to_colour:
            return True
    return False


def failure_incidents(dep: Deployment, incidents: list[Incident]) -> list[Incident]:
    """Critical incidents that count against `dep`: its own, or on its new colour within an hour of its 100 %."""
    found = []
    for inc in incidents:
        if inc.severity != Severity.CRITICAL:
            continue
        own = inc.pk == dep.incident_id
        soon = dep.switched_at is not None and dep.switched_at <= inc.opened_at <= dep.switched_at + INCIDENT_WINDOW
        if own or (soon and _on_new_colour(inc, dep)):
            found.append(inc)
    return sorted(found, key=lambda i: i.opened_at)


def restore_seconds(dep: Deployment, incidents: list[Incident]) -> float | None:
    """Seconds from the failure to service restored (see the module), or None while it is not."""
    rollbacks = sorted((r for r in dep.rollbacks.all() if r.state == RollbackState.COMPLETED), key=lambda r: r.requested_at)
    start = incidents[0].opened_at if incidents else (rollbacks[0].requested_at if rollbacks else None)
    if start is None:
        return None
    for rb in rollbacks:
        end = rb.confirmed_at or rb.switched_at
        if end is not None and end >= start:
            return (end - start).total_seconds()
    resolved = [i.resolved_at for i in incidents if i.resolved_at is not None]
    if resolved:
        return (min(resolved) - start).total_seconds()
    return None


def dora_weeks(environment: Environment, *, weeks: int = 8, now: datetime | None = None) -> list[Week]:
    """The last `weeks` ISO weeks (this one included, oldest first), empty weeks as zeros."""
    now = now or timezone.now()
    weeks = max(1, min(int(weeks), MAX_WEEKS))
    first = week_start(now) - timedelta(weeks=weeks - 1)
    out = {iso_week(first + timedelta(weeks=i)): Week(week=iso_week(first + timedelta(weeks=i)),
                                                      starts_on=(first + timedelta(weeks=i)).date()) for i in range(weeks)}
    deps = list(
        Deployment.objects.select_related("release")
        .filter(environment=environment, state__in=CHANGE_STATES, finished_at__gte=first, finished_at__lte=now)
        .prefetch_related(Prefetch("rollbacks", queryset=Rollback.objects.order_by("requested_at")))
    )
    if not deps:
        return list(out.values())
    # One read of the incidents that may count against these deployments (their own, or in the hour after a 100 %).
    earliest = min(d.switched_at or d.finished_at for d in deps)
    own = [d.incident_id for d in deps if d.incident_id]
    incidents = list(
        Incident.objects.filter(Q(pk__in=own) | Q(environment=environment, severity=Severity.CRITICAL,
                                                  opened_at__gte=earliest, opened_at__lte=now + INCIDENT_WINDOW))
        .prefetch_related("alerts")
    )
    lead: dict[str, list[float]] = {k: [] for k in out}
    restore: dict[str, list[float]] = {k: [] for k in out}
    for dep in deps:
        week = out.get(iso_week(dep.finished_at))
        if week is None:
            continue
        week.changes += 1
        if dep.switched_at is not None:
            week.deployments += 1
            lead[week.week].append((dep.switched_at - dep.release.created_at).total_seconds())
        counted = failure_incidents(dep, incidents)
        rolled_back = dep.state == DeploymentState.ROLLED_BACK or any(r.state == RollbackState.COMPLETED for r in dep.rollbacks.all())
        if not (rolled_back or counted):
            continue
        week.failures += 1
        seconds = restore_seconds(dep, counted)
        if seconds is None:
            week.unrestored += 1
        else:
            week.restores += 1
            restore[week.week].append(seconds)
    for key, week in out.items():
        if week.changes:
            week.change_failure_rate_pct = round(100.0 * week.failures / week.changes, 1)
        if lead[key]:
            week.lead_time_p50_seconds = round(median(lead[key]), 1)
        if restore[key]:
            week.time_to_restore_p50_seconds = round(median(restore[key]), 1)
    return list(out.values())
