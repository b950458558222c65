"""The decision of one analysis run, from counts: pure functions, no database (the live analysis,
the replay and the false-alarm simulation all call `judge`).

Method (stated on the deployment and template pages). Each run tests at alpha / looks, the template's
alpha spread over the runs a hold (with its extension) can have (Bonferroni), because the evidence is
re-tested every run; `Rules.alpha` is that per-run alpha.
- Critical, at once: the new colour's error rate is above the critical threshold with significance
  (one-sided exact binomial test, p < alpha), or above it on the threshold's own minimum evidence;
  or its P95 is above the critical P95 with the template's minimum requests served.
- Failed run: the new colour's errors (at least two) exceed the old colour's with significance (one-sided
  Fisher exact test on the 2x2 table of errors and successes, p < alpha) and by more than the margin; or its P95
  is above the old colour's by more than the latency margin. `failure_limit` failed runs fail the step.
- Pass: at least `min_requests` served, no failure, and the new colour's error rate is below the pass
  bound (the template's, else the critical threshold) at `pass_confidence` (one-sided Clopper-Pearson
  upper bound). A clean canary passes on the evidence it has; nothing else is "inconclusive".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy.stats import beta, binomtest, fisher_exact

MIN_ERRORS_TO_FAIL = 2
METHOD = ("per run, at alpha spread over the hold's runs (Bonferroni): a one-sided Fisher exact test of the two colours' error counts and an exact binomial test against "
          "the critical error rate (p < alpha); pass when the new colour's error rate is below the pass bound "
          "at the pass confidence (Clopper-Pearson)")


@dataclass(frozen=True)
class Evidence:
    new_requests: float
    new_errors: float
    old_requests: float = 0.0
    old_errors: float = 0.0
    new_p95: float | None = None
    old_p95: float | None = None


@dataclass(frozen=True)
class Rules:
    alpha: float = 0.01
    pass_confidence: float = 0.9
    min_requests: int = 20
    error_margin_pct: float = 1.0
    latency_margin_pct: float = 25.0
    critical_error_rate: float | None = 5.0
    critical_error_min_requests: int | None = None
    critical_p95: float | None = 2.0
    pass_error_rate: float | None = None  # None: the critical error rate

    @property
    def pass_bound(self) -> float | None:
        return self.pass_error_rate if self.pass_error_rate is not None else self.critical_error_rate


@dataclass
class RunVerdict:
    decision: str  # critical | fail | pass | inconclusive
    reasons: list[str] = field(default_factory=list)
    p_value: float | None = None
    upper: float | None = None  # upper confidence bound of the new colour's error rate, percent


def looks(seconds: float, interval_seconds: float) -> int:
    """How many runs a hold (with its extension) or a watch window has: the per-run alpha is alpha / looks
    (Bonferroni), so re-testing the growing evidence every run keeps a clean step's false alarms within alpha."""
    return max(1, math.ceil(max(seconds, 0) / max(interval_seconds, 1)))


def _counts(requests: float, errors: float) -> tuple[int, int]:
    n = max(0, int(round(requests or 0)))
    e = max(0, min(n, int(round(errors or 0))))
    return n, e


def upper_bound(errors: int, n: int, confidence: float) -> float | None:
    """One-sided Clopper-Pearson upper bound of a proportion, in percent (None without requests)."""
    if n <= 0:
        return None
    if errors >= n:
        return 100.0
    return 100.0 * float(beta.ppf(confidence, errors + 1, n - errors))


