"""Automated verifications: what the cloud says about the items it can answer.

Each verifier takes an Environment and returns a Result (passing or failing, a one-line summary,
and the evidence it looked at). All cloud access goes through portal.cloud.aws; a CloudError
becomes an "error" result (could not check), never a pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from portal.checklist import verify_edge
from portal.checklist.models import VerificationOutcome
from portal.checklist.results import Result, failing, passing
from portal.cloud import aws
from portal.health import thresholds
from portal.heartbeats.selectors import backup_heartbeat_state
from portal.phases.selectors import current_phase

log = logging.getLogger(__name__)

BACKUP_MIN_RETENTION_DAYS = 7
BACKUP_MAX_SNAPSHOT_AGE = timedelta(hours=26)
CERT_MIN_VALIDITY = timedelta(days=30)

# Names an alarm's metric may carry for each of the plan's threshold metrics (CloudWatch or rule names).
METRIC_ALIASES: dict[str, set[str]] = {
    "error_rate": {"error_rate", "errorrate", "httpcode_target_5xx_count", "httpcode_elb_5xx_count", "5xxerror", "http_5xx"},
    "p95_response_time": {"p95_response_time", "targetresponsetime", "latency", "response_time", "p95"},
    "cpu": {"cpu", "cpuutilization", "cpu_utilization"},
    "db_connections": {"db_connections", "databaseconnections", "database_connections"},
    "cache_hit_ratio": {"cache_hit_ratio", "cachehitrate", "cache_hit_rate"},
    "disk": {"disk", "disk_used_percent", "freestoragespace", "disk_pct"},
}


def _get(obj: Any, *names: str, default=None):
    """Read a field from a dataclass/namedtuple/object or a dict (boto3 shapes), first name that exists."""
    for name in names:
        if isinstance(obj, dict):
            if name in obj and obj[name] is not None:
                return obj[name]
        elif getattr(obj, name, None) is not None:
            return getattr(obj, name)
    return default


def _plain(obj: Any) -> Any:
    if is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if hasattr(obj, "_asdict"):
        return {k: _plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [_plain(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def _when(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        if value is not None and timezone.is_naive(value):
            value = timezone.make_aware(value, UTC)
        return value
    parsed = parse_datetime(str(value))
    if parsed is not None and timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    return parsed


# --- the verifiers ------------------------------------------------------------------------------

def verify_backups(env) -> Result:
    rds = aws.describe_rds(env)
    retention = int(_get(rds, "backup_retention_days", "BackupRetentionPeriod", default=0) or 0)
    latest = _when(_get(rds, "latest_snapshot_at", "LatestRestorableTime"))
    now = timezone.now()
    evidence = {
        "instance": env.rds_instance_id, "backup_retention_days": retention, "required_retention_days": BACKUP_MIN_RETENTION_DAYS,
        "latest_snapshot_at": latest.isoformat() if latest else None,
        "latest_snapshot_age_hours": round((now - latest).total_seconds() / 3600, 1) if latest else None,
        "max_snapshot_age_hours": BACKUP_MAX_SNAPSHOT_AGE.total_seconds() / 3600,
        "multi_az": _get(rds, "multi_az"),
        # The backup job's dead-man's switch (portal/heartbeats): down means the job stopped reporting.
        "backup_heartbeat": backup_heartbeat_state(now),
    }
    problems = []
    if retention < BACKUP_MIN_RETENTION_DAYS:
        problems.append(
            "automated backups are off" if retention == 0 else f"retention is {retention} day{'s' if retention != 1 else ''} (needs {BACKUP_MIN_RETENTION_DAYS})"
        )
    if latest is None:
        problems.append("no automated snapshot exists")
    elif now - latest > BACKUP_MAX_SNAPSHOT_AGE:
        problems.append(f"the latest automated snapshot is {evidence['latest_snapshot_age_hours']} h old (limit 26 h)")
    heartbeat = evidence["backup_heartbeat"]
    if heartbeat is not None and heartbeat["status"] == "down":
        problems.append(f"the backup job's heartbeat is down (last ping {heartbeat['last_ping_at'] or 'never'})")
    if problems:
        return failing("Backups not automated: " + "; ".join(problems), **evidence)
    beat = "" if heartbeat is None else f"; backup job heartbeat {heartbeat['status']}"
    return passing(f"Retention {retention} days; latest automated snapshot {evidence['latest_snapshot_age_hours']} h old{beat}", **evidence)


def verify_load_balancer(env) -> Result:
    arns = list(aws.listener_target_groups(env))
    wanted = {"blue": env.blue_target_group_arn, "green": env.green_target_group_arn}
    missing = [colour for colour, arn in wanted.items() if not arn or arn not in arns]
    evidence = {"listener": env.listener_arn, "forwards_to": arns, "expected": wanted}
    if missing:
        return failing(f"The listener does not forward to the {' and '.join(missing)} target group{'s' if len(missing) > 1 else ''}", **evidence)
    return passing("The listener forwards to both the blue and the green target groups", **evidence)


def verify_auto_scaling(env) -> Result:
    phase = current_phase()
    groups = aws.describe_groups(env)
    evidence: dict[str, Any] = {"phase": {"number": phase.number, "name": phase.name,
                                          "instances_min": phase.instances_min, "instances_max": phase.instances_max},
                                "groups": {}}
    problems = []
    for colour in ("blue", "green"):
        group = groups.get(colour) if isinstance(groups, dict) else None
        if group is None:
            problems.append(f"no {colour} auto scaling group")
            continue
        policies = list(aws.describe_scaling_policies(env, colour) or [])
        names = [str(_get(p, "name", "PolicyName", default=p)) for p in policies]
        lo = int(_get(group, "min_size", "MinSize", default=0))
        hi = int(_get(group, "max_size", "MaxSize", default=0))
        evidence["groups"][colour] = {"name": _get(group, "name", "AutoScalingGroupName"), "min_size": lo, "max_size": hi,
                                      "desired": _get(group, "desired", "DesiredCapacity"), "policies": names}
        if not policies:
            problems.append(f"{colour} has no scaling policy")
        if hi < phase.instances_max:
            problems.append(f"{colour} max size {hi} is below the phase's {phase.instances_max}")
        if lo > phase.instances_min:
            problems.append(f"{colour} min size {lo} is above the phase's {phase.instances_min}")
    if problems:
        return failing("Auto-scaling does not match phase " f"{phase.number} ({phase.name}): " + "; ".join(problems), **evidence)
    return passing(
        f"Both groups have scaling policies and bounds that hold phase {phase.number}'s {phase.instances_min}-{phase.instances_max} instances",
        **evidence,
    )


def critical_thresholds() -> list[dict]:
    """The enabled critical thresholds, from portal.health.thresholds (what every reader uses)."""
    return [{"slug": t.slug, "metric": t.metric, "summary": t.summary or t.slug, "value": t.value, "unit": t.unit,
             "comparison": t.comparison, "window_minutes": t.window_minutes}
            for t in thresholds.all_thresholds() if t.severity == "critical"]


# Metrics whose CloudWatch alarm fires at the threshold's own number (database connections are a count there).
SAME_UNIT_ALARMS = frozenset({"error_rate", "p95_response_time", "cpu", "cache_hit_ratio", "disk"})
CLOUDWATCH_OPERATORS = {"gt": "GreaterThanThreshold", "gte": "GreaterThanOrEqualToThreshold", "lt": "LessThanThreshold",
                        "lte": "LessThanOrEqualToThreshold"}
SIGNS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def _span(seconds: int | None) -> str:
    if not seconds:
        return "no period"
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def _compare_alarm(alarm, threshold: dict) -> dict:
    """One alarm against one threshold: the numbers of both, and a line in words for each difference
    (value, operator, duration: Period x EvaluationPeriods against the threshold's window)."""
    name, slug = _get(alarm, "name", "AlarmName"), threshold["slug"]
    value, unit = float(threshold["value"]), threshold.get("unit", "")
    comparison = threshold.get("comparison", "gt")
    want_op = CLOUDWATCH_OPERATORS.get(comparison, comparison)
    want_for = max(int(threshold.get("window_minutes") or 5), 1) * 60
    at = _get(alarm, "threshold", "Threshold", default=None)
    got_op = str(_get(alarm, "comparison", "ComparisonOperator", default="") or "")
    period = _get(alarm, "period", "Period", default=None)
    periods = _get(alarm, "evaluation_periods", "EvaluationPeriods", default=None)
    got_for = int(period) * int(periods) if period and periods else None
    row = {"threshold": slug, "alarm": name, "value": value, "comparison": want_op, "window_seconds": want_for,
           "alarm_value": at, "alarm_comparison": got_op or None, "alarm_period": period, "alarm_evaluation_periods": periods,
           "alarm_datapoints_to_alarm": _get(alarm, "datapoints_to_alarm", "DatapointsToAlarm", default=None),
           "alarm_duration_seconds": got_for, "differences": [], "lines": []}
    if threshold.get("metric") in SAME_UNIT_ALARMS and (at is None or abs(float(at) - value) > 1e-9):
        row["differences"].append("value")
        row["lines"].append(f"{name} ({slug}) fires at {'no threshold' if at is None else f'{float(at):g}'}, "
                            f"the threshold is {value:g}{unit}")
    if got_op != want_op:
        row["differences"].append("operator")
        row["lines"].append(f"{name} ({slug}) compares {got_op or 'with no operator'}, the threshold is "
                            f"{SIGNS.get(comparison, comparison)} {value:g}{unit} ({want_op})")
    if got_for != want_for:
        row["differences"].append("duration")
        how = f" ({periods} x {period}s)" if got_for else ""
        row["lines"].append(f"{name} ({slug}) waits {_span(got_for)}{how}, the threshold's window is {_span(want_for)}")
    return row


def _closest(alarms: list, threshold: dict) -> dict:
    """The alarm that agrees with the threshold, else the one to report: named after it first, then fewest differences."""
    slug = _norm(threshold["slug"].replace("-", "_"))
    rows = [(_compare_alarm(a, threshold), a) for a in alarms]
    return min(rows, key=lambda ra: (bool(ra[0]["differences"]),
                                     slug not in _norm(str(_get(ra[1], "name", "AlarmName", default="")).replace("-", "_")),
                                     len(ra[0]["differences"])))[0]


def _norm(text: str) -> str:
    return "".join(ch for ch in str(text).lower() if ch.isalnum() or ch == "_").replace("-", "_")


def _alarm_matches(alarm, threshold: dict) -> bool:
    metric = threshold.get("metric", "")
    aliases = {_norm(a) for a in METRIC_ALIASES.get(metric, {metric})} | {_norm(metric)}
    alarm_metric = _norm(_get(alarm, "metric", "MetricName", default=""))
    if alarm_metric and alarm_metric in aliases:
        return True
    name = _norm(str(_get(alarm, "name", "AlarmName", default="")).replace("-", "_"))
    slug = _norm(str(threshold.get("slug", "")).replace("-", "_"))
    return bool(slug and slug in name) or any(a and a in name for a in aliases)


def verify_alert_rules(env) -> Result:
    alarms = list(aws.list_alarms(env))
    critical = critical_thresholds()
    covered, missing, compared, differences = {}, [], [], []
    for t in critical:
        hit = [a for a in alarms if _alarm_matches(a, t)]
        if hit:
            covered[t.get("slug", t.get("metric"))] = [str(_get(a, "name", "AlarmName")) for a in hit]
            row = _closest(hit, t)
            compared.append(row)
            differences.extend(row["lines"])
        else:
            missing.append(t.get("summary") or t.get("slug"))
    evidence = {
        "alarms": [{"name": _get(a, "name", "AlarmName"), "metric": _get(a, "metric", "MetricName"),
                    "threshold": _get(a, "threshold", "Threshold"), "comparison": _get(a, "comparison", "ComparisonOperator"),
                    "period": _get(a, "period", "Period"), "evaluation_periods": _get(a, "evaluation_periods", "EvaluationPeriods"),
                    "datapoints_to_alarm": _get(a, "datapoints_to_alarm", "DatapointsToAlarm"),
                    "state": _get(a, "state", "StateValue")} for a in alarms],
        "covered": covered, "missing": missing, "compared": compared, "differences": differences,
        "thresholds": [t.get("summary") for t in critical], "values": {t["slug"]: t["value"] for t in critical},
    }
    if not critical:
        return failing("The plan has no critical thresholds to check against", **evidence)
    problems = (["No alarm for: " + ", ".join(str(m) for m in missing)] if missing else []) \
        + (["Alarm out of date: " + "; ".join(differences)] if differences else [])
    if problems:
        return failing(". ".join(problems), **evidence)
    return passing(f"An alarm for each of the {len(critical)} critical thresholds, at its value, operator and window", **evidence)


def verify_ssl(env) -> Result:
    certs = list(aws.acm_certificates(env))
    now = timezone.now()
    rows, good = [], []
    for c in certs:
        status = str(_get(c, "status", "Status", default="")).upper()
        not_after = _when(_get(c, "not_after", "NotAfter"))
        row = {"domain": _get(c, "domain", "domain_name", "DomainName"), "arn": _get(c, "arn", "CertificateArn"),
               "status": status, "not_after": not_after.isoformat() if not_after else None,
               "days_left": (not_after - now).days if not_after else None}
        rows.append(row)
        if status == "ISSUED" and not_after is not None and not_after - now > CERT_MIN_VALIDITY:
            good.append(row)
    evidence = {"certificates": rows, "min_days_left": CERT_MIN_VALIDITY.days}
    if good:
        return passing(f"{len(good)} issued certificate{'s' if len(good) > 1 else ''}, the first valid for {good[0]['days_left']} more days", **evidence)
    if not rows:
        return failing("No ACM certificate exists", **evidence)
    issued = [r for r in rows if r["status"] == "ISSUED"]
    if issued:
        return failing(f"The issued certificate expires within {CERT_MIN_VALIDITY.days} days ({issued[0]['days_left']} days left)", **evidence)
    return failing("No certificate is issued (" + ", ".join(sorted({r['status'] or '?' for r in rows})) + ")", **evidence)


def _dns_name_norm(name) -> str:
    name = str(name or "").lower().rstrip(".")
    return name[len("dualstack."):] if name.startswith("dualstack.") else name


def verify_dns(env) -> Result:
    records = list(aws.route53_records(env))
    alb_dns = _dns_name_norm(_alb_dns_name(env))
    rows, hits = [], []
    for r in records:
        targets = _get(r, "targets", "values", default=None)
        alias = _get(r, "alias_target", "alias", "AliasTarget", default=None)
        if isinstance(alias, dict):
            alias = alias.get("DNSName")
        values = [alias] if alias else []
        if isinstance(targets, str):
            values.append(targets)
        elif targets:
            values.extend(str(_get(t, "Value", default=t)) for t in targets)
        row = {"name": _get(r, "name", "Name"), "type": _get(r, "type", "Type"), "points_at": values}
        rows.append(row)
        if alb_dns and any(_dns_name_norm(v) == alb_dns for v in values):
            hits.append(row)
    evidence = {"load_balancer_dns": alb_dns or None, "records": rows}
    if not alb_dns:
        return failing("The load balancer's DNS name is unknown (the environment names no load balancer)", **evidence)
    if hits:
        return passing(f"{hits[0]['name']} ({hits[0]['type']}) points at the load balancer", **evidence)
    return failing("No Route 53 record points at the load balancer", **evidence)


def _alb_dns_name(env) -> str:
    fn = getattr(aws, "load_balancer_dns_name", None)
    if fn is not None:
        return fn(env) or ""
    if not env.load_balancer_arn:
        return ""
    client = aws.client(env, "elbv2")
    lbs = client.describe_load_balancers(LoadBalancerArns=[env.load_balancer_arn]).get("LoadBalancers", [])
    return lbs[0].get("DNSName", "") if lbs else ""


def verify_cdn(env) -> Result:
    dists = list(aws.cloudfront_distributions(env))
    rows = [{"id": _get(d, "id", "Id"), "domain": _get(d, "domain", "domain_name", "DomainName"),
             "enabled": bool(_get(d, "enabled", "Enabled", default=True)), "status": _get(d, "status", "Status"),
             "origins": _plain(_get(d, "origins", "Origins", default=[]))} for d in dists]
    enabled = [r for r in rows if r["enabled"]]
    evidence = {"distributions": rows}
    if enabled:
        return passing(f"CloudFront distribution {enabled[0]['domain'] or enabled[0]['id']} is in front", **evidence)
    if rows:
        return failing("The CloudFront distribution is disabled", **evidence)
    return failing("No CloudFront distribution exists", **evidence)


VERIFIERS: dict[str, Callable[[Any], Result]] = {
    "backups": verify_backups,
    "load-balancer": verify_load_balancer,
    "auto-scaling": verify_auto_scaling,
    "alert-rules": verify_edge.with_prometheus_rules(verify_alert_rules),
    "ssl": verify_edge.ssl_with_tls(verify_ssl),
    "dns": verify_edge.by_provider("dns_provider", aws_verifier=verify_dns, cloudflare_verifier=verify_edge.verify_cloudflare_dns),
    "cdn": verify_edge.by_provider("cdn_provider", aws_verifier=verify_cdn, cloudflare_verifier=verify_edge.verify_cloudflare_cdn),
    "security-audit": verify_edge.verify_security_audit,
    "dashboards": verify_edge.verify_dashboards,
}


def run_check(slug: str, env) -> Result:
    """Run one verifier; cloud trouble becomes an 'error' result naming what failed."""
    verifier = VERIFIERS.get(slug)
    if verifier is None:
        return Result(VerificationOutcome.ERROR, f"No automated verification exists for {slug!r}")
    try:
        result = verifier(env)
    except Exception as exc:  # CloudError and anything boto3 raises: report it, never pass
        log.warning("checklist verification %s on %s failed: %s", slug, getattr(env, "name", env), exc)
        return Result(VerificationOutcome.ERROR, f"Could not check: {exc}"[:500],
                      {"error": type(exc).__name__, "message": str(exc)[:1000]})
    result.evidence = _plain(result.evidence)
    return result
