"""Small typed functions over AWS for the rest of the portal. Every call goes through clients.client().

Functions take the Environment first and raise CloudError. They read the sandbox and a real
account the same way: moto's gaps are patched inside the sandbox app (portal.sandbox.patches).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from portal.cloud.clients import client
from portal.cloud.errors import CloudError

COLOURS = ("blue", "green")
MAX_LISTENER_WEIGHT = 999  # ELBv2's limit for a target group weight in a forward action

__all__ = [
    "AlarmState", "CacheState", "Certificate", "CostReport", "DnsRecord", "Distribution", "GroupState",
    "InstanceState", "RdsState", "ScalingPolicy", "TargetHealth", "acm_certificates", "bucket_sizes", "client",
    "cloudfront_distributions", "cost_month_to_date", "describe_cache", "describe_groups", "describe_rds",
    "describe_scaling_policies", "describe_target_health", "get_listener_weights", "healthy_count",
    "list_alarms", "listener_target_groups", "load_balancer_dns_name", "metric_data", "rds_failover",
    "route53_records", "set_desired_capacity", "set_listener_weights",
    "ListenerTls", "SecretState", "bucket_encryption", "launch_template_instance_type", "listener_tls",
    "rds_free_storage_bytes", "secrets_state",
]


@dataclass(frozen=True)
class InstanceState:
    id: str
    lifecycle_state: str  # Pending, InService, Terminating, ...
    health_status: str  # Healthy, Unhealthy
    availability_zone: str = ""
    instance_type: str = ""


@dataclass(frozen=True)
class GroupState:
    colour: str
    name: str
    desired: int
    min_size: int
    max_size: int
    instances: list[InstanceState]
    in_service: int
    target_group_arns: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TargetHealth:
    id: str
    state: str  # initial, healthy, unhealthy, unused, draining, unavailable
    reason: str = ""
    description: str = ""


@dataclass(frozen=True)
class RdsState:
    status: str
    multi_az: bool
    backup_retention_days: int
    latest_snapshot_at: dt.datetime | None
    instance_class: str
    allocated_storage_gb: int
    max_connections: int | None
    engine: str = ""
    identifier: str = ""
    latest_restorable_at: dt.datetime | None = None
    storage_encrypted: bool = False
    kms_key_id: str = ""


@dataclass(frozen=True)
class CacheState:
    status: str
    node_type: str
    id: str = ""
    members: list[str] = field(default_factory=list)
    automatic_failover: str = ""
    at_rest_encryption: bool = False
    transit_encryption: bool = False


@dataclass(frozen=True)
class AlarmState:
    name: str
    state: str  # OK, ALARM, INSUFFICIENT_DATA
    metric: str
    threshold: float | None
    comparison: str
    namespace: str = ""
    reason: str = ""
    updated_at: dt.datetime | None = None
    period: int | None = None  # seconds a datapoint covers (a metric math alarm: its metrics' period)
    evaluation_periods: int | None = None
    datapoints_to_alarm: int | None = None  # None: all of evaluation_periods

    @property
    def duration_seconds(self) -> int | None:
        """How long the alarm looks back before it fires: Period x EvaluationPeriods."""
        if not self.period or not self.evaluation_periods:
            return None
        return int(self.period) * int(self.evaluation_periods)


@dataclass(frozen=True)
class CostReport:
    total: float
    by_service: dict[str, float]
    forecast: float | None
    currency: str
    start: dt.date | None = None
    end: dt.date | None = None
    forecast_source: str = "cost-explorer"  # or "extrapolated" when Cost Explorer has no forecast


@dataclass(frozen=True)
class ScalingPolicy:
    name: str
    policy_type: str
    metric: str = ""
    target_value: float | None = None
    adjustment_type: str = ""
    enabled: bool = True


@dataclass(frozen=True)
class Certificate:
    arn: str
    domain: str
    status: str
    not_after: dt.datetime | None
    in_use_by: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DnsRecord:
    name: str
    type: str
    zone: str
    alias_target: str = ""
    targets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Distribution:
    id: str
    domain: str
    enabled: bool
    status: str
    origins: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- helpers

def _need(env, value: str, what: str, operation: str) -> str:
    if not value:
        raise CloudError("NotConfigured", operation, env.name, f"the environment has no {what} set")
    return value


def _colour(colour: str) -> str:
    if colour not in COLOURS:
        raise ValueError(f"colour must be blue or green, not {colour!r}")
    return colour


# ---------------------------------------------------------------------------------------------- groups

def _group_state(env, colour: str, raw: dict) -> GroupState:
    instances = []
    for i in raw.get("Instances", []):
        instances.append(InstanceState(id=i["InstanceId"], lifecycle_state=i.get("LifecycleState", ""),
                                       health_status=i.get("HealthStatus", ""), availability_zone=i.get("AvailabilityZone", ""),
                                       instance_type=i.get("InstanceType", "")))
    instances.sort(key=lambda x: x.id)
    return GroupState(
        colour=colour, name=raw["AutoScalingGroupName"], desired=int(raw.get("DesiredCapacity", 0)),
        min_size=int(raw.get("MinSize", 0)), max_size=int(raw.get("MaxSize", 0)), instances=instances,
        in_service=sum(1 for i in instances if i.lifecycle_state == "InService"),
        target_group_arns=list(raw.get("TargetGroupARNs", [])),
    )


def describe_groups(env) -> dict[str, GroupState]:
    names = {c: env.asg_name(c) for c in COLOURS if env.asg_name(c)}
    if not names:
        raise CloudError("NotConfigured", "DescribeAutoScalingGroups", env.name, "the environment names no auto scaling groups")
    resp = client(env, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=list(names.values()))
    by_name = {g["AutoScalingGroupName"]: g for g in resp.get("AutoScalingGroups", [])}
    out = {}
    for colour, name in names.items():
        if name not in by_name:
            raise CloudError("NotFound", "DescribeAutoScalingGroups", env.name, f"auto scaling group {name!r} ({colour}) does not exist")
        out[colour] = _group_state(env, colour, by_name[name])
    return out


def set_desired_capacity(env, colour: str, desired: int) -> None:
    name = _need(env, env.asg_name(_colour(colour)), f"{colour} auto scaling group", "SetDesiredCapacity")
    if not isinstance(desired, int) or isinstance(desired, bool) or desired < 0:
        raise ValueError(f"desired capacity must be a whole number of 0 or more, not {desired!r}")
    client(env, "autoscaling").set_desired_capacity(AutoScalingGroupName=name, DesiredCapacity=desired, HonorCooldown=False)


def describe_scaling_policies(env, colour: str) -> list[ScalingPolicy]:
    name = _need(env, env.asg_name(_colour(colour)), f"{colour} auto scaling group", "DescribePolicies")
    out = []
    for page in client(env, "autoscaling").get_paginator("describe_policies").paginate(AutoScalingGroupName=name):
        for p in page.get("ScalingPolicies", []):
            tt = p.get("TargetTrackingConfiguration") or {}
            metric = (tt.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType", "") or \
                (tt.get("CustomizedMetricSpecification") or {}).get("MetricName", "")
            out.append(ScalingPolicy(name=p["PolicyName"], policy_type=p.get("PolicyType", ""), metric=metric,
                                     target_value=tt.get("TargetValue"), adjustment_type=p.get("AdjustmentType", ""),
                                     enabled=bool(p.get("Enabled", True))))
    return out


# ---------------------------------------------------------------------------------------------- listener

def _listener(env) -> dict:
    arn = _need(env, env.listener_arn, "listener ARN", "DescribeListeners")
    listeners = client(env, "elbv2").describe_listeners(ListenerArns=[arn]).get("Listeners", [])
    if not listeners:
        raise CloudError("ListenerNotFound", "DescribeListeners", env.name, f"listener {arn} does not exist")
    return listeners[0]


def _forward_groups(listener: dict) -> list[dict]:
    for action in listener.get("DefaultActions", []):
        if action.get("Type") != "forward":
            continue
        groups = (action.get("ForwardConfig") or {}).get("TargetGroups")
        if groups:
            return [{"TargetGroupArn": g["TargetGroupArn"], "Weight": int(g.get("Weight", 1) if g.get("Weight") is not None else 1)}
                    for g in groups]
        if action.get("TargetGroupArn"):
            return [{"TargetGroupArn": action["TargetGroupArn"], "Weight": 1}]
    return []


def listener_target_groups(env) -> list[str]:
    return [g["TargetGroupArn"] for g in _forward_groups(_listener(env))]


def get_listener_weights(env) -> dict[str, int]:
    """{"blue": 100, "green": 0}: the listener default action's weights (a lone target group gets 100)."""
    groups = _forward_groups(_listener(env))
    by_arn = {env.target_group_arn(c): c for c in COLOURS if env.target_group_arn(c)}
    weights = {c: 0 for c in COLOURS}
    if len(groups) == 1:
        colour = by_arn.get(groups[0]["TargetGroupArn"])
        if colour:
            weights[colour] = 100
        return weights
    for g in groups:
        colour = by_arn.get(g["TargetGroupArn"])
        if colour:
            weights[colour] = g["Weight"]
    return weights


