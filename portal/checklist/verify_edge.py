"""Verifications of the platform's edge and hardening: CloudFlare DNS, CDN and R2, TLS policy, the
security audit's automated part and Grafana dashboards.

CloudFlare is read through portal.cloud.cloudflare and AWS through portal.cloud.aws; an environment's
dns_provider / cdn_provider / storage_provider say which one serves what. Each returns a Result
(portal.checklist.results); verify.py registers them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import requests
from django.utils import timezone

from portal import outbound
from portal.checklist.models import VerificationOutcome
from portal.checklist.results import Result, could_not_check, failing, passing
from portal.cloud import aws
from portal.cloud import cloudflare as cf
from portal.cloud.errors import CloudError
from portal.cloud.metrics import DEFAULT_PROMQL, PrometheusSource
from portal.health import thresholds
from portal.plan.loader import load_plan

CLOUDFLARE = "cloudflare"
MEDIA_HOSTS = ("photos", "videos", "documents")


def by_provider(field_name: str, *, aws_verifier: Callable[[Any], Result], cloudflare_verifier: Callable[[Any], Result]):
    """A verifier that asks the provider the environment names for this part (DNS, CDN)."""

    def verifier(env) -> Result:
        if getattr(env, field_name, "aws") == CLOUDFLARE:
            return cloudflare_verifier(env)
        return aws_verifier(env)

    verifier.__name__ = f"{cloudflare_verifier.__name__}_or_aws"
    return verifier


def _host(name: str) -> str:
    name = str(name or "").lower().rstrip(".")
    return name.removeprefix("dualstack.")


# --- CloudFlare DNS and CDN ---------------------------------------------------------------------

def verify_cloudflare_dns(env) -> Result:
    """The zone is active and the domain (and app host) resolve to the load balancer, proxied."""
    alb = _host(aws.load_balancer_dns_name(env))
    zone = cf.zone(env)
    records = cf.dns_records(env, zone.id)
    rows = [asdict(r) for r in records]
    evidence = {"provider": CLOUDFLARE, "zone": asdict(zone), "load_balancer_dns": alb or None, "records": rows}
    if not alb:
        return failing("The load balancer's DNS name is unknown (the environment names no load balancer)", **evidence)
    if zone.status != "active":
        return failing(f"The CloudFlare zone {zone.name} is {zone.status}, not active", **evidence)
    wanted = [zone.name, f"app.{zone.name}"]
    problems, good = [], []
    for name in wanted:
        mine = [r for r in records if r.name.lower() == name and r.type in ("A", "AAAA", "CNAME")]
        if not mine:
            problems.append(f"{name} has no record")
        elif not any(_host(r.content) == alb for r in mine):
            problems.append(f"{name} points at {', '.join(r.content for r in mine)}, not the load balancer {alb}")
        elif not any(_host(r.content) == alb and r.proxied for r in mine):
            problems.append(f"{name} points at the load balancer but is not proxied (DNS only: no DDoS protection)")
        else:
            good.append(name)
    evidence["checked"] = wanted
    if problems:
        return failing("CloudFlare DNS: " + "; ".join(problems), **evidence)
    return passing(f"{' and '.join(good)} resolve to the load balancer through CloudFlare (proxied)", **evidence)


def verify_cloudflare_cdn(env) -> Result:
    """The photo, video and document hosts are proxied and a cache rule caches them at the edge."""
    zone = cf.zone(env)
    records = cf.dns_records(env, zone.id)
    rules = cf.cache_rules(env, zone.id)
    evidence: dict[str, Any] = {"provider": CLOUDFLARE, "zone": zone.name, "hosts": {},
                                "cache_rules": [asdict(r) for r in rules]}
    problems = []
    for logical in MEDIA_HOSTS:
        host = f"{logical}.{zone.name}"
        mine = [r for r in records if r.name.lower() == host]
        cached = [r for r in rules if r.enabled and r.cache and f'"{host}"' in r.expression]
        evidence["hosts"][logical] = {"host": host, "records": [asdict(r) for r in mine],
                                      "proxied": any(r.proxied for r in mine), "cache_rule": cached[0].id if cached else None}
        if not mine:
            problems.append(f"{host} has no record")
        elif not any(r.proxied for r in mine):
            problems.append(f"{host} is not proxied (CloudFlare does not cache it)")
        elif not cached:
            problems.append(f"no cache rule caches {host}")
    if problems:
        return failing("CDN: " + "; ".join(problems), **evidence)
    return passing(f"CloudFlare proxies and caches the {', '.join(MEDIA_HOSTS)} hosts", **evidence)


# --- R2 -----------------------------------------------------------------------------------------

def r2_storage(env) -> dict[str, Any]:
    """The R2 buckets the environment names (its `buckets` map) and the account's R2 bytes."""
    have = {b.name: b for b in cf.r2_buckets(env)}
    wanted = dict(env.buckets or {})
    return {"buckets": {k: {"name": v, "exists": v in have, "location": have[v].location if v in have else None}
                        for k, v in wanted.items()},
            "bytes": cf.r2_storage_bytes(env)}


