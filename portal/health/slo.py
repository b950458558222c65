"""SLO evaluation: current value, budget left over the window, burn rates over 1 h and 6 h.

Ratio SLOs (availability, error ratio) count requests: good/total per one-minute sample, budget =
allowed bad share of requests. Threshold SLOs (latency percentiles, job posting time) are
time-based: the share of one-minute samples out of target may use at most the same 0.1 % the
uptime objective allows (43 minutes in 30 days).

Paging follows the SRE workbook's multiwindow burn-rate alerts: 14.4x over 1 hour and 5 minutes (2 %
of a 30-day budget gone in an hour) or 6x over 6 hours and 30 minutes (5 % in 6 hours) raise a
critical alert.

The budget is the window's: while the SLO has been measured for less than its window (a new launch, a
fresh sandbox), the allowed bad share applies to the traffic the whole window would see at the rate
measured so far (counted over at least an hour), not to the few minutes measured: ten bad minutes on the
first day spend part of the month's budget, not all of it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from portal.cloud.metrics import metrics_source
from portal.cloud.models import Environment
from portal.health.models import Slo, SloSample, compare
from portal.incidents import ingest

log = logging.getLogger(__name__)

FAST_BURN = 14.4
SLOW_BURN = 6.0
TIME_SLO_ALLOWED_BAD = 0.001
SAMPLE_MINUTES = 1
MIN_COVERAGE = timedelta(hours=1)  # the shortest measured span a partial window's budget is projected from
THRESHOLD_MINUTES = 5  # a threshold SLO's value: its metric over the last five minutes
TARGET_WORDS = {"gt": "above", "gte": "at or above", "lt": "below", "lte": "at or below"}


def _environment(slo: Slo):
    if slo.environment_id:
        return slo.environment
    return Environment.objects.filter(name=settings.DEFAULT_ENVIRONMENT).first()


def _value(source, metric: str, minutes: int) -> tuple[float | None, str]:
    try:
        return source.value(metric, colour=None, minutes=minutes), ""
    except (KeyError, ValueError, NotImplementedError) as exc:
        return None, f"the metrics source does not report {metric} ({exc})"[:300]


def _burn(error_pct: float | None, allowed_pct: float) -> float | None:
    if error_pct is None or allowed_pct <= 0:
        return None
    return error_pct / allowed_pct


def window_scale(slo: Slo, now: datetime) -> float:
    """How many times the measured span fits in the SLO's window (1 once the window is full)."""
    window = timedelta(days=slo.window_days)
    first = SloSample.objects.filter(slo=slo).order_by("at").values_list("at", flat=True).first()
    if first is None:
        return 1.0
    covered = max(min(now - first, window), MIN_COVERAGE)
    return max(window / covered, 1.0)


def _remaining(bad_share: float, allowed_share: float, scale: float) -> float:
    return max(-999.0, 100.0 * (1 - bad_share / (allowed_share * scale)))