def set_listener_weights(env, weights: dict[str, int]) -> dict[str, int]:
    """Make the listener's default action a weighted forward to blue and green; returns the weights read back."""
    unknown = set(weights) - set(COLOURS)
    if unknown:
        raise ValueError(f"unknown colour(s) {sorted(unknown)}: weights are for blue and green")
    clean = {}
    for c in COLOURS:
        w = weights.get(c, 0)
        if not isinstance(w, int) or isinstance(w, bool) or not 0 <= w <= MAX_LISTENER_WEIGHT:
            raise ValueError(f"the {c} weight must be a whole number from 0 to {MAX_LISTENER_WEIGHT}, not {w!r}")
        clean[c] = w
    if sum(clean.values()) == 0:
        raise ValueError("at least one colour needs a weight above 0, or the listener would send traffic nowhere")
    arn = _need(env, env.listener_arn, "listener ARN", "ModifyListener")
    groups = [{"TargetGroupArn": _need(env, env.target_group_arn(c), f"{c} target group ARN", "ModifyListener"), "Weight": clean[c]}
              for c in COLOURS]
    client(env, "elbv2").modify_listener(
        ListenerArn=arn,
        DefaultActions=[{"Type": "forward", "ForwardConfig": {
            "TargetGroups": groups, "TargetGroupStickinessConfig": {"Enabled": False}}}],
    )
    return get_listener_weights(env)