# --- rate limits --------------------------------------------------------------------------------

USER_KEYS = ("http.request.headers", "http.request.cookies", "ip.src", "cf.unique_visitor_id")


def rate_limit_review(env) -> tuple[list[str], dict[str, Any]]:
    """The plan's per-user and per-endpoint limits among the zone's rate-limiting rules: (problems, evidence)."""
    rules = [r for r in cf.rate_limit_rules(env) if r.enabled and r.requests_per_period and r.period]
    per_user = [r for r in rules if any(any(k in c for k in USER_KEYS) for c in r.characteristics)]
    per_endpoint = [r for r in rules if "http.request.uri.path" in r.expression]
    problems = []
    if not per_user:
        problems.append("no per-user rate limit (a rule counting by token, cookie or client address)")
    if not per_endpoint:
        problems.append("no per-endpoint rate limit (a rule on http.request.uri.path)")
    return problems, {"rules": [asdict(r) for r in rules], "per_user": [r.description or r.id for r in per_user],
                      "per_endpoint": [r.description or r.id for r in per_endpoint]}


def verify_rate_limits(env) -> Result:
    problems, evidence = rate_limit_review(env)
    if problems:
        return failing("Rate limiting: " + "; ".join(problems), **evidence)
    return passing(f"{len(evidence['per_user'])} per-user and {len(evidence['per_endpoint'])} per-endpoint rate limits", **evidence)


def _safe(fn: Callable[[], Result]) -> Result:
    """One line of a composed verification: cloud trouble is 'could not check' for that line only."""
    try:
        return fn()
    except CloudError as exc:
        return could_not_check(f"Could not check: {exc.words}"[:500], error=exc.code)


# --- composing lines ----------------------------------------------------------------------------

def _combine(lines: list[tuple[str, Result]], *, ok: str, what: str, **extra) -> Result:
    """One Result from separate lines, each with its own outcome and evidence: failing when a line fails,
    'could not check' when a line could not be read and none failed."""
    rows = [{"check": name, "outcome": r.outcome, "summary": r.summary, "evidence": r.evidence} for name, r in lines]
    bad = [f"{name}: {r.summary}" for name, r in lines if r.outcome == VerificationOutcome.FAILING]
    unread = [f"{name}: {r.summary}" for name, r in lines if r.outcome == VerificationOutcome.ERROR]
    if bad:
        return failing(f"{what}: " + "; ".join(bad), lines=rows, **extra)
    if unread:
        return could_not_check(f"{what}: " + "; ".join(unread), lines=rows, **extra)
    return passing(ok, lines=rows, **extra)


def _plan_security() -> dict:
    return (load_plan().get("security") or {})


# --- TLS ------------------------------------------------------------------------------------------

def tls_policy_prefix() -> str:
    return str(_plan_security().get("tls_policy_prefix") or "ELBSecurityPolicy-TLS13-")


def verify_listener_tls(env, issued_arns: list[str] | None = None) -> Result:
    """The HTTPS listener uses a TLS 1.3 policy and has an issued certificate attached."""
    tls = aws.listener_tls(env)
    prefix = tls_policy_prefix()
    evidence = {"listener": asdict(tls), "required_policy_prefix": prefix, "issued_certificates": issued_arns}
    if tls.protocol != "HTTPS":
        return failing(f"The listener speaks {tls.protocol or '?'} on port {tls.port}, not HTTPS", **evidence)
    if not tls.ssl_policy.startswith(prefix):
        return failing(f"The HTTPS listener's security policy is {tls.ssl_policy or 'none'}, not TLS 1.3 ({prefix}*)", **evidence)
    if not tls.certificate_arns:
        return failing("No certificate is attached to the HTTPS listener", **evidence)
    if issued_arns is not None and not set(issued_arns) & set(tls.certificate_arns):
        return failing("The certificate attached to the listener is not an issued, valid one", **evidence)
    return passing(f"The HTTPS listener uses {tls.ssl_policy} with the certificate attached", **evidence)


