from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from portal.audit.models import AuditEvent
from portal.plan.loader import load_plan
from runbooks.loader import LIBRARY_DIR, parse_runbook, sync_library
from runbooks.models import Runbook, RunbookVersion

SHIPPED = sorted(p.name for p in LIBRARY_DIR.glob("*.yaml"))


def test_library_ships_the_seed_runbooks_and_the_deployment_and_restore_runbooks():
    assert {Path(n).stem for n in SHIPPED} >= {
        "high-error-rate", "slow-performance", "database-issues",
        "blue-green-deployment", "gradual-rollout", "backup-restore-verification",
    }


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_file_loads(db, name):
    text = (LIBRARY_DIR / name).read_text()
    definition = parse_runbook(text, name)
    assert definition["slug"] == Path(name).stem
    assert definition["steps"]


@pytest.mark.parametrize("plan_runbook", load_plan()["runbooks"], ids=lambda r: r["slug"])
def test_seed_troubleshooting_runbooks_step_for_step(db, plan_runbook):
    """Each of the seed's five steps is a step of the YAML, with the kind its wording asks for."""
    definition = parse_runbook((LIBRARY_DIR / f"{plan_runbook['slug']}.yaml").read_text(), f"{plan_runbook['slug']}.yaml")
    by_title = {s["title"]: s for s in definition["steps"]}
    for seed_step in plan_runbook["steps"]:
        assert seed_step in by_title, f"seed step {seed_step!r} missing"
        step = by_title[seed_step]
        lower = seed_step.lower()
        if lower.startswith("scale up"):
            assert (step["kind"], step["action"]) == ("action", "scale_out")
        elif lower.startswith("rollback"):
            assert (step["kind"], step["action"]) == ("action", "rollback")
        elif lower.startswith("failover"):
            assert (step["kind"], step["action"]) == ("action", "rds_failover")
        elif lower.startswith("check") or lower.startswith("verify") or lower.startswith("review") and step["kind"] == "check":
            assert step["kind"] in ("check", "instruction")
    # The conditional actions ("scale up if", "rollback if", "failover if") sit behind a decision:
    # walking from the first step without answering one never reaches an action.
    steps = definition["steps"]
    index = 0
    while index < len(steps) and steps[index]["kind"] != "decision":
        assert steps[index]["kind"] != "action", f"action {steps[index]['id']} is reached without a decision"
        nxt = steps[index].get("next")
        index = len(steps) if nxt == "end" else next(i for i, s in enumerate(steps) if s["id"] == nxt) if nxt else index + 1
    assert index < len(steps), "no decision step"


def test_sync_creates_versions_once_and_audits(db):
    report = sync_library()
    assert report.ok and len(report.created) == len(SHIPPED)
    assert Runbook.objects.count() == len(SHIPPED)
    assert all(rb.current_version.number == 1 for rb in Runbook.objects.all())
    again = sync_library()
    assert again.ok and not again.created and not again.updated and len(again.unchanged) == len(SHIPPED)
    assert RunbookVersion.objects.count() == len(SHIPPED)
    assert AuditEvent.objects.filter(verb="runbook.version_create").count() == len(SHIPPED)


BROKEN_YAML = """slug: high-error-rate
title: High Error Rate
steps:
  - id: dashboard
    kind: check
    title: Check monitoring dashboard
     source: error_rate_now_vs_hour_ago
"""

UNKNOWN_KIND = """slug: high-error-rate
title: High Error Rate
steps:
  - id: dashboard
    kind: check
    title: Check monitoring dashboard
    source: error_rate_now_vs_hour_ago
  - id: beam-me-up
    kind: teleport
    title: Leave the building
"""