def load_balancer_dns_name(env) -> str:
    if not env.load_balancer_arn:
        return ""
    lbs = client(env, "elbv2").describe_load_balancers(LoadBalancerArns=[env.load_balancer_arn]).get("LoadBalancers", [])
    return lbs[0].get("DNSName", "") if lbs else ""


# ---------------------------------------------------------------------------------------------- targets

def describe_target_health(env, colour: str) -> list[TargetHealth]:
    _colour(colour)
    arn = _need(env, env.target_group_arn(colour), f"{colour} target group ARN", "DescribeTargetHealth")
    resp = client(env, "elbv2").describe_target_health(TargetGroupArn=arn)
    out = []
    for d in resp.get("TargetHealthDescriptions", []):
        th = d.get("TargetHealth") or {}
        out.append(TargetHealth(id=d["Target"]["Id"], state=th.get("State", ""), reason=th.get("Reason", ""),
                                description=th.get("Description", "")))
    return sorted(out, key=lambda t: t.id)


def healthy_count(env, colour: str) -> int:
    return sum(1 for t in describe_target_health(env, colour) if t.state == "healthy")


# ---------------------------------------------------------------------------------------------- RDS

# GiB of memory per instance class, for PostgreSQL's default max_connections
# LEAST({DBInstanceClassMemory/9531392}, 5000) when the parameter group does not set it.
RDS_CLASS_MEMORY_GIB = {
    "db.t3.micro": 1, "db.t3.small": 2, "db.t3.medium": 4, "db.t3.large": 8, "db.t3.xlarge": 16,
    "db.t4g.micro": 1, "db.t4g.small": 2, "db.t4g.medium": 4, "db.t4g.large": 8,
    "db.m5.large": 8, "db.m5.xlarge": 16, "db.m5.2xlarge": 32, "db.m6g.large": 8, "db.m6g.xlarge": 16,
    "db.r5.large": 16, "db.r5.xlarge": 32, "db.r5.2xlarge": 64, "db.r5.4xlarge": 128,
    "db.r6g.large": 16, "db.r6g.xlarge": 32, "db.r6g.2xlarge": 64,
}