def ssl_with_tls(certificate_verifier: Callable[[Any], Result]) -> Callable[[Any], Result]:
    """'SSL certificates installed': a valid certificate, a TLS 1.3 policy, the certificate on the listener."""

    def verify_ssl_and_tls(env) -> Result:
        cert = _safe(lambda: certificate_verifier(env))
        good = [c["arn"] for c in cert.evidence.get("certificates", [])
                if c.get("status") == "ISSUED" and (c.get("days_left") or 0) > 30] if cert.outcome == "passing" else None
        tls = _safe(lambda: verify_listener_tls(env, good))
        return _combine([("certificate", cert), ("listener TLS", tls)], what="SSL",
                        ok=f"{cert.summary}; {tls.summary}")

    return verify_ssl_and_tls


# --- the security audit's automated part ----------------------------------------------------------

def _rds_encrypted(env) -> Result:
    db = aws.describe_rds(env)
    evidence = {"instance": db.identifier, "storage_encrypted": db.storage_encrypted, "kms_key_id": db.kms_key_id}
    if not db.storage_encrypted:
        return failing(f"RDS {db.identifier} storage is not encrypted", **evidence)
    return passing(f"RDS {db.identifier} storage is encrypted (AES-256, KMS)", **evidence)


def _cache_encrypted(env) -> Result:
    cache = aws.describe_cache(env)
    evidence = {"replication_group": cache.id, "at_rest": cache.at_rest_encryption, "in_transit": cache.transit_encryption}
    if not cache.at_rest_encryption:
        return failing(f"ElastiCache {cache.id} is not encrypted at rest", **evidence)
    if not cache.transit_encryption:
        return failing(f"ElastiCache {cache.id} is not encrypted in transit", **evidence)
    return passing(f"ElastiCache {cache.id} is encrypted at rest and in transit", **evidence)


def _s3_encrypted(env) -> Result:
    enc = aws.bucket_encryption(env)
    evidence = {"buckets": {k: {"name": (env.buckets or {}).get(k), "encryption": v or None} for k, v in enc.items()}}
    if not enc:
        return failing("The environment names no S3 buckets", **evidence)
    bare = [f"{(env.buckets or {}).get(k)} ({k})" for k, v in enc.items() if not v]
    if bare:
        return failing("No default encryption on " + ", ".join(bare), **evidence)
    return passing(f"{len(enc)} S3 buckets encrypt by default ({', '.join(sorted(set(enc.values())))})", **evidence)


def _r2_encrypted(env) -> Result:
    storage = r2_storage(env)
    missing = [f"{v['name']} ({k})" for k, v in storage["buckets"].items() if not v["exists"]]
    evidence = {**storage, "note": "R2 encrypts every object at rest with AES-256 (provider-managed, always on)"}
    if missing:
        return failing("No R2 bucket " + ", ".join(missing), **evidence)
    return passing(f"{len(storage['buckets'])} R2 buckets, encrypted at rest by CloudFlare (AES-256)", **evidence)


def _secrets(env) -> Result:
    security = _plan_security()
    names = [str(n) for n in security.get("secret_names") or []]
    days = int(security.get("rotation_days", 90))
    states = aws.secrets_state(env, names)
    now = timezone.now()
    rows, problems = [], []
    for s in states:
        last = s.last_rotated_at
        age = (now - last).days if last else None
        rows.append({**asdict(s), "days_since_rotation": age})
        if not s.exists:
            problems.append(f"{s.name} is not in Secrets Manager")
        elif not s.rotation_enabled:
            problems.append(f"{s.name} has no rotation")
        elif last is None:
            problems.append(f"{s.name} was never rotated")
        elif age is not None and age > days:
            problems.append(f"{s.name} was last rotated {age} days ago (limit {days})")
    evidence = {"secrets": rows, "rotation_days": days}
    if not names:
        return failing("The plan lists no secrets to look for", **evidence)
    if problems:
        return failing("; ".join(problems), **evidence)
    return passing(f"{len(names)} secrets in Secrets Manager, each rotated within {days} days", **evidence)


