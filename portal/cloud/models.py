from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from portal.cloud.fields import EncryptedTextField

COLOURS = ("blue", "green")


class Colour(models.TextChoices):
    BLUE = "blue", "Blue"
    GREEN = "green", "Green"


class EnvironmentQuerySet(models.QuerySet):
    def get_default(self) -> Environment:
        return self.get(name=settings.DEFAULT_ENVIRONMENT)  # type: ignore[return-value]


class Environment(models.Model):
    """An AWS account/region the portal manages and the platform's resources in it."""

    class CredentialsMode(models.TextChoices):
        DEFAULT_CHAIN = "default", "Default credential chain"
        PROFILE = "profile", "Named profile"
        ROLE = "role", "Assume role (with external id)"
        STATIC = "static", "Static test keys (sandbox only)"

    class MetricsSource(models.TextChoices):
        CLOUDWATCH = "cloudwatch", "CloudWatch"
        PROMETHEUS = "prometheus", "Prometheus"

    class Provider(models.TextChoices):
        AWS = "aws", "AWS (Route 53, CloudFront, S3)"
        CLOUDFLARE = "cloudflare", "CloudFlare (DNS, CDN, R2)"

    name = models.SlugField(max_length=50, unique=True)
    description = models.CharField(max_length=200, blank=True)
    is_production = models.BooleanField(default=False)
    region = models.CharField(max_length=30, default="us-east-1")
    credentials_mode = models.CharField(max_length=10, choices=CredentialsMode.choices, default=CredentialsMode.DEFAULT_CHAIN)
    profile = models.CharField(max_length=100, blank=True)
    role_arn = models.CharField(max_length=200, blank=True)
    external_id = EncryptedTextField(blank=True)
    endpoint_url = models.CharField(max_length=200, blank=True, help_text="Only for the local sandbox, e.g. http://127.0.0.1:4566")

    listener_arn = models.CharField(max_length=300, blank=True)
    load_balancer_arn = models.CharField(max_length=300, blank=True)
    blue_asg = models.CharField(max_length=200, blank=True)
    green_asg = models.CharField(max_length=200, blank=True)
    blue_target_group_arn = models.CharField(max_length=300, blank=True)
    green_target_group_arn = models.CharField(max_length=300, blank=True)
    launch_template_id = models.CharField(max_length=100, blank=True)
    rds_instance_id = models.CharField(max_length=100, blank=True)
    cache_replication_group_id = models.CharField(max_length=100, blank=True)
    buckets = models.JSONField(default=dict, blank=True, help_text='{"photos": "bucket-name", ...}')
    # CloudWatch dimensions: LoadBalancer "app/name/id", TargetGroup "targetgroup/name/id".
    alb_dimension = models.CharField(max_length=200, blank=True)
    blue_tg_dimension = models.CharField(max_length=200, blank=True)
    green_tg_dimension = models.CharField(max_length=200, blank=True)
    platform_namespace = models.CharField(max_length=100, default="FairTradeWorker/Platform")

    metrics_source = models.CharField(max_length=12, choices=MetricsSource.choices, default=MetricsSource.CLOUDWATCH)
    prometheus_url = models.CharField(max_length=200, blank=True)
    # metric name -> PromQL with $colour (a regex: the colour, or .+ for all) and $window (e.g. 5m);
    # missing metrics use portal.cloud.metrics.DEFAULT_PROMQL.
    prometheus_queries = models.JSONField(default=dict, blank=True)

    # Who serves DNS, the CDN and object storage (the plan puts CloudFlare in front of the load balancer).
    dns_provider = models.CharField(max_length=12, choices=Provider.choices, default=Provider.AWS)
    cdn_provider = models.CharField(max_length=12, choices=Provider.choices, default=Provider.AWS)
    storage_provider = models.CharField(max_length=12, choices=Provider.choices, default=Provider.AWS)
    cloudflare_zone = models.CharField(max_length=200, blank=True, help_text="The zone's name, e.g. fairtradeworker.com")
    cloudflare_account_id = models.CharField(max_length=64, blank=True, help_text="The account that owns the R2 buckets")
    cloudflare_api_token = EncryptedTextField(blank=True)
    cloudflare_base_url = models.CharField(max_length=200, blank=True, help_text="Empty for CloudFlare's API; the local sandbox names its stand-in")
    # Grafana's HTTP API (dashboards for the plan's targets); empty: dashboards are signed off by people only.
    grafana_url = models.CharField(max_length=200, blank=True)
    grafana_token = EncryptedTextField(blank=True)

    # Deployments launch only approved images (deployments.images): an image whose id is listed, or
    # whose owner is (a 12-digit account id, "self" for this account, "amazon", "aws-marketplace").
    # Both empty: nothing is approved. Changed by a lead through deployments.services, audited.
    approved_image_owners = models.JSONField(default=list, blank=True, help_text='["self", "123456789012", "amazon"]')
    approved_image_ids = models.JSONField(default=list, blank=True, help_text='["ami-0123456789abcdef0"]')

    automation_paused = models.BooleanField(default=False)
    automation_paused_reason = models.CharField(max_length=200, blank=True)
    dry_run = models.BooleanField(default=False, help_text="Automatic actions are recorded, not carried out")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EnvironmentQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return f"/environments/{self.name}/"

    def asg_name(self, colour: str) -> str:
        return {"blue": self.blue_asg, "green": self.green_asg}[colour]

    def target_group_arn(self, colour: str) -> str:
        return {"blue": self.blue_target_group_arn, "green": self.green_target_group_arn}[colour]

    def tg_dimension(self, colour: str) -> str:
        return {"blue": self.blue_tg_dimension, "green": self.green_tg_dimension}[colour]


