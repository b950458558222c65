"""Plan drift: what the account runs, line by line, against what the plan (portal/plan/plan.yaml) and the
current phase's bounds (deployments.bounds) say it should.

Each line names the component, what is compared, the plan's value and the account's, ok or drifted
(or unknown when the cloud could not be read, with the words why), and the checklist item the
difference affects (its page shows the drift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from deployments.bounds import phase_bounds
from portal.cloud import aws
from portal.cloud.errors import CloudError
from portal.plan.loader import load_plan

OK, DRIFTED, UNKNOWN = "ok", "drifted", "unknown"
TLS13_PREFIX = "ELBSecurityPolicy-TLS13-"
MIN_FREE_STORAGE_PCT = 20.0  # the disk warning's 80 % used, read as free space


@dataclass(frozen=True)
class DriftLine:
    component: str
    check: str
    expected: object
    actual: object
    status: str
    checklist_item: str
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def _line(component: str, check: str, expected, actual, ok: bool, item: str, note: str = "") -> DriftLine:
    return DriftLine(component, check, expected, actual, OK if ok else DRIFTED, item, note)


def _unknown(component: str, check: str, expected, item: str, exc: CloudError) -> DriftLine:
    return DriftLine(component, check, expected, None, UNKNOWN, item, exc.words)


def _section(lines: list[DriftLine], component: str, checks: list[tuple[str, object, str]],
             read: Callable[[], list[DriftLine]]) -> None:
    """Append a component's lines; when its read fails, each of its checks is 'unknown' with the reason."""
    try:
        lines.extend(read())
    except CloudError as exc:
        lines.extend(_unknown(component, check, expected, item, exc) for check, expected, item in checks)


def environment_drift(env) -> list[DriftLine]:
    plan = load_plan()
    comp = plan.get("components") or {}
    compute, db, cache = comp.get("compute") or {}, comp.get("database") or {}, comp.get("cache") or {}
    retention = int(((plan.get("security") or {}).get("backups") or {}).get("retention_days", 7))
    tls_prefix = str((plan.get("security") or {}).get("tls_policy_prefix") or TLS13_PREFIX)
    contents = list((comp.get("storage") or {}).get("contents") or [])
    bounds = phase_bounds()
    lines: list[DriftLine] = []

    def compute_lines() -> list[DriftLine]:
        want = compute.get("instance_type", "")
        template_type = aws.launch_template_instance_type(env)
        out = [_line("compute", "launch template instance type", want, template_type or None, template_type == want, "auto-scaling")]
        groups = aws.describe_groups(env)
        for colour in aws.COLOURS:
            g = groups.get(colour)
            if g is None:
                continue
            running = sorted({i.instance_type for i in g.instances if i.instance_type})
            if running:
                out.append(_line("compute", f"{colour} instances' type", want, ", ".join(running), running == [want], "auto-scaling"))
            expected = f"min <= {bounds.instances_min}, max >= {bounds.instances_max} (phase {bounds.number} {bounds.name})"
            out.append(_line("compute", f"{colour} group bounds", expected, f"min {g.min_size}, max {g.max_size}",
                             g.min_size <= bounds.instances_min and g.max_size >= bounds.instances_max, "auto-scaling"))
        return out

    _section(lines, "compute", [("launch template instance type", compute.get("instance_type"), "auto-scaling")], compute_lines)

    def database_lines() -> list[DriftLine]:
        rds = aws.describe_rds(env)
        want_gb = int(db.get("storage_gb", 0) or 0)
        out = [
            _line("database", "instance class", db.get("instance_class"), rds.instance_class,
                  rds.instance_class == db.get("instance_class"), "load-testing"),
            _line("database", "Multi-AZ", bool(db.get("multi_az", True)), rds.multi_az, rds.multi_az == bool(db.get("multi_az", True)),
                  "disaster-recovery"),
            _line("database", "allocated storage (GB)", want_gb, rds.allocated_storage_gb, rds.allocated_storage_gb >= want_gb,
                  "load-testing"),
            _line("database", "backup retention (days)", retention, rds.backup_retention_days,
                  rds.backup_retention_days >= retention, "backups"),
            _line("database", "storage encrypted", True, rds.storage_encrypted, rds.storage_encrypted, "security-audit"),
        ]
        try:
            free = aws.rds_free_storage_bytes(env)
        except CloudError as exc:
            out.append(_unknown("database", "free storage", f">= {MIN_FREE_STORAGE_PCT:g} %", "load-testing", exc))
        else:
            total = rds.allocated_storage_gb * 1024**3
            if free is None or not total:
                out.append(DriftLine("database", "free storage", f">= {MIN_FREE_STORAGE_PCT:g} %", None, UNKNOWN, "load-testing",
                                     "FreeStorageSpace has not been reported"))
            else:
                pct = round(100.0 * free / total, 1)
                out.append(_line("database", "free storage", f">= {MIN_FREE_STORAGE_PCT:g} %", f"{pct:g} %",
                                 pct >= MIN_FREE_STORAGE_PCT, "load-testing"))
        return out

    _section(lines, "database", [("instance class", db.get("instance_class"), "load-testing"),
                                 ("Multi-AZ", db.get("multi_az"), "disaster-recovery"),
                                 ("backup retention (days)", retention, "backups")], database_lines)

    def cache_lines() -> list[DriftLine]:
        c = aws.describe_cache(env)
        return [_line("cache", "node type", cache.get("node_type"), c.node_type, c.node_type == cache.get("node_type"), "load-testing"),
                _line("cache", "encrypted at rest", True, c.at_rest_encryption, c.at_rest_encryption, "security-audit")]

    _section(lines, "cache", [("node type", cache.get("node_type"), "load-testing")], cache_lines)

    def tls_lines() -> list[DriftLine]:
        tls = aws.listener_tls(env)
        return [_line("load balancer", "TLS policy", f"{tls_prefix}*", tls.ssl_policy or None,
                      tls.ssl_policy.startswith(tls_prefix), "ssl")]

    _section(lines, "load balancer", [("TLS policy", f"{tls_prefix}*", "ssl")], tls_lines)

    def bucket_lines() -> list[DriftLine]:
        named = dict(env.buckets or {})
        enc = aws.bucket_encryption(env) if env.storage_provider != "cloudflare" else {}
        out = []
        for logical in contents:
            out.append(_line("storage", f"{logical} bucket", "named", named.get(logical) or None, bool(named.get(logical)), "cdn"))
            if logical in enc:
                out.append(_line("storage", f"{logical} bucket encryption", "AES256 or aws:kms", enc[logical] or None,
                                 bool(enc[logical]), "security-audit"))
        return out

    _section(lines, "storage", [(f"{c} bucket", "named", "cdn") for c in contents], bucket_lines)
    return lines


def drift_summary(lines: list[DriftLine]) -> dict:
    return {"ok": sum(1 for x in lines if x.status == OK), "drifted": sum(1 for x in lines if x.status == DRIFTED),
            "unknown": sum(1 for x in lines if x.status == UNKNOWN)}


def drift_for_item(lines: list[DriftLine], slug: str) -> list[DriftLine]:
    return [x for x in lines if x.checklist_item == slug and x.status != OK]