def verify_security_audit(env) -> Result:
    """The automated part of 'Security audit completed'; people still sign the review off."""
    lines = [("RDS encryption", _safe(lambda: _rds_encrypted(env))),
             ("ElastiCache encryption", _safe(lambda: _cache_encrypted(env))),
             ("S3 encryption", _safe(lambda: _s3_encrypted(env)))]
    if env.storage_provider == CLOUDFLARE:
        lines.append(("R2 encryption", _safe(lambda: _r2_encrypted(env))))
    lines.append(("Secrets Manager", _safe(lambda: _secrets(env))))
    if CLOUDFLARE in (env.dns_provider, env.cdn_provider):
        lines.append(("Rate limiting", _safe(lambda: verify_rate_limits(env))))
    else:
        lines.append(("Rate limiting", failing("The plan's rate limits are CloudFlare rules and this environment's edge "
                                               "is not on CloudFlare (dns_provider and cdn_provider are aws)")))
    return _combine(lines, what="Security audit", ok="Encrypted at rest, secrets rotated, rate limits in place: "
                    + ", ".join(name for name, _ in lines))


# --- alert rules in Prometheus --------------------------------------------------------------------

_LIMIT = re.compile(r"(>=|<=|>|<)\s*(-?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*$")


def _rule_limit(expr: str) -> tuple[str, float] | None:
    """The comparison a rule ends with (`(...) > 5`): operator and number, or None."""
    m = _LIMIT.search(str(expr or "").strip())
    return (m[1], float(m[2])) if m else None


OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def compare_prometheus_rules(env, loaded: list[dict]) -> tuple[list[str], list[dict]]:
    """Each threshold the export writes against the rule Prometheus loaded for it (its `rule` label):
    missing, another value or operator, another duration. Returns (differences, rows)."""
    queries = set(DEFAULT_PROMQL) | {k for k, v in (env.prometheus_queries or {}).items() if v}
    by_slug: dict[str, dict] = {}
    for rule in loaded:
        slug = (rule.get("labels") or {}).get("rule")
        if slug:
            by_slug.setdefault(slug, rule)
    differences, rows = [], []
    for t in thresholds.all_thresholds():
        if t.metric not in queries or t.comparison not in OPERATORS:
            continue  # the export cannot express it either
        want_op, want_for = OPERATORS[t.comparison], max(int(t.window_minutes), 1) * 60
        rule = by_slug.get(t.slug)
        row = {"threshold": t.slug, "summary": t.summary, "value": t.value, "operator": want_op, "for_seconds": want_for,
               "rule": None, "rule_value": None, "rule_operator": None, "rule_for_seconds": None, "differences": []}
        if rule is None:
            row["differences"].append("missing")
            differences.append(f"{t.slug}: no rule loaded in Prometheus")
            rows.append(row)
            continue
        limit = _rule_limit(rule.get("query", ""))
        got_for = int(float(rule.get("duration") or 0))
        row.update(rule=rule.get("name"), rule_operator=limit[0] if limit else None, rule_value=limit[1] if limit else None,
                   rule_for_seconds=got_for, health=rule.get("health"))
        if limit is None or abs(limit[1] - t.value) > 1e-9 or limit[0] != want_op:
            row["differences"].append("value")
            got = f"{limit[0]} {limit[1]:g}" if limit else "no comparison"
            differences.append(f"{rule.get('name')} ({t.slug}) fires at {got}, the threshold is {want_op} {t.value:g}{t.unit}")
        if got_for != want_for:
            row["differences"].append("duration")
            differences.append(f"{rule.get('name')} ({t.slug}) waits {got_for // 60 if got_for % 60 == 0 else got_for}"
                               f"{'m' if got_for % 60 == 0 else 's'}, the threshold's window is {want_for // 60}m")
        rows.append(row)
    return differences, rows