def default_max_connections(instance_class: str) -> int | None:
    gib = RDS_CLASS_MEMORY_GIB.get(instance_class)
    if gib is None:
        return None
    return min(int(gib * 1024**3 // 9531392), 5000)


def _parameter_max_connections(rds, env, instance: dict) -> int | None:
    for group in instance.get("DBParameterGroups", []):
        name = group.get("DBParameterGroupName", "")
        if not name or name.startswith("default."):
            continue
        try:
            for page in rds.get_paginator("describe_db_parameters").paginate(DBParameterGroupName=name, Source="user"):
                for p in page.get("Parameters", []):
                    if p.get("ParameterName") == "max_connections" and str(p.get("ParameterValue", "")).isdigit():
                        return int(p["ParameterValue"])
        except CloudError:
            return None
    return None


def describe_rds(env) -> RdsState:
    ident = _need(env, env.rds_instance_id, "RDS instance id", "DescribeDBInstances")
    rds = client(env, "rds")
    instances = rds.describe_db_instances(DBInstanceIdentifier=ident).get("DBInstances", [])
    if not instances:
        raise CloudError("DBInstanceNotFound", "DescribeDBInstances", env.name, f"RDS instance {ident} does not exist")
    db = instances[0]
    snaps = rds.describe_db_snapshots(DBInstanceIdentifier=ident, SnapshotType="automated").get("DBSnapshots", [])
    times = [s["SnapshotCreateTime"] for s in snaps if s.get("SnapshotCreateTime") and s.get("Status", "available") == "available"]
    cls = db.get("DBInstanceClass", "")
    return RdsState(
        status=db.get("DBInstanceStatus", ""), multi_az=bool(db.get("MultiAZ")),
        backup_retention_days=int(db.get("BackupRetentionPeriod", 0) or 0),
        latest_snapshot_at=max(times) if times else None, instance_class=cls,
        allocated_storage_gb=int(db.get("AllocatedStorage", 0) or 0),
        max_connections=_parameter_max_connections(rds, env, db) or default_max_connections(cls),
        engine=db.get("Engine", ""), identifier=ident, latest_restorable_at=db.get("LatestRestorableTime"),
        storage_encrypted=bool(db.get("StorageEncrypted")), kms_key_id=db.get("KmsKeyId", "") or "",
    )


def rds_failover(env) -> None:
    """Reboot with failover: the standby in the other zone becomes primary (Multi-AZ only)."""
    ident = _need(env, env.rds_instance_id, "RDS instance id", "RebootDBInstance")
    client(env, "rds").reboot_db_instance(DBInstanceIdentifier=ident, ForceFailover=True)


# ---------------------------------------------------------------------------------------------- cache, S3

def describe_cache(env) -> CacheState:
    ident = _need(env, env.cache_replication_group_id, "ElastiCache replication group id", "DescribeReplicationGroups")
    groups = client(env, "elasticache").describe_replication_groups(ReplicationGroupId=ident).get("ReplicationGroups", [])
    if not groups:
        raise CloudError("ReplicationGroupNotFoundFault", "DescribeReplicationGroups", env.name, f"{ident} does not exist")
    g = groups[0]
    return CacheState(status=g.get("Status", ""), node_type=g.get("CacheNodeType", ""), id=ident,
                      members=list(g.get("MemberClusters", [])), automatic_failover=g.get("AutomaticFailover", ""),
                      at_rest_encryption=bool(g.get("AtRestEncryptionEnabled")),
                      transit_encryption=bool(g.get("TransitEncryptionEnabled")))


def bucket_sizes(env, only: Iterable[str] | None = None) -> dict[str, int]:
    """Logical bucket name (photos, videos, ...) -> bytes, from CloudWatch's daily BucketSizeBytes (0 when none yet).
    `only`: these logical names (the buckets on S3 when others are elsewhere); None: every bucket named."""
    buckets = dict(env.buckets or {})
    if only is not None:
        wanted = set(only)
        buckets = {k: v for k, v in buckets.items() if k in wanted}
    if not buckets:
        return {}
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    start = end - dt.timedelta(days=3)
    queries = []
    keys = list(buckets)
    for i, key in enumerate(keys):
        queries.append({"Id": f"b{i}", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": "AWS/S3", "MetricName": "BucketSizeBytes", "Dimensions": [
                {"Name": "BucketName", "Value": buckets[key]}, {"Name": "StorageType", "Value": "StandardStorage"}]},
            "Period": 86400, "Stat": "Average"}})
    results = metric_data(env, queries, start, end)
    out = {}
    for i, key in enumerate(keys):
        points = results.get(f"b{i}", [])
        out[key] = int(points[-1][1]) if points else 0
    return out


