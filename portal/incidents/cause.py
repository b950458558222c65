"""The likely cause of an incident, ranked, each with its evidence and why it is ranked where it is.

Four kinds of cause, each scored 0-100 from what the portal can see:

- the deployment live on the affected colour (portal.incidents.selectors.recent_deployments_for):
  highest when the colour it put live carries the errors and the other colour does not, and when
  its analysis runs saw it; the listener's weights now say whether rolling back would still help;
- a vendor whose status page is degraded (the health checks of the external group);
- capacity: CPU of a colour with traffic, or database connections, at or near the warning
  threshold (portal.health.thresholds);
- a recent change: a scale action, a failover, a threshold edit, a drill (portal.incidents.changes).

Each cause carries the one safe action for it (roll back, scale out, pause automation, open the
runbook); the page offers the top one inline, through the deployments and runbooks views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from deployments.models import Analysis, Deployment
from portal.cloud import aws
from portal.health import thresholds
from portal.health.models import Check
from portal.incidents import changes, selectors, signal
from portal.incidents.models import Incident

RECENT = timedelta(hours=1)
NEAR = 0.9  # a reading at 90 % of its warning threshold is "near"


@dataclass
class Cause:
    kind: str  # deployment, vendor, capacity, change
    title: str
    score: int
    reason: str  # why it scores what it scores, in words
    evidence: list[str] = field(default_factory=list)
    action: dict | None = None  # {"kind": "rollback"|"scale"|"automation"|"runbook", ...}
    ref: dict = field(default_factory=dict)
    rank: int = 0
    why: str = ""  # why it is ranked where it is (set by likely_causes)


def _pct(v: float | None, unit: str = "%") -> str:
    return "no data" if v is None else f"{v:g} {unit}"


def _threshold_for(metric: str, severity: str):
    return thresholds.threshold(metric, severity) or thresholds.threshold(metric, "critical")


def _weights(env) -> tuple[dict, str]:
    try:
        w = aws.get_listener_weights(env)
        return {"blue": int(w.get("blue", 0) or 0), "green": int(w.get("green", 0) or 0)}, ""
    except Exception as exc:  # noqa: BLE001 - the cause is still shown, with the deployment's last reading
        return {}, f"the listener could not be read ({exc})"


def _minutes(a: datetime, b: datetime) -> str:
    m = abs(int((b - a).total_seconds() // 60))
    return "under a minute" if m < 1 else f"{m} min"


def _analysis_lines(dep: Deployment, limit: int = 3) -> tuple[list[str], bool]:
    runs = list(Analysis.objects.filter(deployment=dep).order_by("-at", "-id")[:limit])
    lines, saw_it = [], False
    for a in runs:
        counts = ""
        if a.new_errors is not None and a.new_requests is not None:
            counts = f" ({a.new_errors:g} errors of {a.new_requests:g} requests)"
        old = f", {dep.from_colour} {_pct(a.old_error_rate)}" if a.old_error_rate is not None else ""
        reasons = "; ".join(str(r) for r in (a.reasons or [])[:2])
        lines.append(f"Analysis {a.at:%H:%M:%S} at {a.weight} %: {a.decision}, {dep.to_colour} "
                     f"{_pct(a.new_error_rate)}{counts}{old}{' - ' + reasons if reasons else ''}")
        if a.decision in (Analysis.Decision.FAIL, Analysis.Decision.CRITICAL) or (
                a.new_error_rate is not None and a.old_error_rate is not None and a.new_error_rate > a.old_error_rate):
            saw_it = True
    return lines, saw_it


def deployment_cause(incident: Incident, fired: signal.Fired, now_values: dict, weights: dict, weights_note: str) -> Cause | None:
    deployments = selectors.recent_deployments_for(incident)
    if not deployments:
        return None
    dep = deployments[0]
    new, old = dep.to_colour, dep.from_colour
    opened = selectors.last_opened_at(incident)
    opened_words = "the incident reopened" if opened != incident.opened_at else "the incident opened"
    put_live = dep.started_at or dep.created_at
    score, why = 0, []
    if dep.is_active or put_live >= opened - RECENT:
        score += 30
        why.append(f"it put {new} live {_minutes(put_live, opened)} {'before' if put_live <= opened else 'after'} {opened_words}")
    else:
        score += 10
        why.append(f"it is {_minutes(put_live, opened)} older than the incident")
    if fired.colour == new:
        score += 35
        why.append(f"the alert names {new}, the colour it deployed")
    elif fired.colour == old:
        score -= 20
        why.append(f"the alert names {old}, the colour it did not change")
    elif not fired.colour:
        score += 10
    evidence = []
    t = _threshold_for(fired.metric, incident.severity) if fired.metric else None
    v_new, v_old = now_values.get(new), now_values.get(old)
    if fired.metric:
        evidence.append(f"{fired.metric} now: {new} {_pct(v_new, fired.unit)}, {old} {_pct(v_old, fired.unit)}"
                        f"{' (threshold ' + t.words() + ')' if t else ''}")
    if t is not None and t.crossed(v_new) and not t.crossed(v_old):
        score += 20
        why.append(f"{new} carries the errors and {old} {'does not' if v_old is not None else 'has no traffic to compare'}")
    elif t is not None and t.crossed(v_new) and t.crossed(v_old):
        score -= 15
        why.append("both colours are over the threshold, which points away from one deployment")
    shown = weights or dep.weights or {}
    if shown:
        evidence.append(f"Weights now: {' / '.join(f'{c} {w}' for c, w in shown.items())}"
                        f"{'' if weights else ' (as the deployment last read them back; ' + weights_note + ')'}")
    evidence.append(f"{dep.release.version} to {new}: {dep.get_state_display()}, started {put_live:%H:%M:%S} UTC")
    lines, saw_it = _analysis_lines(dep)
    evidence.extend(lines or ["No analysis run recorded."])
    if saw_it:
        score += 10
        why.append(f"its analysis saw {new} worse than {old}")
    action = None
    if int(shown.get(new, 0) or 0) > 0:
        action = {"kind": "rollback", "label": f"Roll back to {old}", "environment": incident.environment.name,
                  "deployment": dep}
    else:
        score -= 20
        why.append(f"{new} has no traffic now: a rollback would change nothing")
    return Cause(kind="deployment", title=f"Deployment {dep.release.version} to {new}", score=max(0, min(100, score)),
                 reason="; ".join(why), evidence=evidence, action=action,
                 ref={"deployment": str(dep.public_id), "url": dep.get_absolute_url()})


def vendor_causes(incident: Incident, fired: signal.Fired, now_values: dict) -> list[Cause]:
    out = []
    checks = Check.objects.filter(group=Check.Group.EXTERNAL, enabled=True,
                                  kind__in=[Check.Kind.STATUSPAGE, Check.Kind.HTTP])
    checks = checks.filter(Q(environment__isnull=True) | Q(environment_id=incident.environment_id))
    for check in checks:
        failing = check.status == Check.Status.FAILING or check.last_ok is False
        minor = (check.last_reason or "").startswith("minor:")
        if not (failing or minor):
            continue
        score = 45 if failing else 25
        why = ["its status page reports trouble" if check.kind == Check.Kind.STATUSPAGE else "it is not answering"]
        both = [c for c, v in now_values.items() if c and fired.metric and
                (t := _threshold_for(fired.metric, incident.severity)) is not None and t.crossed(v)]
        if len(both) > 1:
            score += 20
            why.append("the metric is up on both colours, as an outside dependency would make it")
        elif len(both) == 1:
            score -= 10
            why.append(f"only {both[0]} is affected, which a shared vendor would not explain")
        since = f" since {check.status_changed_at:%H:%M} UTC" if check.status_changed_at else ""
        out.append(Cause(kind="vendor", title=f"Vendor: {check.name}", score=max(0, min(100, score)), reason="; ".join(why),
                         evidence=[f"{check.name}: {check.last_reason or check.status}{since}"],
                         action=_runbook_action(incident), ref={"check": check.slug}))
    return out


def capacity_causes(incident: Incident, source, weights: dict) -> list[Cause]:
    out = []
    live = [c for c, w in weights.items() if w] or ["blue", "green"]
    cpu_t = thresholds.threshold("cpu", "warning")
    if cpu_t is not None:
        for colour in live:
            v = signal.current_value(source, "cpu", colour)
            if v is None or v < NEAR * cpu_t.value:
                continue
            over = cpu_t.crossed(v)
            out.append(Cause(kind="capacity", title=f"CPU on {colour}", score=50 if over else 35,
                             reason=f"{colour} runs at {v:g} % CPU, {'over' if over else 'near'} the warning threshold",
                             evidence=[f"CPU {colour}: {v:g} % (warning {cpu_t.words()})"],
                             action=_scale_action(incident, colour), ref={"colour": colour}))
    db_t = thresholds.threshold("db_connections", "warning")
    if db_t is not None:
        v = signal.current_value(source, "db_connections", None)
        if v is not None and v >= NEAR * db_t.value:
            over = db_t.crossed(v)
            out.append(Cause(kind="capacity", title="Database connections", score=50 if over else 35,
                             reason=f"the database uses {v:g} % of its connections, {'over' if over else 'near'} the warning threshold",
                             evidence=[f"DB connections: {v:g} % (warning {db_t.words()})"], action=_runbook_action(incident)))
    return out


def change_causes(incident: Incident, fired: signal.Fired) -> list[Cause]:
    """Scale actions, failovers, threshold edits and drills of the hour before the incident opened."""
    out = []
    feed = changes.change_feed(incident.environment, now=incident.opened_at + timedelta(minutes=2),
                               since=incident.opened_at - RECENT)
    drill_silenced = (incident.silenced_reason or "").startswith("expected: drill")
    rollouts = selectors.recent_deployments_for(incident)
    stopped_before = {ch.data.get("target") for ch in feed
                      if ch.kind == "drill" and ch.data.get("verb") == "drill.stop" and ch.at < incident.opened_at}
    for ch in feed:
        ago = f"{ch.at:%H:%M:%S} UTC, {_minutes(ch.at, incident.opened_at)} before it opened"
        if ch.kind == "drill" and ch.data.get("verb") == "drill.start":
            colour = (ch.data.get("after") or {}).get("colour") or ""
            ends_at = (ch.data.get("after") or {}).get("ends_at")
            if ch.data.get("target") in stopped_before or (ends_at and _when(ends_at) < incident.opened_at):
                continue  # it ended before the incident opened
            score = 55 if (not colour or not fired.colour or colour == fired.colour) else 20
            out.append(Cause(kind="change", title="Drill", score=score,
                             reason="a drill raises this metric on purpose; it rehearses the real cause, so the cause's "
                                    "own action still comes first" if score > 20 else "a drill on another colour",
                             evidence=[f"{ch.text} by {ch.actor} at {ago}"], action=_runbook_action(incident)))
        elif ch.kind == "scale":
            d = ch.data
            if d.get("automatic") and any(_during(dep, ch.at) for dep in rollouts):
                continue  # the rollout's own capacity steps: the deployment cause already stands for them
            into = d.get("to", 0) < d.get("from", 0)
            score = 45 if into and d.get("colour") in (fired.colour, "") else 30
            action = {"kind": "automation", "label": "Pause automation", "environment": incident.environment.name} \
                if d.get("automatic") else _scale_action(incident, d.get("colour") or "")
            out.append(Cause(kind="change", title=f"Scale of {d.get('colour')}", score=score,
                             reason="fewer instances just before it opened" if into else "a capacity change just before it opened",
                             evidence=[f"{ch.text} at {ago}"], action=action))
        elif ch.kind == "failover":
            score = 50 if fired.metric in ("db_connections", "error_rate", "p95_response_time") else 30
            out.append(Cause(kind="change", title="Database failover", score=score,
                             reason="connections drop and errors rise for a minute or two after a failover",
                             evidence=[f"{ch.text} by {ch.actor} at {ago}"], action=_runbook_action(incident)))
        elif ch.kind == "threshold":
            same = (ch.data.get("extra") or {}).get("metric") == fired.metric
            out.append(Cause(kind="change", title="Threshold edit", score=40 if same else 10,
                             reason="the threshold of the metric that fired was edited" if same else "another metric's threshold",
                             evidence=[f"{ch.text} by {ch.actor} at {ago}"], action=_runbook_action(incident)))
    if drill_silenced and not any(c.title == "Drill" for c in out):
        out.append(Cause(kind="change", title="Drill", score=55, reason="a drill's expected silence holds this incident",
                         evidence=[f"Silenced: {incident.silenced_reason}"], action=_runbook_action(incident)))
    return out


def _when(text: str) -> datetime:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)  # unreadable: treat it as still running


def _during(dep: Deployment, at: datetime) -> bool:
    start = dep.started_at or dep.created_at
    end = (dep.finished_at or timezone.now()) + timedelta(minutes=1)
    return start - timedelta(minutes=1) <= at <= end


def _runbook_action(incident: Incident) -> dict | None:
    if not incident.runbook_slug:
        return None
    return {"kind": "runbook", "label": f"Open the {incident.runbook_slug} runbook", "slug": incident.runbook_slug}


def _scale_action(incident: Incident, colour: str) -> dict | None:
    if colour not in ("blue", "green"):
        return None
    try:
        desired = int(aws.describe_groups(incident.environment)[colour].desired)
    except Exception:  # noqa: BLE001 - without the current size, no one-tap scale (the runbook instead)
        return _runbook_action(incident)
    return {"kind": "scale", "label": f"Scale {colour} out to {desired + 1}", "environment": incident.environment.name,
            "colour": colour, "from": desired, "desired": desired + 1}


def likely_causes(incident: Incident, *, source=None, now: datetime | None = None) -> list[Cause]:
    """The causes, most likely first; each with `rank` and `why` (its place against the others)."""
    if incident.environment_id is None:
        return []
    now = now or timezone.now()
    fired = signal.what_fired(incident)
    env = incident.environment
    with thresholds.cached():
        try:
            source = source or signal.source_for(incident, fired)
        except Exception:  # noqa: BLE001 - a source that cannot be built reads nothing
            source = None
        now_values = {}
        if fired.metric and source is not None:
            for colour in signal.colours_of(fired):
                now_values[colour] = signal.current_value(source, fired.metric, colour)
        weights, note = _weights(env)
        causes: list[Cause] = []
        dep = deployment_cause(incident, fired, now_values, weights, note)
        if dep is not None:
            causes.append(dep)
        causes += vendor_causes(incident, fired, now_values)
        if source is not None:
            causes += capacity_causes(incident, source, weights)
        causes += change_causes(incident, fired)
    order = {"deployment": 0, "capacity": 1, "vendor": 2, "change": 3}
    causes.sort(key=lambda c: (-c.score, order.get(c.kind, 9)))
    for i, c in enumerate(causes, start=1):
        c.rank = i
        if i == 1:
            c.why = f"First (score {c.score}" + (f", ahead of {causes[1].title} at {causes[1].score}" if len(causes) > 1 else "") \
                    + f"): {c.reason}."
        else:
            c.why = f"Ranked {i} (score {c.score}, below {causes[i - 2].title} at {causes[i - 2].score}): {c.reason}."
    return causes