def verify_prometheus_rules(env) -> Result:
    loaded = PrometheusSource(env).rules()
    differences, rows = compare_prometheus_rules(env, loaded)
    evidence = {"prometheus": env.prometheus_url, "loaded": len(loaded), "compared": rows, "differences": differences}
    if not rows:
        return failing("No threshold can be expressed in PromQL to compare", **evidence)
    if differences:
        return failing("; ".join(differences), **evidence)
    return passing(f"Prometheus has the {len(rows)} threshold rules at the portal's values and windows", **evidence)


def with_prometheus_rules(alarm_verifier: Callable[[Any], Result]) -> Callable[[Any], Result]:
    """'Alert rules configured': the CloudWatch alarms, and the rules loaded in the environment's
    Prometheus when it names one, each compared with the portal's thresholds."""

    def verify_alert_rules_compared(env) -> Result:
        alarms = _safe(lambda: alarm_verifier(env))
        if not env.prometheus_url:
            return alarms
        rules = _safe(lambda: verify_prometheus_rules(env))
        return _combine([("CloudWatch alarms", alarms), ("Prometheus rules", rules)], what="Alert rules",
                        ok=f"{alarms.summary}; {rules.summary}")

    return verify_alert_rules_compared


# --- Grafana dashboards ---------------------------------------------------------------------------

def grafana_dashboards(env) -> list[dict]:
    """Grafana's dashboards (`GET /api/search?type=dash-db`, the environment's service account token)."""
    base = env.grafana_url.rstrip("/")
    op = "Grafana search"
    headers = {"Accept": "application/json", "User-Agent": "fairtradeworker-ops-portal/0.1"}
    if env.grafana_token:
        headers["Authorization"] = f"Bearer {env.grafana_token}"
    try:
        resp = outbound.request("GET", f"{base}/api/search", allow_private=outbound.allows_private_targets(env),
                                params={"type": "dash-db", "limit": 5000}, headers=headers, timeout=(3.05, 10),
                                max_redirects=0)
    except outbound.OutboundRefused as exc:
        raise CloudError("GrafanaRefused", op, env.name, f"refused to connect to {exc.host}: {exc.reason}") from exc
    except requests.RequestException as exc:
        raise CloudError("GrafanaUnreachable", op, env.name, outbound.error_words(exc, base)) from exc
    if resp.status_code in (401, 403):
        raise CloudError("AccessDenied", op, env.name, f"Grafana answered {resp.status_code}: check the token")
    if resp.status_code >= 400:
        raise CloudError(f"HTTP{resp.status_code}", op, env.name, "Grafana refused the search")
    try:
        body = resp.json()
    except ValueError as exc:
        raise CloudError("UnexpectedResult", op, env.name, "the answer is not Grafana's JSON") from exc
    if not isinstance(body, list):
        raise CloudError("UnexpectedResult", op, env.name, "Grafana's search did not answer a list")
    return [d for d in body if isinstance(d, dict) and d.get("type", "dash-db") == "dash-db"]


def verify_dashboards(env) -> Result:
    """A dashboard for each of the plan's performance targets (by tag = the target's slug, or its name in
    the title). Without a Grafana URL the item stays with people: 'could not check' says so."""
    if not env.grafana_url:
        return could_not_check("No Grafana URL is configured for this environment: dashboards are signed off by people only",
                               grafana=None)
    dashboards = grafana_dashboards(env)
    targets = load_plan().get("performance_targets") or []
    rows, missing = [], []
    for t in targets:
        name, slug = str(t.get("name", "")), str(t.get("slug", ""))
        hits = [d for d in dashboards if slug in (d.get("tags") or []) or (name and name.lower() in str(d.get("title", "")).lower())]
        label = f"{name} {t.get('statistic', '')}".strip()
        rows.append({"target": slug, "name": label, "dashboards": [d.get("title") for d in hits]})
        if not hits:
            missing.append(f"{label} ({slug})")
    evidence = {"grafana": env.grafana_url, "dashboards": [{"title": d.get("title"), "uid": d.get("uid"), "url": d.get("url"),
                                                           "tags": d.get("tags") or []} for d in dashboards],
                "targets": rows}
    if not dashboards:
        return failing("Grafana has no dashboards", **evidence)
    if missing:
        return failing("No dashboard for: " + ", ".join(missing), **evidence)
    return passing(f"{len(dashboards)} Grafana dashboards cover the plan's {len(rows)} performance targets", **evidence)
