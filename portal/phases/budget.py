"""Budget and growth alerts: cost above the phase's budget, and a platform about to outgrow its phase.

Each evaluation reads Cost Explorer once (portal.cloud.aws.cost_month_to_date), compares the month to
date and the forecast with the current phase's budget and each cost line with its share of the plan's
cost table (portal.phases.status.cost_part), and looks at the users against the phase's upper bound
and at the live instances' trend against the phase's range. Each finding is a warning alert through
the incidents intake (alert_ingest_internal) with a stable fingerprint, so a finding that stands
opens one incident however often it is evaluated; one that clears is resolved once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from portal.cloud import aws
from portal.incidents.ingest import alert_ingest_internal
from portal.incidents.models import Alert
from portal.phases.models import CapacitySample, GrowthPhase, UserCountSample
from portal.phases.selectors import current_phase, instance_range_scope, next_phase, per_colour_range
from portal.phases.status import cost_part
from portal.plan.loader import load_plan

log = logging.getLogger(__name__)

ALERT_SOURCE = "phases"
SEVERITY = "warning"
USERS_APPROACHING_SHARE = 0.9  # users at 90 % of the phase's upper bound: time for a lead to move phase
INSTANCE_HORIZON_DAYS = 14
INSTANCE_TREND_DAYS = 7
MIN_TREND_SPAN = timedelta(hours=12)


@dataclass
class Finding:
    key: str  # the fingerprint's tail: stable while the same thing is wrong
    group: str  # "budget" or "growth": one incident each
    firing: bool
    name: str
    summary: str
    labels: dict = field(default_factory=dict)
    annotations: dict = field(default_factory=dict)


def _money(value) -> str:
    return f"${Decimal(str(value)):,.2f}"


def cost_findings(cost: dict, phase: GrowthPhase) -> list[Finding]:
    """The month against the budget, and each line against its share (its forecast scaled like the total's)."""
    total, forecast, budget = Decimal(str(cost["month_to_date"])), cost.get("forecast"), Decimal(str(cost["budget"]))
    forecast = Decimal(str(forecast)) if forecast is not None else None
    over = []
    if total > budget:
        over.append(f"month to date {_money(total)}")
    if forecast is not None and forecast > budget:
        over.append(f"forecast {_money(forecast)}")
    out = [Finding(
        key=f"phase-{phase.number}:total", group="budget", firing=bool(over),
        name=f"Cost over the phase {phase.number} budget",
        summary=(f"{' and '.join(over)} above phase {phase.number} ({phase.name})'s budget of {_money(budget)}/month" if over
                 else f"month to date {_money(total)} within phase {phase.number}'s budget of {_money(budget)}"),
        labels={"kind": "budget", "phase": str(phase.number), "line": "total"},
        annotations={"month_to_date": str(total), "forecast": str(forecast) if forecast is not None else "",
                     "budget": str(budget)},
    )]
    scale = (forecast / total) if forecast is not None and total > 0 else Decimal("1")
    for line in cost["by_service"]:
        spent, share = Decimal(str(line["month_to_date"])), Decimal(str(line["phase_budget"]))
        expected = (spent * scale).quantize(Decimal("0.01"))
        firing = spent > share or expected > share
        out.append(Finding(
            key=f"phase-{phase.number}:{line['slug']}", group="budget", firing=firing,
            name=f"{line['service']} cost over its share of the phase {phase.number} budget",
            summary=(f"{line['service']}: month to date {_money(spent)}, forecast {_money(expected)} against its share "
                     f"{_money(share)} (the plan's {_money(line['plan_at_300k'])} at 300k users scaled to {_money(budget)})"),
            labels={"kind": "budget", "phase": str(phase.number), "line": line["slug"]},
            annotations={"month_to_date": str(spent), "forecast": str(expected), "share": str(share)},
        ))
    return out


def users_finding(phase: GrowthPhase, users: int | None) -> Finding | None:
    if users is None or next_phase(phase) is None:
        return None
    limit = int(phase.users_max * USERS_APPROACHING_SHARE)
    firing = users >= limit
    return Finding(
        key=f"phase-{phase.number}:users", group="growth", firing=firing,
        name=f"Users approaching the top of phase {phase.number}",
        summary=(f"{users:,} users, {users * 100 // phase.users_max} % of phase {phase.number} ({phase.name})'s upper bound of "
                 f"{phase.users_max:,}: a lead decides on moving to the next phase"),
        labels={"kind": "growth", "phase": str(phase.number), "signal": "users"},
        annotations={"users": str(users), "users_max": str(phase.users_max)},
    )


def instance_trend(samples: list[tuple[datetime, int]]) -> float | None:
    """Instances per day over the samples (least squares); None without half a day of samples."""
    if len(samples) < 2 or samples[-1][0] - samples[0][0] < MIN_TREND_SPAN:
        return None
    t0 = samples[0][0]
    xs = [(at - t0).total_seconds() / 86400 for at, _ in samples]
    ys = [float(n) for _, n in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def instances_finding(env, phase: GrowthPhase, now: datetime) -> Finding | None:
    """The live instances' trend, projected INSTANCE_HORIZON_DAYS ahead, against the phase's range (as the
    lead's setting reads it: the busier colour per colour, both together for the platform)."""
    rows = list(CapacitySample.objects.filter(environment=env, at__gte=now - timedelta(days=INSTANCE_TREND_DAYS))
                .order_by("at").values_list("at", "blue_in_service", "green_in_service"))
    platform = instance_range_scope() == "platform"
    samples = [(at, (b or 0) + (g or 0) if platform else max(b or 0, g or 0)) for at, b, g in rows]
    rate = instance_trend(samples)
    if rate is None:
        return None
    lo, hi = (phase.instances_min, phase.instances_max) if platform else per_colour_range(phase)
    now_n = samples[-1][1]
    projected = now_n + rate * INSTANCE_HORIZON_DAYS
    leaves = projected > hi or projected < lo
    when = ""
    if leaves and rate:
        edge = hi if rate > 0 else lo
        days = max((edge - now_n) / rate, 0)
        when = f" in about {days:.0f} days ({(now + timedelta(days=days)).date().isoformat()})"
    return Finding(
        key=f"phase-{phase.number}:instances", group="growth", firing=leaves,
        name=f"Instances forecast to leave the phase {phase.number} range",
        summary=(f"{now_n} instances, trending {rate:+.2f}/day: {projected:.0f} in {INSTANCE_HORIZON_DAYS} days, outside "
                 f"phase {phase.number}'s {lo}-{hi}{when}: a lead decides on moving phase"),
        labels={"kind": "growth", "phase": str(phase.number), "signal": "instances"},
        annotations={"in_service": str(now_n), "per_day": f"{rate:.3f}", "range": f"{lo}-{hi}"},
    )


def _fingerprint(env, finding: Finding) -> str:
    return f"{env.name}:{finding.key}"


def _sync(env, finding: Finding) -> str:
    """Raise a firing finding (a repeat finds its alert); resolve a clear one only if its alert fires."""
    fingerprint = _fingerprint(env, finding)
    if not finding.firing:
        live = Alert.objects.filter(fingerprint=f"{ALERT_SOURCE}:{fingerprint}", status=Alert.Status.FIRING).exists()
        if not live:
            return "clear"
    alert_ingest_internal(
        source=ALERT_SOURCE, fingerprint=fingerprint, name=finding.name, severity=SEVERITY, firing=finding.firing,
        summary=finding.summary, labels=finding.labels, annotations=finding.annotations, environment=env,
        grouping_key=f"{finding.group}:{env.name}:phase-{finding.labels.get('phase')}",
    )
    return "firing" if finding.firing else "resolved"


def budget_evaluate(*, environment, now: datetime | None = None, report=None) -> dict:
    """One evaluation of cost and growth for `environment`; returns each finding's state."""
    now = now or timezone.now()
    phase = current_phase()
    findings: list[Finding] = []
    try:
        if report is None:
            report = aws.cost_month_to_date(environment)
        findings += cost_findings(cost_part(environment, phase, load_plan(), report=report), phase)
    except Exception as exc:  # Cost Explorer is outside: no answer is no finding, never a false alarm
        log.warning("phases: cost on %s unavailable for the budget alerts: %s", environment.name, exc)
    latest = UserCountSample.objects.order_by("-at").first()
    for f in (users_finding(phase, latest.users if latest else None), instances_finding(environment, phase, now)):
        if f is not None:
            findings.append(f)
    return {f.key: _sync(environment, f) for f in findings}
