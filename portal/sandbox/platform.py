"""The local AWS sandbox: moto's server with the platform's topology built in it.

`build_platform()` creates what the plan describes (VPC, subnets, launch template, blue/green
groups behind one weighted ALB listener, RDS, ElastiCache, S3, alarms, certificate, DNS, CDN,
Cost Explorer results). `register_environment()` saves the `sandbox` Environment row.

moto's gaps are covered by portal.sandbox.patches, never in the portal's code.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import functools
import logging
import math
from collections.abc import Callable
from typing import Any

import boto3
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.db import transaction

from portal.audit.services import audit_record
from portal.cloud.aws import default_max_connections
from portal.cloud.clients import client, reset_cache
from portal.cloud.models import Environment, SimulatorState
from portal.health import thresholds
from portal.health.services import outbound_policy_set
from portal.phases.selectors import current_phase
from portal.plan.loader import load_plan
from portal.sandbox.patches import SANDBOX_COSTS, plan_monthly_cost
from portal.sandbox.statuspages import service_checks_point_at

log = logging.getLogger(__name__)

PREFIX = "ftw"
DOMAIN = "fairtradeworker.example"
ENV_NAME = "sandbox"
INSTANCE_TYPE = "t3.large"
TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.3 in transit, as the plan says
SERVICE_NAMES = {  # Cost Explorer SERVICE dimension values for the plan's cost table
    "compute": "Amazon Elastic Compute Cloud - Compute",
    "database": "Amazon Relational Database Service",
    "cache": "Amazon ElastiCache",
    "storage": "Amazon Simple Storage Service",
    "bandwidth": "AWS Data Transfer",
    "services": "External services (AI, SMS, Email)",
    "monitoring": "AmazonCloudWatch",
}

# --------------------------------------------------------------------------------------------- plan facts

def current_phase_bounds() -> dict[str, int]:
    """The current phase's instance bounds: the phases app when it answers, else plan.yaml's first phase."""
    try:
        phase = current_phase()
        return {"number": phase.number, "instances_min": phase.instances_min, "instances_max": phase.instances_max,
                "users_min": phase.users_min, "users_max": phase.users_max}
    except Exception:  # noqa: BLE001 - no phases table yet: the plan file is the source
        phase = (load_plan().get("phases") or [{}])[0]
        return {"number": int(phase.get("number", 1)), "instances_min": int(phase.get("instances_min", 2)),
                "instances_max": int(phase.get("instances_max", 4)), "users_min": int(phase.get("users_min", 0)),
                "users_max": int(phase.get("users_max", 5000))}


def plan_thresholds(plan: dict) -> list[dict]:
    """The plan's threshold rows with their severity: what the alarms start from, before the database exists."""
    return [{**t, "severity": level} for level, items in (plan.get("thresholds") or {}).items() for t in items or []]


# The period each metric's alarm reads it at (the cache and disk metrics arrive every five minutes); a
# window that is not a multiple of it is read by the minute.
ALARM_PERIODS = {"error_rate": 60, "p95_response_time": 60, "cpu": 60, "db_connections": 60, "cache_hit_ratio": 300,
                 "disk": 300}


