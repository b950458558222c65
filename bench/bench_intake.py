"""Alert intake at ten times the launch load, on the production shape (bench/stack.py: gunicorn, the
Procfile's workers, PostgreSQL, Redis), measured from outside.

    .venv/bin/python bench/bench_intake.py [--single 1000] [--clients 20] [--batched 100000] [--batch 100]
                                           [--webs 1] [--workers 1]

Two rounds, each on a fresh database:

1. `--single` webhooks, one alert each (each its own Alertmanager group, so each its own incident),
   sent by `--clients` concurrent clients as fast as they are answered, starting as soon as the web
   process answers /healthz (its first requests count). Prints the time from the first send to the
   last incident's `opened_at`, lost and duplicated, webhook p50/p99/max.
2. `--batched` alerts in payloads of `--batch` (groups of 100 alerts; a tenth of the payloads sent
   twice, as Alertmanager does after a timeout), as fast as `--clients` clients are answered. Prints
   the time from the first send to the last delivery processed, alerts stored, incidents (one per
   group), lost and duplicated.

With `--webs 2 --workers 2` it is the "more than one machine" shape: clients alternate between the
two web processes; nothing may be duplicated. Ends with the `BENCH` line for `make bench`.
Exit status 1 when anything is lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import Stack, alertmanager_payload, batched_sends, cpu_spent, figure, percentile, report, send_all  # noqa: E402


def wait_processed(stack: Stack, expected_deliveries: int, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        n, pending = stack.sql("SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM incidents_alertdelivery")[0]
        if n >= expected_deliveries and pending == 0:
            return
        time.sleep(0.2)
    raise SystemExit(f"deliveries still pending after {timeout:.0f} s")


def counts(stack: Stack, tag: str) -> dict:
    q = lambda sql: stack.sql(sql)[0][0]  # noqa: E731
    return {
        "stored": q(f"SELECT count(*) FROM incidents_alert WHERE fingerprint LIKE '{tag}%'"),
        "distinct": q(f"SELECT count(DISTINCT fingerprint) FROM incidents_alert WHERE fingerprint LIKE '{tag}%'"),
        "unattached": q(f"SELECT count(*) FROM incidents_alert WHERE fingerprint LIKE '{tag}%' AND incident_id IS NULL"),
        "incidents": q(f"SELECT count(*) FROM incidents_incident WHERE grouping_key LIKE '%{tag}%'"),
        "groups": q(f"SELECT count(DISTINCT grouping_key) FROM incidents_incident WHERE grouping_key LIKE '%{tag}%'"),
        "not_processed": q("SELECT count(*) FROM incidents_alertdelivery WHERE status <> 'processed'"),
        # Only this round's incidents: beat's own checks open incidents of their own in the scaled shape.
        "firing_entries": q("SELECT count(*) FROM incidents_timelineentry t JOIN incidents_incident i ON i.id = t.incident_id "
                            f"WHERE t.kind = 'alert_firing' AND i.grouping_key LIKE '%{tag}%'"),
        "last_opened": q(f"SELECT max(opened_at) FROM incidents_incident WHERE grouping_key LIKE '%{tag}%'"),
        "last_processed": q("SELECT max(processed_at) FROM incidents_alertdelivery"),
    }


def single_round(args) -> tuple[list[dict], bool]:
    tag = "Single"
    bodies = [json.dumps(alertmanager_payload([i], i, tag)).encode() for i in range(args.single)]
    scaled = args.webs > 1 or args.workers > 1
    # The scaled shape runs two beats, as two hosts with the Procfile would: only one may schedule.
    with Stack(db="portal_bench_intake", redis=args.redis, webs=args.webs, workers=args.workers, beats=2 if scaled else 0) as stack:
        token = stack.token("alerts:write")
        cpu_before = stack.cpu_seconds("worker")  # what the workers spent starting up is not the intake's
        snap = stack.cpu_snapshot()
        beat_start = time.time()
        first, latencies, failures = send_all(stack.base_urls, token, bodies, args.clients)
        sent_in = time.time() - first
        wait_processed(stack, args.single)
        c = counts(stack, tag)
        worker_cpu = stack.cpu_seconds("worker") - cpu_before
        spent = cpu_spent(snap, stack.cpu_snapshot())
        beats_leading = polls = polls_expected = None
        if scaled:
            time.sleep(max(0.0, 20 - (time.time() - beat_start)))  # at least four 5-second poll slots
            beats_leading = sum("leading: this beat schedules" in stack.log(f"beat{i}") for i in range(2))
            # Counted where they arrive (beat writes its run counts to the database only every few minutes),
            # from beat_start on: the beats run from the stack's start, a while before (workers pinged, token made).
            polls = len({task for i in range(args.workers)
                         for at, task in re.findall(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+: \w+/MainProcess\] "
                                                    r"Task portal\.health\.tasks\.health_poll\[([0-9a-f-]+)\] received",
                                                    stack.log(f"worker{i}"), re.M)
                         if datetime.strptime(at, "%Y-%m-%d %H:%M:%S").timestamp() >= int(beat_start)})  # local time, as Celery logs
            polls_expected = (time.time() - int(beat_start)) / 5
    to_all = c["last_opened"].timestamp() - first if c["last_opened"] else float("nan")
    # A webhook the client saw fail (Alertmanager sends it again) is a failure, not a loss; lost is an
    # alert the portal answered 200 for and then has no incident for.
    answered = args.single - len(failures)
    lost = max(0, answered - c["stored"], answered - c["incidents"]) + c["unattached"]
    dup = (c["stored"] - c["distinct"]) + max(0, c["incidents"] - c["groups"]) + max(0, c["firing_entries"] - args.single)
    shape = f"{args.webs} web x {args.workers} worker"
    print(f"[single] {args.single} webhooks from {args.clients} clients ({shape}): failures {len(failures)}"
          + (f" e.g. {failures[0]}" if failures else ""))
    print(f"[single] incidents {c['incidents']} (expected {args.single}), lost {lost}, duplicated {dup}")
    print(f"[single] first send to last incident opened: {to_all:.1f} s; worker CPU {worker_cpu:.1f} s "
          f"({worker_cpu / max(1, c['incidents']) * 1000:.1f} ms per incident)")
    print(f"[single] all sent in {sent_in:.1f} s; CPU seconds from the first send until every delivery was processed: "
          + ", ".join(f"{k} {v:.1f}" for k, v in sorted(spent.items(), key=lambda kv: -kv[1]) if v >= 0.05))
    print(f"[single] webhook latency p50 {percentile(latencies, .5) * 1000:.0f} ms, p99 {percentile(latencies, .99) * 1000:.0f} ms, "
          f"max {max(latencies) * 1000:.0f} ms (first 20: max {max(latencies[:20]) * 1000:.0f} ms)")
    figs = [
        figure(f"1,000 single-alert webhooks: all incidents after first send ({shape})", round(to_all, 2), "s", 10),
        figure(f"single-alert webhooks: p99 incl. first requests ({shape})", round(percentile(latencies, .99) * 1000, 1), "ms", 250),
        figure(f"single-alert webhooks: lost + duplicated ({shape})", lost + dup, "", 0),
        figure(f"single-alert webhooks: requests failed at the client ({shape})", len(failures), "", 0,
               note=failures[0][:120] if failures else ""),
        figure(f"worker CPU per new incident ({shape})", round(worker_cpu / max(1, c['incidents']) * 1000, 1), "ms"),
    ]
    if beats_leading is not None:
        print(f"[single] beats: 2 started, {beats_leading} leading; health polls sent {polls} in {polls_expected * 5:.0f} s "
              f"(one beat every 5 s: about {polls_expected:.0f})")
        figs.append(figure("beats started 2: beats that scheduled", beats_leading, "", 1, "=="))
        figs.append(figure("health polls sent per 5 s slot (two beats, one schedules)", round(polls / max(1, polls_expected), 2), "", 1.3, "<="))
    return figs, lost == 0 and dup == 0 and not failures


def batched_round(args) -> tuple[list[dict], bool]:
    tag = "Batch"
    sends, payloads, groups = batched_sends(args.batched, args.batch, tag)
    with Stack(db="portal_bench_intake", redis=args.redis, webs=args.webs, workers=args.workers) as stack:
        token = stack.token("alerts:write")
        first, latencies, failures = send_all(stack.base_urls, token, sends, args.clients)
        wait_processed(stack, len(sends))
        c = counts(stack, tag)
    to_all = c["last_processed"].timestamp() - first if c["last_processed"] else float("nan")
    lost = max(0, args.batched - c["stored"]) + c["unattached"]
    dup = (c["stored"] - c["distinct"]) + max(0, c["incidents"] - c["groups"]) + max(0, c["firing_entries"] - args.batched)
    wrong_groups = abs(c["incidents"] - groups)
    shape = f"{args.webs} web x {args.workers} worker"
    print(f"[batched] {args.batched} alerts in {payloads} payloads (+{len(sends) - payloads} resent) from {args.clients} clients ({shape}): "
          f"failures {len(failures)}" + (f" e.g. {failures[0]}" if failures else ""))
    print(f"[batched] stored {c['stored']}, incidents {c['incidents']} (expected {groups}), lost {lost}, duplicated {dup}, "
          f"not processed {c['not_processed']}")
    print(f"[batched] first send to last delivery processed: {to_all:.1f} s; webhook p99 {percentile(latencies, .99) * 1000:.0f} ms")
    figs = [
        figure(f"{args.batched:,} alerts in {payloads:,} payloads: all stored and grouped ({shape})", round(to_all, 1), "s", 60),
        figure(f"batched: lost + duplicated + misgrouped ({shape})", lost + dup + wrong_groups + len(failures), "", 0),
    ]
    return figs, lost == 0 and dup == 0 and not failures and wrong_groups == 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--single", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--batched", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--webs", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/2")
    args = ap.parse_args()
    figs, ok = [], True
    if args.single:
        f, good = single_round(args)
        figs += f
        ok &= good
    if args.batched:
        f, good = batched_round(args)
        figs += f
        ok &= good
    report("intake" if args.webs == 1 and args.workers == 1 else "intake-scaled", figs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