# ---------------------------------------------------------------------------------------------- CloudWatch

def metric_data(env, queries: list[dict], start: dt.datetime, end: dt.datetime) -> dict[str, list[tuple[dt.datetime, float]]]:
    """GetMetricData (paginated): query id -> [(timestamp, value)] oldest first; None values dropped."""
    cw = client(env, "cloudwatch")
    out: dict[str, list[tuple[dt.datetime, float]]] = {q["Id"]: [] for q in queries}
    for i in range(0, len(queries), 500):
        kwargs: dict[str, Any] = {"MetricDataQueries": queries[i:i + 500], "StartTime": start, "EndTime": end,
                                  "ScanBy": "TimestampAscending"}
        while True:
            resp = cw.get_metric_data(**kwargs)
            for r in resp.get("MetricDataResults", []):
                pairs = [(t, float(v)) for t, v in zip(r.get("Timestamps", []), r.get("Values", []), strict=False) if v is not None]
                out.setdefault(r["Id"], []).extend(pairs)
            token = resp.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
    for k in out:
        out[k].sort(key=lambda p: p[0])
    return out


def list_alarms(env) -> list[AlarmState]:
    out = []
    for page in client(env, "cloudwatch").get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
        for a in page.get("MetricAlarms", []):
            metric, period = a.get("MetricName", ""), a.get("Period")
            stats = [m["MetricStat"] for m in a.get("Metrics", []) if m.get("MetricStat")]
            if not metric:  # a metric math alarm: name the first metric it reads
                metric = next((m["Metric"]["MetricName"] for m in stats), "")
            if not period:  # ... and its datapoints are its metrics' period (the longest, when they differ)
                period = max((int(m["Period"]) for m in stats if m.get("Period")), default=None)
            out.append(AlarmState(name=a["AlarmName"], state=a.get("StateValue", ""), metric=metric,
                                  threshold=a.get("Threshold"), comparison=a.get("ComparisonOperator", ""),
                                  namespace=a.get("Namespace", ""), reason=a.get("StateReason", ""),
                                  updated_at=a.get("StateUpdatedTimestamp"), period=period,
                                  evaluation_periods=a.get("EvaluationPeriods"),
                                  datapoints_to_alarm=a.get("DatapointsToAlarm")))
    return sorted(out, key=lambda a: a.name)


# ---------------------------------------------------------------------------------------------- cost