def alarm_specs(rows: list[dict], names: dict) -> list[dict]:
    """One CloudWatch alarm per threshold (slug, metric, severity, comparison, value, min_requests,
    window_minutes, summary), on the metric AWS has for it."""
    tg_dims = [{"Name": "TargetGroup", "Value": names["blue_tg_dimension"]}, {"Name": "LoadBalancer", "Value": names["alb_dimension"]}]
    comparisons = {"gt": "GreaterThanThreshold", "gte": "GreaterThanOrEqualToThreshold", "lt": "LessThanThreshold",
                   "lte": "LessThanOrEqualToThreshold"}
    specs = []
    for t in rows:
        level = t.get("severity", "")
        metric, value = t.get("metric"), float(t.get("value", 0))
        if metric not in ALARM_PERIODS:
            continue
        # The alarm looks back over the threshold's window (Period x EvaluationPeriods) and fires when every
        # datapoint in it breaches: what the window means everywhere else (Prometheus `for`, the health checks).
        window = max(int(t.get("window_minutes") or 5), 1) * 60
        period = ALARM_PERIODS[metric] if window % ALARM_PERIODS[metric] == 0 else 60
        base = {"AlarmName": f"{PREFIX}-{t['slug']}", "AlarmDescription": f"{t.get('summary', t['slug'])} ({level})",
                "ComparisonOperator": comparisons.get(t.get("comparison", "gt"), "GreaterThanThreshold"),
                "Threshold": value, "EvaluationPeriods": window // period, "DatapointsToAlarm": window // period,
                "TreatMissingData": "notBreaching"}
        if metric == "error_rate":
            base.update(Metrics=[
                {"Id": "errors", "ReturnData": False, "MetricStat": {"Metric": {
                    "Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count",
                    "Dimensions": [{"Name": "LoadBalancer", "Value": names["alb_dimension"]}]}, "Period": period, "Stat": "Sum"}},
                {"Id": "requests", "ReturnData": False, "MetricStat": {"Metric": {
                    "Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount",
                    "Dimensions": [{"Name": "LoadBalancer", "Value": names["alb_dimension"]}]}, "Period": period, "Stat": "Sum"}},
                {"Id": "error_rate", "Label": "Error rate (%)", "ReturnData": True,
                 "Expression": _error_rate_expression(t)}])
        elif metric == "p95_response_time":
            base.update(Namespace="AWS/ApplicationELB", MetricName="TargetResponseTime", ExtendedStatistic="p95",
                        Period=period, Dimensions=tg_dims)
        elif metric == "cpu":
            base.update(Namespace="AWS/EC2", MetricName="CPUUtilization", Statistic="Average", Period=period,
                        Dimensions=[{"Name": "AutoScalingGroupName", "Value": names["blue_asg"]}])
        elif metric == "db_connections":
            # CloudWatch has connections, not percent: the threshold is that share of max_connections.
            limit = default_max_connections(names.get("rds_instance_class", "db.r5.large")) or 1000
            base.update(Namespace="AWS/RDS", MetricName="DatabaseConnections", Statistic="Maximum", Period=period,
                        Threshold=round(limit * value / 100.0),
                        Dimensions=[{"Name": "DBInstanceIdentifier", "Value": names["rds_instance_id"]}])
        elif metric == "cache_hit_ratio":
            base.update(Namespace="AWS/ElastiCache", MetricName="CacheHitRate", Statistic="Average", Period=period,
                        Dimensions=[{"Name": "ReplicationGroupId", "Value": names["cache_replication_group_id"]}])
        elif metric == "disk":
            base.update(Namespace="CWAgent", MetricName="disk_used_percent", Statistic="Maximum", Period=period,
                        Dimensions=[{"Name": "AutoScalingGroupName", "Value": names["blue_asg"]}])
        specs.append(base)
    return specs


def _error_rate_expression(t: dict) -> str:
    """The error rate of a minute; with a minimum evidence, 0 in a minute with fewer requests than its
    share of the window's minimum (the alarm's period is a minute, the threshold's window several)."""
    minimum = int(t.get("min_requests") or 0)
    if not minimum:
        return "100 * errors / requests"
    per_minute = max(1, math.ceil(minimum / max(int(t.get("window_minutes") or 5), 1)))
    return f"IF(requests >= {per_minute}, 100 * errors / requests, 0)"


@functools.cache
def _self_signed_certificate(domain: str) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"*.{domain}")]), critical=False)
            .sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), pem_key