class Drill(models.Model):
    """A fault injected into the sandbox for a while (the simulator reads the active ones)."""

    class Kind(models.TextChoices):
        ERROR_RATE = "error-rate", "Error rate on one colour"
        LATENCY = "latency", "Latency on one colour"
        CPU = "cpu", "CPU saturation"
        DB_CONNECTIONS = "db-connections", "Database connections near the limit"
        CACHE_HIT_RATIO = "cache-hit-ratio", "Cache hit ratio drop"
        UNHEALTHY_INSTANCE = "unhealthy-instance", "An unhealthy instance"
        SERVICE_OUTAGE = "service-outage", "External service outage"
        COST_SPIKE = "cost-spike", "Cost spike (Cost Explorer's month to date jumps)"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="drills")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    colour = models.CharField(max_length=5, choices=Colour.choices, blank=True)
    level = models.FloatField(null=True, blank=True, help_text="Strength: percent for rates, seconds for latency")
    target = models.CharField(max_length=50, blank=True, help_text="Service slug for service-outage")
    seed = models.IntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)
    ends_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    started_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # the simulator's "active drills of this environment" on every tick
            models.Index(fields=["environment", "stopped_at", "ends_at"], name="drill_active_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.colour or ''} on {self.environment}"


class SimulatorState(models.Model):
    """The sandbox simulator's truth that moto lacks (target health, outages, counters).

    Kept in the database so the sandbox process, the web and the workers see the same state.
    """

    environment = models.OneToOneField(Environment, on_delete=models.CASCADE, related_name="simulator_state")
    # instance id -> {"drill": id, "colour": ..., "since": iso}: targets failing their health checks
    unhealthy = models.JSONField(default=dict, blank=True)
    # service slug -> {"drill": id, "description": ...}: the fake status pages report an outage
    outages = models.JSONField(default=dict, blank=True)
    # running totals and the last values written (users, bucket bytes, per-colour requests)
    data = models.JSONField(default=dict, blank=True)
    ticks = models.PositiveIntegerField(default=0)
    last_tick_at = models.DateTimeField(null=True, blank=True)
    status_port = models.PositiveIntegerField(null=True, blank=True, help_text="Port of the fake status pages")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"simulator state of {self.environment}"