def judge(ev: Evidence, rules: Rules, *, new: str = "new", old: str = "old") -> RunVerdict:
    n_new, e_new = _counts(ev.new_requests, ev.new_errors)
    n_old, e_old = _counts(ev.old_requests, ev.old_errors)
    rate_new = 100.0 * e_new / n_new if n_new else None
    rate_old = 100.0 * e_old / n_old if n_old else None
    reasons: list[str] = []
    # critical, at once
    crit = rules.critical_error_rate
    if crit is not None and n_new and rate_new is not None and rate_new > crit:
        p_crit = float(binomtest(e_new, n_new, crit / 100.0, alternative="greater").pvalue)
        on_evidence = rules.critical_error_min_requests is not None and n_new >= rules.critical_error_min_requests
        if p_crit < rules.alpha or on_evidence:
            why = f"p = {p_crit:.2g}" if p_crit < rules.alpha else f"{n_new} requests"
            return RunVerdict("critical", [f"{new} error rate {rate_new:.2f} % ({e_new} of {n_new}) is above the critical "
                                           f"{crit:g} % ({why})"], p_value=p_crit)
    if rules.critical_p95 is not None and ev.new_p95 is not None and n_new >= rules.min_requests and ev.new_p95 > rules.critical_p95:
        return RunVerdict("critical", [f"{new} P95 {ev.new_p95:.3f} s is above the critical {rules.critical_p95:g} s"])
    # against the old colour
    p_value = None
    if n_new and n_old:
        p_value = float(fisher_exact([[e_new, n_new - e_new], [e_old, n_old - e_old]], alternative="greater")[1])
        # One error is never "clearly worse" on its own: with cumulative evidence re-tested every run, a
        # single early error would otherwise fail two runs in a row (measured: 6.7 % false alarms).
        if (p_value < rules.alpha and e_new >= MIN_ERRORS_TO_FAIL and rate_new is not None and rate_old is not None
                and rate_new - rate_old > rules.error_margin_pct):
            reasons.append(f"{new} error rate {rate_new:.2f} % ({e_new}/{n_new}) vs {old} {rate_old:.2f} % ({e_old}/{n_old}): "
                           f"p = {p_value:.2g} < {rules.alpha:g}, more than {rules.error_margin_pct:g} points worse")
    if ev.new_p95 is not None and ev.old_p95 is not None and n_new >= rules.min_requests:
        if ev.new_p95 > ev.old_p95 * (1 + rules.latency_margin_pct / 100.0) + 0.05:
            reasons.append(f"{new} P95 {ev.new_p95:.3f} s vs {old} {ev.old_p95:.3f} s (margin {rules.latency_margin_pct:g} %)")
    upper = upper_bound(e_new, n_new, rules.pass_confidence)
    if reasons:
        return RunVerdict("fail", reasons, p_value=p_value, upper=upper)
    if n_new < rules.min_requests:
        return RunVerdict("inconclusive", [f"{new} served {n_new} requests (needs {rules.min_requests})"], p_value=p_value, upper=upper)
    bound = rules.pass_bound
    if bound is not None and upper is not None and upper > bound:
        return RunVerdict("inconclusive", [
            f"{new}: {e_new} errors in {n_new} requests; its error rate is below {upper:.1f} % at {rules.pass_confidence:.0%} "
            f"confidence, not yet below {bound:g} %"], p_value=p_value, upper=upper)
    return RunVerdict("pass", [], p_value=p_value, upper=upper)


def metric_name(spec: dict) -> str:
    return str(spec.get("name") or spec.get("metric") or "metric")


def extra_metric_reasons(specs: list[dict], values: dict, *, new: str = "new", old: str = "old") -> list[str]:
    """Why a template's extra metrics fail a run: each over its absolute `max`, or above the old colour's
    value by more than `margin_pct`. `values` maps a metric's name to {"new", "old"} as read (the live
    run reads them, the replay takes them from the run's record)."""
    reasons = []
    for m in specs or []:
        name = metric_name(m)
        got = values.get(name) or {}
        new_v, old_v = got.get("new"), got.get("old")
        if new_v is None:
            continue
        if m.get("comparison", "absolute") == "absolute" and m.get("max") is not None and new_v > float(m["max"]):
            reasons.append(f"{name} {new_v:g} is above {float(m['max']):g}")
        elif m.get("comparison") == "baseline" and old_v is not None:
            margin = float(m.get("margin_pct", 25))
            if new_v > old_v * (1 + margin / 100.0):
                reasons.append(f"{name} {new_v:g} on {new} vs {old_v:g} on {old} (margin {margin:g} %)")
    return reasons


def simulate_false_alarms(rules: Rules, *, new_rps: float, old_rps: float, error_rate_pct: float, hold_seconds: float,
                          interval_seconds: float, failure_limit: int, max_extension_seconds: float, trials: int,
                          seed: int = 7) -> tuple[float, float]:
    """Clean steps (both colours at the same error rate) run as the live analysis runs them.

    Returns (share that failed, share that ended undecided). Poisson traffic, binomial errors."""
    from dataclasses import replace

    import numpy as np

    rules = replace(rules, alpha=rules.alpha / looks(hold_seconds + max_extension_seconds, interval_seconds))
    rng = np.random.default_rng(seed)
    p = error_rate_pct / 100.0
    failed = undecided = 0
    runs = max(1, int((hold_seconds + max_extension_seconds) // max(interval_seconds, 1)))
    first_pass_run = max(1, int(hold_seconds // max(interval_seconds, 1)))
    for _ in range(trials):
        n_new = e_new = n_old = e_old = 0
        fails = 0
        outcome = "undecided"
        for run in range(1, runs + 1):
            a = int(rng.poisson(new_rps * interval_seconds))
            b = int(rng.poisson(old_rps * interval_seconds))
            n_new += a
            e_new += int(rng.binomial(a, p))
            n_old += b
            e_old += int(rng.binomial(b, p))
            v = judge(Evidence(n_new, e_new, n_old, e_old), rules)
            if v.decision == "critical":
                outcome = "fail"
                break
            if v.decision == "fail":
                fails += 1
                if fails >= failure_limit:
                    outcome = "fail"
                    break
            elif v.decision == "pass" and run >= first_pass_run:
                outcome = "pass"
                break
        failed += outcome == "fail"
        undecided += outcome == "undecided"
    return failed / trials, undecided / trials