def cost_results(plan: dict, today: dt.date) -> dict:
    """Month-to-date Cost Explorer groups from the plan's monthly cost table."""
    start = today.replace(day=1)
    days = calendar.monthrange(today.year, today.month)[1]
    elapsed = max((today - start).days, 1)
    groups = []
    for item in (plan.get("costs") or {}).get("items", []):
        amount = float(item["monthly"]) * elapsed / days
        groups.append({"Keys": [SERVICE_NAMES.get(item["slug"], item["service"])],
                       "Metrics": {"UnblendedCost": {"Amount": f"{amount:.2f}", "Unit": "USD"}}})
    end = today if today > start else start + dt.timedelta(days=1)
    return {"ResultsByTime": [{"TimePeriod": {"Start": start.isoformat(), "End": end.isoformat()},
                               "Total": {}, "Groups": groups, "Estimated": True}],
            "GroupDefinitions": [{"Type": "DIMENSION", "Key": "SERVICE"}], "DimensionValueAttributes": []}


# --------------------------------------------------------------------------------------------- build

def _dimension_from_arn(arn: str, kind: str) -> str:
    # LoadBalancer dimension "app/name/id"; TargetGroup "targetgroup/name/id"
    tail = arn.split(":", 5)[-1]
    if kind == "lb":
        return tail.split("loadbalancer/", 1)[-1]
    return tail


def _find_ami(ec2) -> str:
    images = ec2.describe_images(Owners=["amazon"], Filters=[{"Name": "architecture", "Values": ["x86_64"]},
                                                             {"Name": "name", "Values": ["amzn2-ami-hvm-2.0*"]}]).get("Images", [])
    linux = [i for i in images if "Windows" not in (i.get("Name") or "")] or images
    return sorted(linux, key=lambda i: i["ImageId"])[0]["ImageId"] if linux else "ami-12c6146b"