@pytest.mark.parametrize(
    "content,line,reason",
    [(BROKEN_YAML, 7, "invalid YAML"), (UNKNOWN_KIND, 9, "unknown step kind 'teleport'")],
    ids=["bad-indentation", "unknown-kind"],
)
def test_broken_file_reports_file_line_reason_and_keeps_old_version(db, library_copy, content, line, reason):
    assert sync_library(directory=library_copy).ok
    before = Runbook.objects.get(slug="high-error-rate").current_version
    (library_copy / "high-error-rate.yaml").write_text(content)

    report = sync_library(directory=library_copy)

    assert len(report.errors) == 1
    error = report.errors[0]
    assert error.file == "high-error-rate.yaml"
    assert error.line == line
    assert reason in error.reason
    assert str(error).startswith(f"high-error-rate.yaml:{line}: ")
    rb = Runbook.objects.get(slug="high-error-rate")
    assert rb.current_version == before and rb.versions.count() == 1
    assert reason in rb.last_load_error
    # The other files are untouched.
    assert len(report.unchanged) == len(SHIPPED) - 1


def test_sync_command_names_file_and_line_and_fails(db, library_copy, capsys):
    (library_copy / "high-error-rate.yaml").write_text(UNKNOWN_KIND)
    with pytest.raises(CommandError, match="1 runbook file"):
        call_command("sync_runbooks", "--directory", str(library_copy))
    err = capsys.readouterr().err
    assert "high-error-rate.yaml:9: step 2: unknown step kind 'teleport'" in err
    assert not Runbook.objects.filter(slug="high-error-rate").exists()
    assert Runbook.objects.filter(slug="slow-performance").exists()


def test_a_new_file_that_is_broken_loads_nothing(db, library_copy):
    (library_copy / "new-one.yaml").write_text("slug: new-one\ntitle: x\nsteps:\n  - {id: a, kind: check, title: A, source: nope}\n")
    report = sync_library(directory=library_copy)
    assert [(e.file, e.line) for e in report.errors] == [("new-one.yaml", 4)]
    assert "unknown check source 'nope'" in report.errors[0].reason
    assert not Runbook.objects.filter(slug="new-one").exists()


@pytest.mark.parametrize(
    "steps,needle",
    [
        ("  - {id: a, kind: decision, title: A, question: Q, answers: [{id: x, label: X, next: a}, {id: y, label: Y, next: end}]}\n", "points back"),
        ("  - {id: a, kind: instruction, title: A, next: nowhere}\n", "not a step id"),
        ("  - {id: a, kind: action, title: A, action: reboot_world}\n", "unknown action 'reboot_world'"),
        ("  - {id: a, kind: instruction, title: A}\n  - {id: a, kind: instruction, title: B}\n", "used twice"),
        ("  - {id: a, kind: decision, title: A, question: Q, answers: [{id: yes, label: X, next: end}, {id: n, label: Y, next: end}]}\n", "distinct slugs"),
    ],
)
def test_validation_reasons(steps, needle):
    from runbooks.loader import RunbookLoadError

    with pytest.raises(RunbookLoadError, match=needle) as info:
        parse_runbook("slug: t\ntitle: T\nsteps:\n" + steps, "t.yaml")
    assert info.value.line == (5 if needle == "used twice" else 4)


def test_changing_a_file_makes_version_2_and_a_running_run_stays_on_1(db, library_copy, responder, fake_checks):
    from runbooks import services

    assert sync_library(directory=library_copy).ok
    rb = Runbook.objects.get(slug="high-error-rate")
    run = services.run_start(runbook=rb, actor=responder)
    assert run.version.number == 1

    path = library_copy / "high-error-rate.yaml"
    path.write_text(path.read_text().replace("title: Check monitoring dashboard", "title: Check the monitoring dashboard"))
    report = sync_library(directory=library_copy)
    assert report.updated == ["high-error-rate v2"]

    rb.refresh_from_db()
    assert rb.current_version.number == 2
    run.refresh_from_db()
    assert run.version.number == 1
    assert run.version.step("dashboard")["title"] == "Check monitoring dashboard"
    services.step_record(run=run, step_id="dashboard", status="done", actor=responder)
    assert run.outcomes.get().step_id == "dashboard"
    new_run = services.run_start(runbook=rb, actor=responder)
    assert new_run.version.number == 2
    assert new_run.version.step("dashboard")["title"] == "Check the monitoring dashboard"


def test_seed_defaults_hook_loads_the_library(db):
    from runbooks.seed import seed

    stats = seed(load_plan(), reset=False)
    assert stats.created == len(SHIPPED) and not stats.notes
    stats = seed(load_plan(), reset=False)
    assert stats.unchanged == len(SHIPPED)
