"""Evidence the portal produces itself: load-test results judged against the plan, restore runs described.

A load-test result file is a k6 end-of-test summary (`k6 run --summary-export=summary.json`, or the
JSON a `handleSummary` writes, whose metrics keep their numbers under "values") or Locust's
statistics (`locust --headless --json`, a list of per-request entries, or the same entries under
"stats"). Durations in both are milliseconds. The numbers are compared with the plan: the API's
peak request rate (expected_metrics api-rps, peak ~600/s), the API P95 target (performance_targets
api-p95, < 500 ms) and the error-rate target (< 1 %). A file this module cannot read raises
LoadTestFileError with the reason in words; nothing is judged from a guess.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from portal import outbound
from portal.plan.loader import load_plan

LOAD_TEST_ITEM = "load-testing"
RESTORE_ITEM = "disaster-recovery"
RESTORE_RUNBOOK = "backup-restore-verification"
MAX_RESULT_BYTES = 5 * 1024 * 1024
FETCH_TIMEOUT = (5, 20)


class LoadTestFileError(ValueError):
    """The file is not a k6 or Locust summary this module can read (the message says why)."""


@dataclass(frozen=True)
class Measured:
    tool: str
    requests: int
    rps: float
    p95_ms: float
    duration_seconds: float | None = None
    failure_percent: float | None = None
    peak_second_rps: float | None = None


@dataclass(frozen=True)
class Targets:
    peak_rps: float
    p95_ms: float
    error_percent: float | None


@dataclass
class LoadTestVerdict:
    passed: bool
    measured: Measured
    targets: Targets
    problems: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        m, t = self.measured, self.targets
        numbers = (f"{m.rps:.1f} requests/s (plan peak {t.peak_rps:g}/s), P95 {m.p95_ms:.0f} ms (target < {t.p95_ms:g} ms)")
        if m.failure_percent is not None:
            numbers += f", {m.failure_percent:.2f} % failed"
        numbers += f", {m.requests:,} requests"
        if m.duration_seconds:
            numbers += f" over {m.duration_seconds:.0f} s"
        head = "Load test passed" if self.passed else "Load test FAILED: " + "; ".join(self.problems)
        return f"{head} ({m.tool}: {numbers})"

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "problems": list(self.problems), "measured": asdict(self.measured),
                "targets": asdict(self.targets), "summary": self.summary}


# --- the plan's numbers ---------------------------------------------------------------------------

def load_test_targets(plan: dict | None = None) -> Targets:
    plan = plan or load_plan()
    rps = next((m for m in plan.get("expected_metrics") or [] if m.get("slug") == "api-rps"), None)
    if rps is None:
        raise LoadTestFileError("the plan has no API requests/second (expected_metrics api-rps) to compare with")
    targets = {t.get("slug"): t for t in plan.get("performance_targets") or []}
    p95 = targets.get("api-p95")
    if p95 is None:
        raise LoadTestFileError("the plan has no API P95 target (performance_targets api-p95) to compare with")
    p95_ms = float(p95["value"]) * (1000.0 if p95.get("unit", "s") == "s" else 1.0)
    errors = targets.get("error-rate")
    return Targets(peak_rps=float(rps.get("peak") or rps["value"]), p95_ms=p95_ms,
                   error_percent=float(errors["value"]) if errors else None)


# --- reading the files ------------------------------------------------------------------------------

def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LoadTestFileError(f"{what} is not a number ({value!r})")
    return float(value)


def _k6_values(metrics: dict, name: str) -> dict | None:
    metric = metrics.get(name)
    if not isinstance(metric, dict):
        return None
    # --summary-export keeps the numbers on the metric; handleSummary's JSON under "values".
    values = metric.get("values") if isinstance(metric.get("values"), dict) else metric
    return values


def parse_k6(data: dict) -> Measured:
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        raise LoadTestFileError("a k6 summary has a \"metrics\" object; this file has none")
    reqs = _k6_values(metrics, "http_reqs")
    duration = _k6_values(metrics, "http_req_duration")
    if reqs is None or duration is None:
        raise LoadTestFileError("the k6 summary has no http_reqs or http_req_duration metric (did the test send HTTP requests?)")
    if "p(95)" not in duration:
        raise LoadTestFileError("the k6 summary's http_req_duration has no p(95): keep p(95) in --summary-trend-stats")
    count = _number(reqs.get("count"), "http_reqs count")
    rate = _number(reqs.get("rate"), "http_reqs rate")
    p95 = _number(duration["p(95)"], "http_req_duration p(95)")
    failed = _k6_values(metrics, "http_req_failed")
    failure = None
    if failed is not None:
        share = failed.get("rate", failed.get("value"))
        if share is not None:
            failure = _number(share, "http_req_failed rate") * 100.0
    run_ms = (data.get("state") or {}).get("testRunDurationMs") if isinstance(data.get("state"), dict) else None
    seconds = _number(run_ms, "testRunDurationMs") / 1000.0 if run_ms is not None else (count / rate if rate else None)
    return Measured(tool="k6", requests=int(count), rps=round(rate, 2), p95_ms=round(p95, 1),
                    duration_seconds=round(seconds, 1) if seconds else None,
                    failure_percent=round(failure, 3) if failure is not None else None)


def _histogram_percentile(histogram: dict[float, int], pct: float) -> float:
    total = sum(histogram.values())
    wanted = math.ceil(total * pct / 100.0)
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= wanted:
            return value
    return max(histogram)


def parse_locust(entries: list) -> Measured:
    if not entries or not all(isinstance(e, dict) for e in entries):
        raise LoadTestFileError("the Locust statistics list no requests")
    rows = [e for e in entries if str(e.get("name", "")).lower() != "aggregated"] or entries
    requests = failures = 0
    histogram: dict[float, int] = {}
    per_second: dict[str, int] = {}
    starts, ends = [], []
    for e in rows:
        if "num_requests" not in e or not isinstance(e.get("response_times"), dict):
            raise LoadTestFileError("a Locust entry needs num_requests and response_times (write it with locust --json)")
        requests += int(_number(e["num_requests"], "num_requests"))
        failures += int(_number(e.get("num_failures", 0), "num_failures"))
        for ms, n in e["response_times"].items():
            try:
                key = float(ms)
            except (TypeError, ValueError):
                raise LoadTestFileError(f"a Locust response time bucket is not a number ({ms!r})") from None
            histogram[key] = histogram.get(key, 0) + int(_number(n, "a response time count"))
        for second, n in (e.get("num_reqs_per_sec") or {}).items():
            per_second[str(second)] = per_second.get(str(second), 0) + int(_number(n, "a per-second count"))
        if e.get("start_time") is not None:
            starts.append(_number(e["start_time"], "start_time"))
        if e.get("last_request_timestamp") is not None:
            ends.append(_number(e["last_request_timestamp"], "last_request_timestamp"))
    if requests <= 0 or not histogram:
        raise LoadTestFileError("the Locust statistics count no requests")
    if not starts or not ends or max(ends) <= min(starts):
        raise LoadTestFileError("the Locust statistics have no start_time and last_request_timestamp to measure the rate")
    seconds = max(ends) - min(starts)
    return Measured(tool="locust", requests=requests, rps=round(requests / seconds, 2),
                    p95_ms=round(_histogram_percentile(histogram, 95), 1), duration_seconds=round(seconds, 1),
                    failure_percent=round(failures * 100.0 / requests, 3),
                    peak_second_rps=float(max(per_second.values())) if per_second else None)


def parse_load_test(content: bytes) -> Measured:
    """Read a k6 or Locust result file (JSON) into the numbers the plan is compared with."""
    if not content:
        raise LoadTestFileError("the file is empty")
    if len(content) > MAX_RESULT_BYTES:
        raise LoadTestFileError(f"the file is larger than {MAX_RESULT_BYTES // (1024 * 1024)} MB")
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise LoadTestFileError(f"the file is not JSON ({str(exc)[:120]}); upload k6's --summary-export or Locust's --json output") from None
    if isinstance(data, dict) and "metrics" in data:
        return parse_k6(data)
    if isinstance(data, list):
        return parse_locust(data)
    if isinstance(data, dict) and isinstance(data.get("stats"), list):
        return parse_locust(data["stats"])
    raise LoadTestFileError("the JSON is neither a k6 summary (an object with \"metrics\") nor Locust statistics (a list of entries)")


# --- judging ------------------------------------------------------------------------------------

def load_test_judge(measured: Measured, targets: Targets | None = None) -> LoadTestVerdict:
    targets = targets or load_test_targets()
    problems = []
    if measured.rps < targets.peak_rps:
        problems.append(f"{measured.rps:.1f} requests/s is below the plan's peak of {targets.peak_rps:g}/s")
    if measured.p95_ms >= targets.p95_ms:
        problems.append(f"P95 {measured.p95_ms:.0f} ms is not under the {targets.p95_ms:g} ms target")
    if targets.error_percent is not None and measured.failure_percent is not None and measured.failure_percent >= targets.error_percent:
        problems.append(f"{measured.failure_percent:.2f} % of requests failed (target < {targets.error_percent:g} %)")
    return LoadTestVerdict(passed=not problems, measured=measured, targets=targets, problems=problems)


def load_test_evaluate(content: bytes) -> LoadTestVerdict:
    return load_test_judge(parse_load_test(content))


def load_test_fetch(url: str, *, allow_private: bool) -> bytes:
    """GET a result file through the SSRF-guarded helper; errors become LoadTestFileError in words."""
    try:
        resp = outbound.request("GET", url, allow_private=allow_private, timeout=FETCH_TIMEOUT, stream=True)
    except Exception as exc:  # noqa: BLE001 - any failure to fetch is the person's to fix, in words
        raise LoadTestFileError(f"could not fetch the result: {outbound.error_words(exc, url)}") from None
    try:
        if resp.status_code != 200:
            raise LoadTestFileError(f"fetching the result answered HTTP {resp.status_code}")
        body = resp.raw.read(MAX_RESULT_BYTES + 1, decode_content=True)
    finally:
        resp.close()
    if len(body) > MAX_RESULT_BYTES:
        raise LoadTestFileError(f"the fetched file is larger than {MAX_RESULT_BYTES // (1024 * 1024)} MB")
    return body


# --- restore runs ----------------------------------------------------------------------------------

def restore_run_summary(run) -> str:
    """What a finished backup-restore run showed, in words: the decision, the timing notes, who and when."""
    outcomes = {o.step_id: o for o in run.outcomes.all()}
    decision = outcomes.get("verified")
    if decision is not None and decision.answer == "restore-ok":
        head = "Restore verified"
    elif decision is not None and decision.answer == "restore-failed":
        head = "Restore FAILED: the backups could not be trusted"
    else:
        head = "Restore run finished without a verdict"
    parts = [f"{head} (runbook {run.version.runbook.slug} v{run.version.number}, run by {run.started_by_label}"]
    if run.environment_id:
        parts.append(f" on {run.environment.name}")
    parts.append(f", {run.started_at:%Y-%m-%d %H:%M} to {run.finished_at:%H:%M} UTC)")
    measure = outcomes.get("measure")
    if measure is not None and measure.note:
        parts.append(f". Recovery time and point: {measure.note}")
    latest = outcomes.get("latest-backup")
    if latest is not None and (latest.evidence or {}).get("words"):
        parts.append(f". Latest backup: {latest.evidence['words']}")
    return "".join(parts)[:5000]