def build_platform(session_or_clients: Any = None, *, endpoint_url: str | None = None, region: str = "us-east-1",
                   plan: dict | None = None, phase: dict | None = None, today: dt.date | None = None) -> dict:
    """Create the plan's topology (idempotent: reuses what exists by name). Returns names and ARNs.

    `session_or_clients` is a boto3 Session, a callable service -> client, or None (static sandbox keys).
    """
    plan = plan or load_plan()
    phase = phase or current_phase_bounds()
    if callable(session_or_clients) and not isinstance(session_or_clients, boto3.Session):
        make: Callable[[str], Any] = session_or_clients
    else:
        sess = session_or_clients or boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                                   region_name=region)

        def make(service: str):
            return sess.client(service, region_name=region, endpoint_url=endpoint_url)

    ec2, elbv2, asg, rds = make("ec2"), make("elbv2"), make("autoscaling"), make("rds")
    names: dict[str, Any] = {"region": region}

    # Network
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "tag:Name", "Values": [f"{PREFIX}-vpc"]}])["Vpcs"]
    if vpcs:
        vpc_id = vpcs[0]["VpcId"]
    else:
        vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16", TagSpecifications=[
            {"ResourceType": "vpc", "Tags": [{"Key": "Name", "Value": f"{PREFIX}-vpc"}]}])["Vpc"]["VpcId"]
    subnets = []
    for i, az in enumerate((f"{region}a", f"{region}b")):
        found = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc_id]},
                                              {"Name": "tag:Name", "Values": [f"{PREFIX}-subnet-{az}"]}])["Subnets"]
        if found:
            subnets.append(found[0]["SubnetId"])
        else:
            subnets.append(ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.20.{i + 1}.0/24", AvailabilityZone=az,
                                             TagSpecifications=[{"ResourceType": "subnet", "Tags": [
                                                 {"Key": "Name", "Value": f"{PREFIX}-subnet-{az}"}]}])["Subnet"]["SubnetId"])
    sgs = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [f"{PREFIX}-web"]},
                                                {"Name": "vpc-id", "Values": [vpc_id]}])["SecurityGroups"]
    sg_id = sgs[0]["GroupId"] if sgs else ec2.create_security_group(
        GroupName=f"{PREFIX}-web", Description="FairTradeWorker web tier", VpcId=vpc_id)["GroupId"]
    names.update(vpc_id=vpc_id, subnet_ids=subnets, security_group_id=sg_id)

    # Launch template
    lts = ec2.describe_launch_templates(Filters=[{"Name": "launch-template-name", "Values": [f"{PREFIX}-app"]}]).get("LaunchTemplates", [])
    if lts:
        lt_id = lts[0]["LaunchTemplateId"]
    else:
        lt_id = ec2.create_launch_template(LaunchTemplateName=f"{PREFIX}-app", LaunchTemplateData={
            "ImageId": _find_ami(ec2), "InstanceType": INSTANCE_TYPE, "SecurityGroupIds": [sg_id]})["LaunchTemplate"]["LaunchTemplateId"]
    names["launch_template_id"] = lt_id

    # Certificate (ACM), imported so that it is ISSUED with a real expiry
    acm = make("acm")
    certs = [c for c in acm.list_certificates().get("CertificateSummaryList", []) if c.get("DomainName") == DOMAIN]
    if certs:
        cert_arn = certs[0]["CertificateArn"]
    else:
        pem_cert, pem_key = _self_signed_certificate(DOMAIN)
        cert_arn = acm.import_certificate(Certificate=pem_cert, PrivateKey=pem_key)["CertificateArn"]
    names["certificate_arn"] = cert_arn

    # Load balancer, target groups, weighted listener
    try:
        lb = elbv2.describe_load_balancers(Names=[f"{PREFIX}-alb"])["LoadBalancers"][0]
    except Exception:  # noqa: BLE001 - LoadBalancerNotFound: create it
        lb = elbv2.create_load_balancer(Name=f"{PREFIX}-alb", Subnets=subnets, SecurityGroups=[sg_id],
                                        Scheme="internet-facing", Type="application")["LoadBalancers"][0]
    names.update(load_balancer_arn=lb["LoadBalancerArn"], load_balancer_dns=lb["DNSName"],
                 alb_dimension=_dimension_from_arn(lb["LoadBalancerArn"], "lb"))
    tgs = {}
    for colour in ("blue", "green"):
        try:
            tg = elbv2.describe_target_groups(Names=[f"{PREFIX}-{colour}"])["TargetGroups"][0]
        except Exception:  # noqa: BLE001 - TargetGroupNotFound
            tg = elbv2.create_target_group(Name=f"{PREFIX}-{colour}", Protocol="HTTP", Port=80, VpcId=vpc_id,
                                           TargetType="instance", HealthCheckPath="/healthz",
                                           HealthCheckIntervalSeconds=10, HealthyThresholdCount=2,
                                           UnhealthyThresholdCount=2)["TargetGroups"][0]
        tgs[colour] = tg["TargetGroupArn"]
        names[f"{colour}_target_group_arn"] = tg["TargetGroupArn"]
        names[f"{colour}_tg_dimension"] = _dimension_from_arn(tg["TargetGroupArn"], "tg")
    listeners = elbv2.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"]).get("Listeners", [])
    listener = next((x for x in listeners if x.get("Port") == 443), None)
    if listener is None:
        listener = elbv2.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"], Protocol="HTTPS", Port=443, Certificates=[{"CertificateArn": cert_arn}],
            SslPolicy=TLS_POLICY,
            DefaultActions=[{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                {"TargetGroupArn": tgs["blue"], "Weight": 100}, {"TargetGroupArn": tgs["green"], "Weight": 0}]}}],
        )["Listeners"][0]
    names["listener_arn"] = listener["ListenerArn"]

    # Auto scaling groups (phase minimum on blue, green idle)
    existing = {g["AutoScalingGroupName"]: g for g in asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=[f"{PREFIX}-blue", f"{PREFIX}-green"]).get("AutoScalingGroups", [])}
    max_size = int((plan.get("components") or {}).get("compute", {}).get("autoscale_max", 32))
    for colour in ("blue", "green"):
        name = f"{PREFIX}-{colour}"
        names[f"{colour}_asg"] = name
        if name not in existing:
            asg.create_auto_scaling_group(
                AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateId": lt_id, "Version": "$Latest"},
                MinSize=0, MaxSize=max(max_size, phase["instances_max"]),
                DesiredCapacity=phase["instances_min"] if colour == "blue" else 0,
                VPCZoneIdentifier=",".join(subnets), TargetGroupARNs=[tgs[colour]], HealthCheckType="ELB",
                HealthCheckGracePeriod=60, Tags=[{"Key": "colour", "Value": colour, "PropagateAtLaunch": True,
                                                  "ResourceId": name, "ResourceType": "auto-scaling-group"}])
        policies = asg.describe_policies(AutoScalingGroupName=name).get("ScalingPolicies", [])
        if not policies:
            asg.put_scaling_policy(AutoScalingGroupName=name, PolicyName=f"{name}-cpu-60", PolicyType="TargetTrackingScaling",
                                   TargetTrackingConfiguration={"PredefinedMetricSpecification": {
                                       "PredefinedMetricType": "ASGAverageCPUUtilization"}, "TargetValue": 60.0})

    # Database
    db = (plan.get("components") or {}).get("database", {})
    rds_id = f"{PREFIX}-db"
    try:
        inst = rds.describe_db_instances(DBInstanceIdentifier=rds_id)["DBInstances"][0]
    except Exception:  # noqa: BLE001 - DBInstanceNotFound
        subnet_group = f"{PREFIX}-db-subnets"
        try:
            rds.create_db_subnet_group(DBSubnetGroupName=subnet_group, DBSubnetGroupDescription="FairTradeWorker database",
                                       SubnetIds=subnets)
        except Exception as exc:  # noqa: BLE001 - already exists
            log.debug("db subnet group kept: %s", exc)
        retention = int((plan.get("security") or {}).get("backups", {}).get("retention_days", 7))
        inst = rds.create_db_instance(
            DBInstanceIdentifier=rds_id, Engine="postgres", EngineVersion="15.5", DBInstanceClass=db.get("instance_class", "db.r5.large"),
            MultiAZ=bool(db.get("multi_az", True)), AllocatedStorage=int(db.get("storage_gb", 500)), StorageType="gp3",
            BackupRetentionPeriod=retention, MasterUsername="ftw", MasterUserPassword="sandbox-only-password",
            DBSubnetGroupName=subnet_group, VpcSecurityGroupIds=[sg_id], StorageEncrypted=True,
        )["DBInstance"]
    names.update(rds_instance_id=rds_id, rds_instance_class=inst.get("DBInstanceClass", "db.r5.large"))

    # Cache
    ec = make("elasticache")
    cache_id = f"{PREFIX}-cache"
    try:
        ec.describe_replication_groups(ReplicationGroupId=cache_id)
    except Exception:  # noqa: BLE001 - ReplicationGroupNotFoundFault
        ec.create_replication_group(ReplicationGroupId=cache_id, ReplicationGroupDescription="FairTradeWorker cache",
                                    Engine="redis", CacheNodeType=(plan.get("components") or {}).get("cache", {}).get("node_type", "cache.r5.large"),
                                    NumCacheClusters=2, AutomaticFailoverEnabled=True, MultiAZEnabled=True,
                                    AtRestEncryptionEnabled=True, TransitEncryptionEnabled=True)
    names["cache_replication_group_id"] = cache_id

    # Buckets
    s3 = make("s3")
    have = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    buckets = {}
    for logical in (plan.get("components") or {}).get("storage", {}).get("contents", ["photos", "videos", "documents"]):
        bucket = f"{PREFIX}-sandbox-{logical}"
        if bucket not in have:
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})  # AES-256 at rest
        buckets[logical] = bucket
    names["buckets"] = buckets

    # Secrets the security audit expects, rotated
    sm = make("secretsmanager")
    security = plan.get("security") or {}
    for secret in security.get("secret_names") or []:
        try:
            sm.describe_secret(SecretId=secret)
        except Exception:  # noqa: BLE001 - ResourceNotFoundException: create it
            sm.create_secret(Name=secret, SecretString="sandbox-only-value")
            sm.rotate_secret(SecretId=secret, RotationRules={"AutomaticallyAfterDays": int(security.get("rotation_days", 90))})
    names["secret_names"] = list(security.get("secret_names") or [])

    # Alarms
    cw = make("cloudwatch")
    for spec in alarm_specs(plan_thresholds(plan), names):
        cw.put_metric_alarm(**spec)

    # DNS: app.<domain> aliased to the load balancer
    r53 = make("route53")
    zones = [z for z in r53.list_hosted_zones().get("HostedZones", []) if z["Name"].rstrip(".") == DOMAIN]
    zone_id = zones[0]["Id"] if zones else r53.create_hosted_zone(Name=DOMAIN, CallerReference=f"{PREFIX}-zone")["HostedZone"]["Id"]
    r53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
        "Name": f"app.{DOMAIN}", "Type": "A", "AliasTarget": {
            "HostedZoneId": lb.get("CanonicalHostedZoneId") or "Z35SXDOTRQ7X7K", "DNSName": lb["DNSName"],
            "EvaluateTargetHealth": True}}}]})
    names.update(hosted_zone_id=zone_id, app_domain=f"app.{DOMAIN}")

    # CDN in front of the media buckets
    cf = make("cloudfront")
    dists = (cf.list_distributions().get("DistributionList") or {}).get("Items") or []
    mine = [d for d in dists if d.get("Comment") == f"{PREFIX}-media"]
    if mine:
        names["cloudfront_distribution_id"] = mine[0]["Id"]
    else:
        origin = f"{buckets.get('photos', PREFIX + '-sandbox-photos')}.s3.amazonaws.com"
        dist = cf.create_distribution(DistributionConfig={
            "CallerReference": f"{PREFIX}-media", "Comment": f"{PREFIX}-media", "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [{"Id": "photos", "DomainName": origin,
                                                  "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
            "DefaultCacheBehavior": {"TargetOriginId": "photos", "ViewerProtocolPolicy": "redirect-to-https",
                                     "TrustedSigners": {"Enabled": False, "Quantity": 0}, "MinTTL": 0,
                                     "ForwardedValues": {"QueryString": False, "Cookies": {"Forward": "none"}}},
        })["Distribution"]
        names["cloudfront_distribution_id"] = dist["Id"]

    # Cost Explorer: the plan's monthly table, month to date
    today = today or dt.datetime.now(dt.UTC).date()
    monthly = float(sum(float(i["monthly"]) for i in (plan.get("costs") or {}).get("items", []))) or plan_monthly_cost()
    account = make("sts").get_caller_identity()["Account"]
    SANDBOX_COSTS[account] = {"monthly": monthly}
    seed_costs(cost_results(plan, today), endpoint_url=endpoint_url)
    names["monthly_cost"] = monthly
    return names