def cost_month_to_date(env, today: dt.date | None = None) -> CostReport:
    today = today or dt.datetime.now(dt.UTC).date()
    start = today.replace(day=1)
    end = today if today > start else start + dt.timedelta(days=1)  # Cost Explorer needs start < end
    month_end = start.replace(day=calendar.monthrange(start.year, start.month)[1]) + dt.timedelta(days=1)
    ce = client(env, "ce")
    resp = ce.get_cost_and_usage(TimePeriod={"Start": start.isoformat(), "End": end.isoformat()}, Granularity="MONTHLY",
                                 Metrics=["UnblendedCost"], GroupBy=[{"Type": "DIMENSION", "Key": "SERVICE"}])
    by_service: dict[str, float] = {}
    currency = "USD"
    total = 0.0
    for period in resp.get("ResultsByTime", []):
        for g in period.get("Groups", []):
            amount = (g.get("Metrics") or {}).get("UnblendedCost") or {}
            name = (g.get("Keys") or ["?"])[0]
            by_service[name] = by_service.get(name, 0.0) + float(amount.get("Amount", 0) or 0)
            currency = amount.get("Unit", currency) or currency
        if not period.get("Groups"):
            amount = (period.get("Total") or {}).get("UnblendedCost") or {}
            total += float(amount.get("Amount", 0) or 0)
    total += sum(by_service.values())
    forecast, source = None, "cost-explorer"
    forecast_start = today + dt.timedelta(days=1) if today >= start else start
    if forecast_start < month_end:
        try:
            f = ce.get_cost_forecast(TimePeriod={"Start": forecast_start.isoformat(), "End": month_end.isoformat()},
                                     Metric="UNBLENDED_COST", Granularity="MONTHLY")
            forecast = total + float((f.get("Total") or {}).get("Amount", 0) or 0)
        except CloudError as exc:
            if exc.is_access_denied:
                raise
            forecast = None
    if forecast is None and total:
        # Cost Explorer has no forecast for young accounts (DataUnavailableException): extrapolate linearly.
        days_elapsed = max((today - start).days + 1, 1)
        days_in_month = (month_end - start).days
        forecast, source = round(total / days_elapsed * days_in_month, 2), "extrapolated"
    return CostReport(total=round(total, 2), by_service={k: round(v, 2) for k, v in sorted(by_service.items())},
                      forecast=round(forecast, 2) if forecast is not None else None, currency=currency,
                      start=start, end=end, forecast_source=source)


# ---------------------------------------------------------------------------------------------- checklist evidence

def acm_certificates(env) -> list[Certificate]:
    acm = client(env, "acm")
    out = []
    for page in acm.get_paginator("list_certificates").paginate():
        for summary in page.get("CertificateSummaryList", []):
            cert = acm.describe_certificate(CertificateArn=summary["CertificateArn"]).get("Certificate", {})
            out.append(Certificate(arn=summary["CertificateArn"], domain=cert.get("DomainName", summary.get("DomainName", "")),
                                   status=cert.get("Status", summary.get("Status", "")), not_after=cert.get("NotAfter"),
                                   in_use_by=list(cert.get("InUseBy", []))))
    return out


def route53_records(env, max_zones: int = 50) -> list[DnsRecord]:
    r53 = client(env, "route53")
    out = []
    zones = []
    for page in r53.get_paginator("list_hosted_zones").paginate():
        zones.extend(page.get("HostedZones", []))
    for zone in zones[:max_zones]:
        for page in r53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone["Id"]):
            for rr in page.get("ResourceRecordSets", []):
                if rr.get("Type") not in ("A", "AAAA", "CNAME"):
                    continue
                alias = (rr.get("AliasTarget") or {}).get("DNSName", "")
                out.append(DnsRecord(name=rr["Name"], type=rr["Type"], zone=zone.get("Name", ""), alias_target=alias,
                                     targets=[r.get("Value", "") for r in rr.get("ResourceRecords", [])]))
    return out


def cloudfront_distributions(env) -> list[Distribution]:
    cf = client(env, "cloudfront")
    out = []
    for page in cf.get_paginator("list_distributions").paginate():
        for d in (page.get("DistributionList") or {}).get("Items", []) or []:
            origins = [o.get("DomainName", "") for o in ((d.get("Origins") or {}).get("Items") or [])]
            aliases = list((d.get("Aliases") or {}).get("Items") or [])
            out.append(Distribution(id=d["Id"], domain=d.get("DomainName", ""), enabled=bool(d.get("Enabled")),
                                    status=d.get("Status", ""), origins=origins, aliases=aliases))
    return out


