"""`make bench`: every benchmark at ten times the launch load, one table of figures with the target
beside each and whether it is met.

    .venv/bin/python bench/run_all.py [--only intake,health] [--quick]

Each bench runs in its own process, its output kept in bench/out/<name>.log; each prints one
`BENCH {json}` line (bench/stack.py's report()) that this script reads. A bench that fails before
reporting shows as one row saying so. `--quick` runs every bench at a tenth of the load (a smoke run of
the table, not the figures the targets are about). Exit status 1 when a target is missed or a bench
did not report.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
OUT = ROOT / "bench" / "out"

# name -> (script, full-load arguments, quick arguments)
SUITE: dict[str, tuple[str, list[str], list[str]]] = {
    "intake": ("bench_intake.py", ["--single", "1000", "--clients", "20", "--batched", "100000", "--batch", "100"],
               ["--single", "100", "--clients", "20", "--batched", "10000", "--batch", "100"]),
    "intake-worker": ("bench_intake_worker.py", ["--incidents", "500"], ["--incidents", "100"]),
    "intake-scaled": ("bench_intake.py", ["--single", "1000", "--clients", "20", "--batched", "100000", "--batch", "100",
                                          "--webs", "2", "--workers", "2"],
                      ["--single", "100", "--clients", "20", "--batched", "10000", "--batch", "100", "--webs", "2", "--workers", "2"]),
    "health": ("bench_health.py", ["--checks", "5000", "--hanging", "0.10", "--seconds", "150"],
               ["--checks", "500", "--hanging", "0.10", "--seconds", "60"]),
    "health-2-workers": ("bench_health.py", ["--checks", "5000", "--hanging", "0.10", "--seconds", "150", "--workers", "2"],
                         ["--checks", "500", "--hanging", "0.10", "--seconds", "60", "--workers", "2"]),
    "pages": ("bench_pages.py", ["--scale", "10", "--users", "20", "--seconds", "45"], ["--scale", "1", "--users", "20", "--seconds", "15"]),
    "rollback": ("bench_rollback.py", ["--rollbacks", "50", "--cold", "0", "--broker", "redis://127.0.0.1:6379/6", "--database-url=postgres://postgres@127.0.0.1:5432/portal_bench_rollback"],
                 ["--rollbacks", "10", "--cold", "0", "--broker", "redis://127.0.0.1:6379/6", "--database-url=postgres://postgres@127.0.0.1:5432/portal_bench_rollback"]),
    "rollback-load": ("bench_rollback_load.py", ["--rollbacks", "50", "--alerts", "100000", "--checks", "5000"],
                      ["--rollbacks", "10", "--alerts", "10000", "--checks", "500"]),
}


def run(name: str, quick: bool) -> tuple[list[dict], int, float]:
    script, full, small = SUITE[name]
    OUT.mkdir(exist_ok=True)
    log_path = OUT / f"{name}.log"
    t = time.monotonic()
    figures: list[dict] = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen([PY, str(ROOT / "bench" / script), *(small if quick else full)], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if line.startswith("BENCH "):
                figures += json.loads(line[6:])["figures"]
            else:
                print(f"  {name}: {line.rstrip()}"[:220], flush=True)
        rc = proc.wait()
    return figures, rc, time.monotonic() - t


def fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".") if v == v else "n/a"
    return f"{v:,}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated names: " + ", ".join(SUITE))
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    names = [n for n in (args.only.split(",") if args.only else SUITE) if n]
    unknown = [n for n in names if n not in SUITE]
    if unknown:
        print(f"unknown bench {', '.join(unknown)}; known: {', '.join(SUITE)}", file=sys.stderr)
        return 2
    rows, bad = [], 0
    notes: dict[tuple[str, str], None] = {}  # (bench, note) in order, each once: the knobs beside the figures
    for name in names:
        print(f"== {name} ({SUITE[name][0]})", flush=True)
        figures, rc, took = run(name, args.quick)
        if not figures:
            rows.append((name, f"did not report (exit {rc}, see bench/out/{name}.log)", "", "", "", "NO"))
            bad += 1
            continue
        for f in figures:
            target = "" if f["target"] is None else f"{f['op']} {fmt(f['target'])} {f['unit']}".strip()
            met = "" if f["met"] is None else ("yes" if f["met"] else "NO")
            bad += f["met"] is False
            rows.append((name, f["name"], f"{fmt(f['value'])} {f['unit']}".strip(), target, f"{took:.0f} s", met))
            if f.get("note"):
                notes[(name, f["note"])] = None
    widths = [max(len(str(r[i])) for r in [("bench", "figure", "measured", "target", "took", "met"), *rows]) for i in range(6)]
    print()
    print(f"make bench{' --quick (a tenth of the load: a smoke run, not the targets)' if args.quick else ''}: one run on this machine")
    header = ("bench", "figure", "measured", "target", "took", "met")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    if notes:
        print("\nnotes (knobs and causes the benches gave with their figures):")
        for bench, note in notes:
            print(f"  {bench}: {note}")
    met = sum(1 for r in rows if r[5] == "yes")
    print(f"\ntargets met: {met} of {met + bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