def seed_costs(result: dict, *, endpoint_url: str | None, copies: int = 5) -> None:
    """Queue Cost Explorer answers through moto's API (the same for the server and for mock_aws)."""
    base = (endpoint_url or "http://motoapi.amazonaws.com").rstrip("/")
    resp = requests.post(f"{base}/moto-api/static/ce/cost-and-usage-results",
                         json={"results": [result] * copies}, timeout=5)
    if resp.status_code not in (200, 201):
        raise RuntimeError(f"moto refused the Cost Explorer results: {resp.status_code} {resp.text[:200]}")


# --------------------------------------------------------------------------------------------- alarms


def environment_names(env: Environment) -> dict:
    """What alarm_specs needs, from a registered environment's row."""
    return {"alb_dimension": env.alb_dimension, "blue_tg_dimension": env.blue_tg_dimension, "blue_asg": env.blue_asg,
            "rds_instance_id": env.rds_instance_id, "cache_replication_group_id": env.cache_replication_group_id}


def alarms_sync(env: Environment) -> list[str]:
    """Put the environment's CloudWatch alarms at the portal's thresholds (portal.health.thresholds), as
    they are now: called when the sandbox registers and when a threshold changes. Returns the alarm names."""
    rows = [dataclasses.asdict(t) for t in thresholds.all_thresholds()]
    cw = client(env, "cloudwatch")
    specs = alarm_specs(rows, environment_names(env))
    for spec in specs:
        cw.put_metric_alarm(**spec)
    return [spec["AlarmName"] for spec in specs]