# ---------------------------------------------------------------------------------------------- hardening

@dataclass(frozen=True)
class ListenerTls:
    arn: str
    protocol: str
    port: int
    ssl_policy: str
    certificate_arns: list[str] = field(default_factory=list)


def listener_tls(env) -> ListenerTls:
    """The environment's listener: its protocol, TLS security policy and the certificates attached."""
    listener = _listener(env)
    certs = [c["CertificateArn"] for c in listener.get("Certificates", []) if c.get("CertificateArn")]
    arn = listener["ListenerArn"]
    try:  # the default certificate is in describe_listeners; SNI ones only in describe_listener_certificates
        pages = client(env, "elbv2").get_paginator("describe_listener_certificates").paginate(ListenerArn=arn)
        for page in pages:
            certs.extend(c["CertificateArn"] for c in page.get("Certificates", []) if c.get("CertificateArn"))
    except CloudError as exc:
        if exc.is_access_denied:
            raise
    return ListenerTls(arn=arn, protocol=listener.get("Protocol", ""), port=int(listener.get("Port", 0) or 0),
                       ssl_policy=listener.get("SslPolicy", "") or "", certificate_arns=sorted(set(certs)))


def bucket_encryption(env) -> dict[str, str]:
    """Logical bucket -> its default encryption (AES256, aws:kms, ...), '' when none is configured."""
    s3 = client(env, "s3")
    out = {}
    for logical, bucket in sorted((env.buckets or {}).items()):
        try:
            rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"].get("Rules", [])
        except CloudError as exc:
            if exc.code != "ServerSideEncryptionConfigurationNotFoundError":
                raise
            rules = []
        algos = [(r.get("ApplyServerSideEncryptionByDefault") or {}).get("SSEAlgorithm", "") for r in rules]
        out[logical] = next((a for a in algos if a), "")
    return out


@dataclass(frozen=True)
class SecretState:
    name: str
    exists: bool
    rotation_enabled: bool = False
    rotation_days: int | None = None
    last_rotated_at: dt.datetime | None = None
    created_at: dt.datetime | None = None


def secrets_state(env, names: list[str]) -> list[SecretState]:
    sm = client(env, "secretsmanager")
    out = []
    for name in names:
        try:
            d = sm.describe_secret(SecretId=name)
        except CloudError as exc:
            if not exc.is_not_found:
                raise
            out.append(SecretState(name=name, exists=False))
            continue
        if d.get("DeletedDate"):
            out.append(SecretState(name=name, exists=False))
            continue
        out.append(SecretState(name=name, exists=True, rotation_enabled=bool(d.get("RotationEnabled")),
                               rotation_days=(d.get("RotationRules") or {}).get("AutomaticallyAfterDays"),
                               last_rotated_at=d.get("LastRotatedDate"), created_at=d.get("CreatedDate")))
    return out


def rds_free_storage_bytes(env) -> float | None:
    """The database's latest FreeStorageSpace (bytes) from CloudWatch; None when it has not reported."""
    ident = _need(env, env.rds_instance_id, "RDS instance id", "GetMetricData")
    end = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    points = metric_data(env, [{"Id": "free", "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": "AWS/RDS", "MetricName": "FreeStorageSpace",
                   "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": ident}]},
        "Period": 300, "Stat": "Minimum"}}], end - dt.timedelta(hours=3), end).get("free", [])
    return points[-1][1] if points else None


def launch_template_instance_type(env) -> str:
    """The instance type the launch template's latest version starts ('' when it sets none)."""
    lt = _need(env, env.launch_template_id, "launch template id", "DescribeLaunchTemplateVersions")
    versions = client(env, "ec2").describe_launch_template_versions(LaunchTemplateId=lt, Versions=["$Latest"]).get(
        "LaunchTemplateVersions", [])
    return (versions[0].get("LaunchTemplateData") or {}).get("InstanceType", "") if versions else ""