def slo_evaluate(*, slo: Slo, now: datetime | None = None, source=None) -> Slo:
    now = now or timezone.now()
    if source is None:
        env = _environment(slo)
        if env is None:
            Slo.objects.filter(pk=slo.pk).update(evaluated_at=now, note="no environment to measure")
            slo.refresh_from_db()
            return slo
        source = metrics_source(env)
    since = now - timedelta(days=slo.window_days)
    note = ""
    sample = SloSample(slo=slo, at=now)
    if slo.kind in (Slo.Kind.AVAILABILITY, Slo.Kind.ERROR_RATIO):
        allowed_pct = (100.0 - slo.target) if slo.kind == Slo.Kind.AVAILABILITY else slo.target
        err_1m, note = _value(source, slo.metric, SAMPLE_MINUTES)
        requests, _ = _value(source, "requests", SAMPLE_MINUTES)
        if err_1m is not None and requests:
            sample.total = float(requests)
            sample.good = float(requests) * (1 - err_1m / 100.0)
        sample.value = err_1m if slo.kind == Slo.Kind.ERROR_RATIO else (None if err_1m is None else 100.0 - err_1m)
        err_1h, _ = _value(source, slo.metric, 60)
        err_6h, _ = _value(source, slo.metric, 360)
        slo.burn_rate_1h = _burn(err_1h, allowed_pct)
        slo.burn_rate_6h = _burn(err_6h, allowed_pct)
        # The workbook's short windows (1/12 of the long ones) stop a page once the burning ended.
        short_5m, _ = _value(source, slo.metric, 5)
        short_30m, _ = _value(source, slo.metric, 30)
        slo._burn_short = (_burn(short_5m, allowed_pct), _burn(short_30m, allowed_pct))
        with transaction.atomic():
            if sample.total:
                sample.met = compare(sample.value, slo.comparison, slo.target) if sample.value is not None else None
                sample.save()
            agg = SloSample.objects.filter(slo=slo, at__gte=since).aggregate(good=Sum("good"), total=Sum("total"))
        total, good = agg["total"] or 0.0, agg["good"] or 0.0
        if total > 0:
            bad_pct = 100.0 * (total - good) / total
            slo.current_value = 100.0 - bad_pct if slo.kind == Slo.Kind.AVAILABILITY else bad_pct
            slo.budget_remaining_pct = _remaining(bad_pct, allowed_pct, window_scale(slo, now)) if allowed_pct > 0 else None
            slo.compliance_pct = slo.current_value if slo.kind == Slo.Kind.AVAILABILITY else 100.0 - bad_pct
        else:
            slo.current_value = sample.value
            slo.budget_remaining_pct = None
            slo.compliance_pct = None
            note = note or "no traffic measured yet"
    else:
        value, note = _value(source, slo.metric, THRESHOLD_MINUTES)
        sample.value = value
        sample.met = None if value is None else compare(value, slo.comparison, slo.target)
        if sample.met is False:
            # Out of target now: say it with the value, as a failing check does.
            unit = f" {slo.unit}" if slo.unit and slo.unit != "%" else slo.unit
            note = (f"{value:.3g}{unit} over the last {THRESHOLD_MINUTES} min misses the target "
                    f"({TARGET_WORDS.get(slo.comparison, slo.comparison)} {slo.target:g}{unit})")
        with transaction.atomic():
            if value is not None:
                sample.save()
            agg = SloSample.objects.filter(slo=slo, at__gte=since, met__isnull=False).aggregate(
                n=Count("id"), ok=Count("id", filter=Q(met=True))
            )
        slo.current_value = value
        slo.burn_rate_1h = slo.burn_rate_6h = None
        if agg["n"]:
            bad = 1 - agg["ok"] / agg["n"]
            slo.compliance_pct = 100.0 * agg["ok"] / agg["n"]
            slo.budget_remaining_pct = _remaining(bad, TIME_SLO_ALLOWED_BAD, window_scale(slo, now))
        else:
            slo.compliance_pct = slo.budget_remaining_pct = None
            note = note or "no data yet"
    slo.evaluated_at = now
    slo.note = note[:300]
    slo.save(update_fields=["current_value", "compliance_pct", "budget_remaining_pct", "burn_rate_1h", "burn_rate_6h",
                            "evaluated_at", "note"])
    _sync_burn_alert(slo)
    return slo


def _sync_burn_alert(slo: Slo) -> None:
    short_5m, short_30m = getattr(slo, "_burn_short", (None, None))
    fast = (slo.burn_rate_1h is not None and slo.burn_rate_1h >= FAST_BURN
            and (short_5m is None or short_5m >= FAST_BURN))
    slow = (slo.burn_rate_6h is not None and slo.burn_rate_6h >= SLOW_BURN
            and (short_30m is None or short_30m >= SLOW_BURN))
    want = fast or slow
    if want == slo.alert_raised:
        return
    try:
        why = []
        if fast:
            why.append(f"burning the error budget {slo.burn_rate_1h:.1f}x over 1 h (pages at {FAST_BURN}x)")
        if slow:
            why.append(f"{slo.burn_rate_6h:.1f}x over 6 h (pages at {SLOW_BURN}x)")
        ingest.alert_ingest_internal(
            source="health", fingerprint=f"slo:{slo.slug}", name=f"SLO burn rate: {slo.name}", severity="critical",
            firing=want, summary="; ".join(why) if want else "burn rate back under the paging thresholds",
            # The metric and environment it reads (scope platform: the whole load balancer, no colour), so a
            # portal action expected to move that metric (a drill) silences its burn too.
            labels={"slo": slo.slug, "metric": slo.metric, "scope": "platform"}, environment=_environment(slo),
            grouping_key=f"slo:{slo.slug}",
        )
    except Exception:
        log.exception("could not sync the burn-rate alert of SLO %s", slo.slug)
        return
    Slo.objects.filter(pk=slo.pk).update(alert_raised=want)
    slo.alert_raised = want


def slos_evaluate(*, now: datetime | None = None) -> dict:
    out = {}
    for slo in Slo.objects.select_related("environment"):
        try:
            slo = slo_evaluate(slo=slo, now=now)
            out[slo.slug] = slo.current_value
        except Exception as exc:  # one SLO's failure must not stop the others
            log.warning("SLO %s could not be evaluated: %s", slo.slug, exc)
            Slo.objects.filter(pk=slo.pk).update(evaluated_at=now or timezone.now(),
                                                 note=f"could not evaluate: {str(exc)[:250]}")
            out[slo.slug] = None
    return out