def alarms_sync_all() -> int:
    """Every registered sandbox environment (the ones this app made: static credentials, an endpoint)."""
    done = 0
    for env in Environment.objects.filter(credentials_mode=Environment.CredentialsMode.STATIC).exclude(listener_arn=""):
        alarms_sync(env)
        done += 1
    return done


# --------------------------------------------------------------------------------------------- register

ENV_FIELDS = ("listener_arn", "load_balancer_arn", "blue_asg", "green_asg", "blue_target_group_arn", "green_target_group_arn",
              "launch_template_id", "rds_instance_id", "cache_replication_group_id", "buckets", "alb_dimension",
              "blue_tg_dimension", "green_tg_dimension")


SANDBOX_IMAGE_OWNERS = ("amazon", "self")


def register_environment(names: dict, *, endpoint_url: str, name: str = ENV_NAME, actor: Any = "system:sandbox",
                         status_port: int | None = None):
    """Create or update the sandbox Environment row with the built resources (audited)."""
    values = {k: names[k] for k in ENV_FIELDS}
    values.update(region=names.get("region", "us-east-1"), credentials_mode=Environment.CredentialsMode.STATIC,
                  endpoint_url=endpoint_url, metrics_source=Environment.MetricsSource.CLOUDWATCH, is_production=False,
                  description="Local AWS sandbox (moto) with the traffic simulator")
    with transaction.atomic():
        env = Environment.objects.select_for_update().filter(name=name).first()
        audited = (*values, "approved_image_owners", "approved_image_ids")
        before = {k: getattr(env, k) for k in audited} if env else None
        if env is None:
            env = Environment(name=name)
        for k, v in values.items():
            setattr(env, k, v)
        if not (env.approved_image_owners or env.approved_image_ids):
            # The sandbox's launch template boots one of moto's Amazon images; images made in it belong to
            # moto's account ("self"). Seeded once: a lead's later change of the list is kept.
            env.approved_image_owners = list(SANDBOX_IMAGE_OWNERS)
        env.save()
        # A new moto server starts empty: instance ids and counters of the old one mean nothing now.
        SimulatorState.objects.update_or_create(environment=env, defaults={
            "unhealthy": {}, "outages": {}, "data": {}, "ticks": 0, "last_tick_at": None, "status_port": status_port})
        after = {k: getattr(env, k) for k in audited}
        if before != after:
            audit_record(actor=actor, verb="environment.register", target=env, before=before, after=after,
                         extra={"source": "sandbox"})
        # Its endpoints (moto, the status pages) are on 127.0.0.1: only this environment may reach them.
        outbound_policy_set(environment=env, allow_private_targets=True, actor=actor)
        service_checks_point_at(env, actor=actor)
    reset_cache()
    return env


