"""Reads runbooks/library/*.yaml, validates each file, and stores a new RunbookVersion when it changed.

A file that fails to parse or validate loads nothing: the runbook keeps the version it had, and
the error names the file, the line and the reason.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction

from portal.actors import Actor
from portal.audit.services import audit_record
from runbooks.checks import SOURCES
from runbooks.models import Runbook, RunbookVersion

log = logging.getLogger(__name__)

LIBRARY_DIR = Path(__file__).resolve().parent / "library"

STEP_KINDS = ("instruction", "check", "decision", "action", "escalate")
ACTIONS = ("scale_out", "rollback", "rds_failover", "pause_automation")
END = "end"
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,79}$")


class RunbookLoadError(Exception):
    def __init__(self, file: str, line: int | None, reason: str):
        self.file, self.line, self.reason = file, line, reason
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}" if self.line else f"{self.file}: {self.reason}"


# --- YAML with line numbers -------------------------------------------------------------------


class _LineDict(dict):
    line: int = 0
    key_lines: dict


class _LineList(list):
    line: int = 0
    item_lines: list


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)
    out = _LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise RunbookLoadError("", key_node.start_mark.line + 1, f"keys must be text, got {key!r}")
        if key in out:
            raise RunbookLoadError("", key_node.start_mark.line + 1, f"key {key!r} appears twice")
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader, node):
    out = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def _line(obj: Any, key: str | None = None) -> int | None:
    if isinstance(obj, _LineDict):
        return obj.key_lines.get(key, obj.line) if key else obj.line
    return getattr(obj, "line", None)


# --- Validation -------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Strip the line-tracking types so the definition stores as plain JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _text(d: dict, key: str, fname: str, *, required: bool = False, default: str = "") -> str:
    value = d.get(key, default)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise RunbookLoadError(fname, _line(d, key), f"{key!r} must be text")
    if required and not value.strip():
        raise RunbookLoadError(fname, _line(d, key), f"{key!r} is required")
    return value.strip()


def parse_runbook(text: str, fname: str) -> dict:
    """Parse and validate one runbook file; returns the normalised definition or raises RunbookLoadError."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader subclass
    except RunbookLoadError as exc:
        raise RunbookLoadError(fname, exc.line, exc.reason) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise RunbookLoadError(fname, mark.line + 1 if mark else None, f"invalid YAML: {reason}") from None
    except yaml.YAMLError as exc:
        raise RunbookLoadError(fname, None, f"invalid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise RunbookLoadError(fname, 1, "the file must be a mapping with slug, title and steps")

    allowed_top = {"slug", "title", "summary", "alerts", "environment_required", "steps"}
    for key in doc:
        if key not in allowed_top:
            raise RunbookLoadError(fname, _line(doc, key), f"unknown key {key!r} (allowed: {', '.join(sorted(allowed_top))})")
    slug = _text(doc, "slug", fname, required=True)
    if not _SLUG.match(slug):
        raise RunbookLoadError(fname, _line(doc, "slug"), f"slug {slug!r} must be lowercase letters, digits and dashes")
    stem = Path(fname).stem
    if slug != stem:
        raise RunbookLoadError(fname, _line(doc, "slug"), f"slug {slug!r} must match the file name {stem!r}")
    title = _text(doc, "title", fname, required=True)
    summary = _text(doc, "summary", fname)
    alerts = doc.get("alerts") or []
    if not isinstance(alerts, list) or not all(isinstance(a, str) for a in alerts):
        raise RunbookLoadError(fname, _line(doc, "alerts"), "'alerts' must be a list of alert names")
    env_required = doc.get("environment_required", True)
    if not isinstance(env_required, bool):
        raise RunbookLoadError(fname, _line(doc, "environment_required"), "'environment_required' must be true or false")

    raw_steps = doc.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise RunbookLoadError(fname, _line(doc, "steps"), "'steps' must be a non-empty list")

    steps: list[dict] = []
    seen: dict[str, int] = {}
    pending_next: list[tuple[str, int, int | None, str]] = []  # (target, from_index, line, what)
    for index, raw in enumerate(raw_steps):
        item_line = raw_steps.item_lines[index] if isinstance(raw_steps, _LineList) else None
        if not isinstance(raw, dict):
            raise RunbookLoadError(fname, item_line, f"step {index + 1} must be a mapping")
        kind = raw.get("kind")
        if kind not in STEP_KINDS:
            raise RunbookLoadError(
                fname, _line(raw, "kind"), f"step {index + 1}: unknown step kind {kind!r} (known: {', '.join(STEP_KINDS)})"
            )
        step_id = raw.get("id")
        if not isinstance(step_id, str) or not _SLUG.match(step_id) or step_id == END:
            raise RunbookLoadError(fname, _line(raw, "id"), f"step {index + 1}: 'id' must be a short slug (not 'end'), got {step_id!r}")
        if step_id in seen:
            raise RunbookLoadError(fname, _line(raw, "id"), f"step id {step_id!r} is used twice")
        seen[step_id] = index
        allowed = {"id", "kind", "title", "text", "next"} | {
            "instruction": set(),
            "check": {"source", "params"},
            "decision": {"question", "answers"},
            "action": {"action", "params", "confirm"},
            "escalate": {"level"},
        }[kind]
        for key in raw:
            if key not in allowed:
                raise RunbookLoadError(fname, _line(raw, key), f"step {step_id!r}: unknown key {key!r} for a {kind} step")
        step: dict[str, Any] = {
            "id": step_id,
            "kind": kind,
            "title": _text(raw, "title", fname, required=True),
            "text": _text(raw, "text", fname),
            "line": _line(raw),
        }
        if "next" in raw:
            nxt = raw["next"]
            if not isinstance(nxt, str):
                raise RunbookLoadError(fname, _line(raw, "next"), f"step {step_id!r}: 'next' must be a step id or 'end'")
            step["next"] = nxt
            pending_next.append((nxt, index, _line(raw, "next"), f"step {step_id!r} next"))
        if kind == "check":
            source = raw.get("source")
            if source not in SOURCES:
                raise RunbookLoadError(
                    fname, _line(raw, "source"), f"step {step_id!r}: unknown check source {source!r} (known: {', '.join(sorted(SOURCES))})"
                )
            params = raw.get("params") or {}
            if not isinstance(params, dict):
                raise RunbookLoadError(fname, _line(raw, "params"), f"step {step_id!r}: 'params' must be a mapping")
            step["source"] = source
            step["params"] = _plain(params)
        elif kind == "decision":
            step["question"] = _text(raw, "question", fname, required=True)
            answers = raw.get("answers")
            if not isinstance(answers, list) or len(answers) < 2:
                raise RunbookLoadError(fname, _line(raw, "answers"), f"step {step_id!r}: a decision needs at least two answers")
            out = []
            answer_ids = set()
            for a_index, answer in enumerate(answers):
                a_line = answers.item_lines[a_index] if isinstance(answers, _LineList) else None
                if not isinstance(answer, dict):
                    raise RunbookLoadError(fname, a_line, f"step {step_id!r}: each answer needs id, label and next")
                extra = set(answer) - {"id", "label", "next"}
                if extra:
                    raise RunbookLoadError(fname, _line(answer, sorted(extra)[0]), f"step {step_id!r}: unknown answer key {sorted(extra)[0]!r}")
                a_id = answer.get("id")
                if not isinstance(a_id, str) or not _SLUG.match(a_id) or a_id in answer_ids:
                    raise RunbookLoadError(fname, _line(answer, "id"), f"step {step_id!r}: answer ids must be distinct slugs, got {a_id!r}")
                answer_ids.add(a_id)
                target = answer.get("next")
                if not isinstance(target, str):
                    raise RunbookLoadError(fname, _line(answer, "next") or a_line, f"step {step_id!r}: answer {a_id!r} needs 'next' (a step id or 'end')")
                out.append({"id": a_id, "label": _text(answer, "label", fname, required=True), "next": target})
                pending_next.append((target, index, _line(answer, "next"), f"answer {a_id!r} of step {step_id!r}"))
            step["answers"] = out
        elif kind == "action":
            action = raw.get("action")
            if action not in ACTIONS:
                raise RunbookLoadError(fname, _line(raw, "action"), f"step {step_id!r}: unknown action {action!r} (known: {', '.join(ACTIONS)})")
            params = raw.get("params") or {}
            if not isinstance(params, dict):
                raise RunbookLoadError(fname, _line(raw, "params"), f"step {step_id!r}: 'params' must be a mapping")
            step["action"] = action
            step["params"] = _plain(params)
            step["confirm"] = _text(raw, "confirm", fname)
        elif kind == "escalate":
            level = raw.get("level")
            if level is not None and (not isinstance(level, int) or level < 1):
                raise RunbookLoadError(fname, _line(raw, "level"), f"step {step_id!r}: 'level' must be a positive number")
            step["level"] = level
        steps.append(step)

    # Jumps only go forward, so every run reaches an end.
    for target, from_index, line, what in pending_next:
        if target == END:
            continue
        if target not in seen:
            raise RunbookLoadError(fname, line, f"{what} points to {target!r}, which is not a step id")
        if seen[target] <= from_index:
            raise RunbookLoadError(fname, line, f"{what} points back to {target!r}: jumps must go to a later step")
    return {
        "slug": slug,
        "title": title,
        "summary": summary,
        "alerts": list(alerts),
        "environment_required": env_required,
        "steps": steps,
    }


# --- Sync -------------------------------------------------------------------------------------


@dataclass
class SyncReport:
    created: list[str] = field(default_factory=list)  # "slug v1"
    updated: list[str] = field(default_factory=list)  # "slug v2"
    unchanged: list[str] = field(default_factory=list)
    errors: list[RunbookLoadError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sync_file(path: Path, *, actor: Any, report: SyncReport, base: Path | None = None) -> None:
    fname = str(path.relative_to(base)) if base and path.is_relative_to(base) else path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        report.errors.append(RunbookLoadError(fname, None, f"cannot read the file: {exc}"))
        return
    try:
        definition = parse_runbook(text, fname)
    except RunbookLoadError as exc:
        report.errors.append(exc)
        Runbook.objects.filter(slug=path.stem).update(last_load_error=str(exc))
        log.warning("runbook not loaded: %s", exc)
        return
    digest = content_hash(text)
    actor_label = Actor.of(actor).label
    with transaction.atomic():
        runbook = Runbook.objects.select_for_update().filter(slug=definition["slug"]).first()
        if runbook is None:
            runbook = Runbook.objects.create(
                slug=definition["slug"], title=definition["title"], summary=definition["summary"], source_file=fname
            )
        current = runbook.current_version
        if current is not None and current.content_hash == digest:
            if runbook.last_load_error:
                runbook.last_load_error = ""
                runbook.save(update_fields=["last_load_error", "updated_at"])
            report.unchanged.append(f"{runbook.slug} v{current.number}")
            return
        number = (runbook.versions.order_by("-number").values_list("number", flat=True).first() or 0) + 1
        version = RunbookVersion.objects.create(
            runbook=runbook, number=number, content_hash=digest, source_text=text, definition=definition, loaded_by=actor_label
        )
        runbook.current_version = version
        runbook.title = definition["title"]
        runbook.summary = definition["summary"]
        runbook.source_file = fname
        runbook.last_load_error = ""
        runbook.save()
        audit_record(
            actor=actor,
            verb="runbook.version_create",
            target=runbook,
            before={"version": current.number} if current else None,
            after={"version": number, "content_hash": digest},
            extra={"file": fname, "steps": len(definition["steps"])},
        )
        (report.created if number == 1 else report.updated).append(f"{runbook.slug} v{number}")


def sync_library(*, directory: Path | str | None = None, actor: Any = "system:runbooks") -> SyncReport:
    """Load every *.yaml / *.yml file of the library; each file on its own, so one broken file stops only itself."""
    base = Path(directory) if directory else LIBRARY_DIR
    report = SyncReport()
    files = sorted([*base.glob("*.yaml"), *base.glob("*.yml")])
    for path in files:
        sync_file(path, actor=actor, report=report, base=base)
    return report
