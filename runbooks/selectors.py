"""Reads for the runbook pages and API: the library, a run's state, the Markdown export."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, OuterRef, Subquery

from runbooks.actions import ACTIONS
from runbooks.models import Runbook, RunbookRun, RunbookVersion, StepOutcome
from runbooks.paths import remaining_from, run_path


def library() -> list[Runbook]:
    """Runbooks with their current version, number of versions, runs and when last used."""
    last_run = RunbookRun.objects.filter(version__runbook=OuterRef("pk")).order_by("-started_at").values("started_at")[:1]
    return list(
        Runbook.objects.select_related("current_version")
        .annotate(
            version_count=Count("versions", distinct=True),
            last_used_at=Subquery(last_run),
            run_count=Count("versions__runs", distinct=True),
        )
        .order_by("title")
    )


def runbook_get(slug: str) -> Runbook | None:
    return Runbook.objects.select_related("current_version").filter(slug=slug).first()


def runbook_versions(runbook: Runbook) -> list[RunbookVersion]:
    return list(runbook.versions.annotate(run_count=Count("runs")).order_by("-number"))


def run_get(public_id) -> RunbookRun | None:
    try:
        return (
            RunbookRun.objects.select_related("version__runbook", "incident", "environment", "started_by")
            .filter(public_id=public_id)
            .first()
        )
    except Exception:  # noqa: BLE001 - a malformed UUID is "not found"
        return None


def runs_of(runbook: Runbook, limit: int = 20) -> list[RunbookRun]:
    return list(
        RunbookRun.objects.filter(version__runbook=runbook)
        .select_related("version", "incident", "environment")
        .annotate(outcome_count=Count("outcomes"))
        .order_by("-started_at")[:limit]
    )


def runs_for_incident(incident) -> list[RunbookRun]:
    return list(RunbookRun.objects.filter(incident=incident).select_related("version__runbook").order_by("-started_at"))


@dataclass
class StepView:
    step: dict
    number: int
    state: str  # "done" | "skipped" | "failed" | "current" | "ahead" | "not-taken"
    outcome: StepOutcome | None = None
    answer_label: str = ""
    action_label: str = ""
    action_danger: bool = False
    action_perm: str = ""
    action_describe: str = ""
    seen: list[dict] = field(default_factory=list)  # for a decision: what the run's checks showed before it


@dataclass
class RunState:
    run: RunbookRun
    steps: list[StepView]
    current: StepView | None
    done_count: int
    total_estimate: int
    stamp: str
    outcomes: dict[str, StepOutcome] = field(default_factory=dict)

    @property
    def percent(self) -> int:
        if not self.total_estimate:
            return 100
        return int(round(100 * self.done_count / self.total_estimate))

    @property
    def finished(self) -> bool:
        return self.current is None


def run_state(run: RunbookRun) -> RunState:
    outcomes = {o.step_id: o for o in run.outcomes.select_related("actor").order_by("position")}
    visited, current_id = run_path(run.version, outcomes)
    ahead = remaining_from(run.version, current_id) if run.status == "running" else 0
    on_path = set(visited)
    views = []
    current_view = None
    for number, step in enumerate(run.version.steps, start=1):
        outcome = outcomes.get(step["id"])
        if outcome is not None:
            state = outcome.status
        elif step["id"] == current_id and run.status == "running":
            state = "current"
        elif step["id"] in on_path:
            state = "done"
        else:
            state = "ahead"
        view = StepView(step=step, number=number, state=state, outcome=outcome)
        if outcome is not None and outcome.answer and step["kind"] == "decision":
            view.answer_label = next((a["label"] for a in step["answers"] if a["id"] == outcome.answer), outcome.answer)
        if step["kind"] == "decision" and state == "current":
            view.seen = [
                {"title": v.step["title"], "status": v.outcome.evidence.get("status", ""), "words": v.outcome.evidence.get("words", ""),
                 "note": v.outcome.note}
                for v in views
                if v.outcome is not None and (v.outcome.evidence.get("words") or v.outcome.note)
            ]
        if step["kind"] == "action":
            spec = ACTIONS[step["action"]]
            view.action_label, view.action_danger, view.action_perm = spec.label, spec.danger, spec.perm
            view.action_describe = spec.describe(run, step)
        views.append(view)
        if state == "current":
            current_view = view
    if run.status != "running" or current_id is None:
        # Steps the run's path went around are "not taken", not "ahead".
        for view in views:
            if view.state == "ahead":
                view.state = "not-taken"
    stamp = f"{run.status}:{len(outcomes)}:{current_id or ''}"
    return RunState(
        run=run,
        steps=views,
        current=current_view,
        done_count=len(outcomes),
        total_estimate=len(outcomes) + ahead,
        stamp=stamp,
        outcomes=outcomes,
    )


def run_to_dict(run: RunbookRun) -> dict[str, Any]:
    state = run_state(run)
    return {
        "id": str(run.public_id),
        "runbook": run.version.runbook.slug,
        "title": run.version.runbook.title,
        "version": run.version.number,
        "status": run.status,
        "incident": str(run.incident.public_id) if run.incident_id else None,
        "environment": run.environment.name if run.environment_id else None,
        "started_by": run.started_by_label,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "current_step": state.current.step["id"] if state.current else None,
        "progress": {"recorded": state.done_count, "estimated_total": state.total_estimate, "percent": state.percent},
        "steps": [
            {
                "id": v.step["id"],
                "kind": v.step["kind"],
                "title": v.step["title"],
                "state": v.state,
                **(
                    {
                        "outcome": {
                            "status": v.outcome.status,
                            "note": v.outcome.note,
                            "answer": v.outcome.answer or None,
                            "evidence": v.outcome.evidence,
                            "by": v.outcome.actor_label,
                            "at": v.outcome.recorded_at.isoformat(),
                        }
                    }
                    if v.outcome
                    else {}
                ),
                **({"answers": v.step["answers"]} if v.step["kind"] == "decision" else {}),
            }
            for v in state.steps
        ],
    }


def _md_escape(text: str) -> str:
    return (text or "").replace("\r", "").strip()


def run_export_markdown(run: RunbookRun) -> str:
    """The run as a faithful Markdown record for the postmortem: what was seen, decided and done, by whom, when."""
    state = run_state(run)
    rb = run.version.runbook
    fmt = "%Y-%m-%d %H:%M:%S UTC"
    lines = [
        f"# Runbook run: {rb.title}",
        "",
        f"- Runbook: `{rb.slug}` version {run.version.number} (content `{run.version.content_hash[:12]}`)",
        f"- Run: `{run.public_id}`",
        f"- Status: **{run.status}**",
        f"- Started: {run.started_at.strftime(fmt)} by {run.started_by_label}",
    ]
    if run.finished_at:
        lines.append(f"- Finished: {run.finished_at.strftime(fmt)}")
    if run.abandon_reason:
        lines.append(f"- Abandoned because: {_md_escape(run.abandon_reason)}")
    if run.environment_id:
        lines.append(f"- Environment: {run.environment.name}")
    if run.incident_id:
        lines.append(f"- Incident: {run.incident.title} (`{run.incident.public_id}`)")
    lines += ["", "## Steps", ""]
    taken = sorted((v for v in state.steps if v.outcome), key=lambda v: v.outcome.position)
    for i, view in enumerate(taken, start=1):
        o = view.outcome
        step = view.step
        lines.append(f"### {i}. {step['title']} — {o.status}")
        lines.append("")
        lines.append(f"- Kind: {step['kind']}; recorded by {o.actor_label} at {o.recorded_at.strftime(fmt)}")
        if step["kind"] == "decision":
            lines.append(f"- Question: {_md_escape(step['question'])}")
            if view.answer_label:
                lines.append(f"- Answer: **{view.answer_label}**")
        ev = o.evidence or {}
        if ev.get("words"):
            label = "Seen" if step["kind"] == "check" else "Result"
            status = f" ({ev['status']})" if ev.get("status") else ""
            lines.append(f"- {label}{status}: {_md_escape(ev['words'])}")
        if ev.get("at") and step["kind"] == "check":
            lines.append(f"- Read at: {ev['at']}")
        if o.note:
            lines.append(f"- Note: {_md_escape(o.note)}")
        lines.append("")
    not_taken = [v for v in state.steps if not v.outcome]
    if not_taken:
        lines += ["## Steps not taken", ""]
        for v in not_taken:
            if v.state in ("current", "ahead"):
                why = "still open"
            elif run.status == "abandoned":
                why = "not reached: the run was abandoned"
            else:
                why = "not on the path taken"
            lines.append(f"- {v.step['title']} ({why})")
        lines.append("")
    return "\n".join(lines)