CLOUDFLARE_FIELDS = ("dns_provider", "cdn_provider", "storage_provider", "cloudflare_zone", "cloudflare_account_id",
                     "cloudflare_base_url")


def register_cloudflare(env: Environment, *, base_url: str, account_id: str, token: str, zone: str = DOMAIN,
                        actor: Any = "system:sandbox") -> Environment:
    """Put CloudFlare in front of the sandbox as the plan does: DNS, CDN and storage from it (audited)."""
    values = {"dns_provider": Environment.Provider.CLOUDFLARE, "cdn_provider": Environment.Provider.CLOUDFLARE,
              "storage_provider": Environment.Provider.CLOUDFLARE, "cloudflare_zone": zone,
              "cloudflare_account_id": account_id, "cloudflare_base_url": base_url}
    with transaction.atomic():
        env = Environment.objects.select_for_update().get(pk=env.pk)
        before = {k: getattr(env, k) for k in CLOUDFLARE_FIELDS}
        for k, v in values.items():
            setattr(env, k, v)
        env.cloudflare_api_token = token
        env.save()
        after = {k: getattr(env, k) for k in CLOUDFLARE_FIELDS}
        if before != after:
            audit_record(actor=actor, verb="environment.register", target=env, before=before, after=after,
                         extra={"source": "sandbox", "part": "cloudflare"})
    return env
