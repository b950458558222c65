"""The path through a run: which steps it went through, where it stands and what is left (pure reads)."""

from __future__ import annotations

from runbooks.loader import END
from runbooks.models import OutcomeStatus, RunbookVersion, StepOutcome


def next_of(steps: list[dict], index: int, outcome: StepOutcome | None) -> str:
    """The id of the step after `steps[index]` given its outcome (END after the last)."""
    step = steps[index]
    if step["kind"] == "decision" and outcome is not None and outcome.status == OutcomeStatus.DONE and outcome.answer:
        for answer in step["answers"]:
            if answer["id"] == outcome.answer:
                return answer["next"]
    if step.get("next"):
        return step["next"]
    return steps[index + 1]["id"] if index + 1 < len(steps) else END


def run_path(version: RunbookVersion, outcomes: dict[str, StepOutcome]) -> tuple[list[str], str | None]:
    """(ids of the steps the run went through, id of the current step or None when it reached the end)."""
    steps = version.steps
    index_of = {s["id"]: i for i, s in enumerate(steps)}
    visited: list[str] = []
    current: str | None = steps[0]["id"] if steps else None
    while current is not None and current in outcomes:
        visited.append(current)
        nxt = next_of(steps, index_of[current], outcomes[current])
        current = None if nxt == END else nxt
        if current is not None and (current not in index_of or current in visited):
            current = None  # the loader forbids this; a damaged definition ends the run rather than looping
    return visited, current


def remaining_from(version: RunbookVersion, current: str | None) -> int:
    """Steps still ahead on the default path (decisions counted through their first answer)."""
    steps = version.steps
    index_of = {s["id"]: i for i, s in enumerate(steps)}
    count = 0
    while current is not None and count <= len(steps):
        count += 1
        step = steps[index_of[current]]
        nxt = step["answers"][0]["next"] if step["kind"] == "decision" else next_of(steps, index_of[current], None)
        current = None if nxt == END else nxt
    return count
