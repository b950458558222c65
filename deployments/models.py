"""Releases, rollouts (blue-green and canary), rollbacks and scale actions per environment.

The environment row (portal.cloud.Environment) is the aggregate root: every change of listener
weights or capacity happens under `select_for_update` on it (see mechanics.lock_environment).
The database also enforces one active deployment and one active rollback per environment.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from portal.cloud.models import Colour


def other_colour(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


class AnalysisTemplate(models.Model):
    """How a rollout's holds are judged (Argo Rollouts' AnalysisTemplate, Flagger's analysis): data, not code.

    Every `interval_seconds` through a hold and the watch window, one run over the evidence since the
    hold began: a critical breach fails at once; a run that finds the new colour worse counts as failed
    and `failure_limit` failed runs fail the step; the error counts are compared with a one-sided
    Fisher exact test at `alpha`, and a step passes once the new colour's error rate is, at that
    confidence, below `pass_error_rate_pct` with no significant excess over the old colour.
    """

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    interval_seconds = models.PositiveIntegerField(default=30, help_text="Seconds between analysis runs")
    failure_limit = models.PositiveSmallIntegerField(default=2, help_text="Failed runs that fail the step")
    min_requests = models.PositiveIntegerField(
        default=20, help_text="Requests the new colour must serve before a run can pass (minimum evidence)")
    alpha = models.FloatField(default=0.01, help_text="One-sided significance of each run's test (its false-alarm rate per run)")
    pass_confidence = models.FloatField(default=0.9, help_text="Confidence that the new colour is below the pass bound")
    pass_error_rate_pct = models.FloatField(
        null=True, blank=True, help_text="A step passes once the new colour's error rate is below this at 1 - alpha "
                                         "confidence; empty = the critical error-rate threshold")
    error_margin_pct = models.FloatField(
        default=1.0, help_text="Percentage points the new colour's error rate may exceed the old colour's")
    latency_margin_pct = models.FloatField(default=25.0, help_text="Percent the new colour's P95 may exceed the old colour's")
    max_extension_seconds = models.PositiveIntegerField(
        default=300, help_text="How long an inconclusive hold is extended before it pauses once with the numbers")
    metrics = models.JSONField(default=list, blank=True, help_text=(
        'Extra metrics, each {"name", "metric" (a portal metric) or "promql" or "cloudwatch" (a MetricStat), '
        '"comparison": "absolute"|"baseline", "max" (absolute) or "margin_pct" (baseline)}'))
    rollback_alarms = models.JSONField(default=list, blank=True, help_text=(
        "CloudWatch alarm names (shell patterns) whose ALARM state during the rollout rolls it back"))
    false_alarm_rate = models.FloatField(null=True, blank=True, help_text="Simulated share of clean steps this template fails")
    false_alarm_note = models.CharField(max_length=200, blank=True)
    seeded_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.CheckConstraint(condition=Q(alpha__gt=0) & Q(alpha__lt=0.5), name="template_alpha_range"),
            models.CheckConstraint(condition=Q(interval_seconds__gte=1), name="template_interval_positive"),
            models.CheckConstraint(condition=Q(pass_confidence__gt=0.5) & Q(pass_confidence__lt=1), name="template_confidence_range"),
        ]

    def __str__(self) -> str:
        return self.name


class Strategy(models.Model):
    """How a release reaches traffic: the weight steps, how long each is held, the analysis rules."""

    class Kind(models.TextChoices):
        BLUE_GREEN = "blue_green", "Blue-green"
        CANARY = "canary", "Canary"

    slug = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    description = models.TextField(blank=True)
    weights = models.JSONField(help_text="Percent of traffic on the new colour at each step, e.g. [5, 25, 50, 100]")
    hold_seconds = models.JSONField(help_text="Seconds to hold and watch after each step (same length as weights)")
    watch_seconds = models.PositiveIntegerField(default=600, help_text="Watch window at 100 % before the old colour scales down")
    template = models.ForeignKey(AnalysisTemplate, on_delete=models.PROTECT, related_name="strategies",
                                 help_text="How each hold and the watch window are judged")
    prepare_timeout_seconds = models.PositiveIntegerField(default=600)
    seeded_hash = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["slug"]
        verbose_name_plural = "strategies"
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["blue_green", "canary"]), name="strategy_kind_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def steps(self) -> list[tuple[int, int]]:
        """(weight on the new colour, hold seconds) per step."""
        holds = list(self.hold_seconds or [])
        return [(int(w), int(holds[i]) if i < len(holds) else 0) for i, w in enumerate(self.weights or [])]

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        problems = self.validate_steps()
        if problems:
            raise ValidationError("; ".join(problems))

    def validate_steps(self) -> list[str]:
        problems = []
        weights = list(self.weights or [])
        if not weights:
            problems.append("a strategy needs at least one weight step")
        if any(not isinstance(w, int) or not 0 < w <= 100 for w in weights):
            problems.append("weights must be whole percentages between 1 and 100")
        if weights and weights[-1] != 100:
            problems.append("the last step must put 100 % on the new colour")
        if any(b <= a for a, b in zip(weights, weights[1:], strict=False)):
            problems.append("weights must increase step by step")
        if len(self.hold_seconds or []) != len(weights):
            problems.append("hold_seconds needs one entry per weight")
        return problems


class Release(models.Model):
    """A version of the platform and what to launch for it on an environment."""

    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="releases")
    version = models.CharField(max_length=100)
    launch_template_version = models.CharField(max_length=20, blank=True, help_text="e.g. 7 or $Latest")
    image_id = models.CharField(max_length=40, blank=True, help_text="AMI id, e.g. ami-0abc...")
    notes = models.CharField(max_length=500, blank=True)
    created_by_label = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "version"], name="release_unique_env_version"),
            models.CheckConstraint(
                condition=~Q(launch_template_version="") | ~Q(image_id=""), name="release_has_something_to_launch"),
        ]

    def __str__(self) -> str:
        return self.version


class DeploymentState(models.TextChoices):
    PENDING = "pending", "Pending"
    PREPARING = "preparing", "Preparing the idle colour"
    SMOKE = "smoke", "Smoke checks"
    SHIFTING = "shifting", "Shifting traffic"
    HOLDING = "holding", "Holding and analysing"
    PAUSED = "paused", "Paused"
    WATCHING = "watching", "Watching at 100 %"
    SCALING_DOWN = "scaling_down", "Scaling the old colour down"
    ROLLING_BACK = "rolling_back", "Rolling back"
    COMPLETED = "completed", "Completed"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"
    ABORTED = "aborted", "Aborted"


ACTIVE_DEPLOYMENT_STATES = [
    DeploymentState.PENDING, DeploymentState.PREPARING, DeploymentState.SMOKE, DeploymentState.SHIFTING,
    DeploymentState.HOLDING, DeploymentState.PAUSED, DeploymentState.WATCHING, DeploymentState.SCALING_DOWN,
    DeploymentState.ROLLING_BACK,
]
# States the rollout driver moves forward by itself (rolling_back belongs to the rollback task).
DRIVEN_STATES = [s for s in ACTIVE_DEPLOYMENT_STATES if s not in (DeploymentState.PAUSED, DeploymentState.ROLLING_BACK)]


class Deployment(models.Model):
    """A release taken to the idle colour with a strategy; a state machine driven by Celery tasks."""

    State = DeploymentState

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="deployments")
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="deployments")
    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="deployments")
    from_colour = models.CharField(max_length=5, choices=Colour.choices)
    to_colour = models.CharField(max_length=5, choices=Colour.choices)
    state = models.CharField(max_length=14, choices=DeploymentState.choices, default=DeploymentState.PENDING)
    step_index = models.SmallIntegerField(default=-1, help_text="-1 before the first weight step")
    weights = models.JSONField(default=dict, blank=True, help_text="Listener weights as last read back")
    target_capacity = models.PositiveSmallIntegerField(null=True, blank=True)
    baseline = models.JSONField(default=dict, blank=True, help_text="The old colour's metrics before the rollout")
    smoke_note = models.CharField(max_length=300, blank=True)
    paused_from = models.CharField(max_length=14, blank=True)
    pause_reason = models.CharField(max_length=300, blank=True)
    failure_reason = models.CharField(max_length=500, blank=True)
    wake_at = models.DateTimeField(null=True, blank=True, help_text="When the driver next has something to do")
    state_entered_at = models.DateTimeField(null=True, blank=True)
    progressed_at = models.DateTimeField(null=True, blank=True, help_text="Last time a step made progress (watchdog)")
    stall_alerted_at = models.DateTimeField(null=True, blank=True)
    hold_started_at = models.DateTimeField(null=True, blank=True, help_text="Start of the current hold's evidence (kept across a pause)")
    next_analysis_at = models.DateTimeField(null=True, blank=True)
    failed_runs = models.PositiveSmallIntegerField(default=0, help_text="Failed analysis runs of the current hold")
    hold_extended_until = models.DateTimeField(null=True, blank=True, help_text="An inconclusive hold runs on until then")
    inconclusive_paused = models.BooleanField(default=False, help_text="This hold already paused once as inconclusive")
    freeze_override_reason = models.CharField(max_length=300, blank=True, help_text="Why a lead started it inside a freeze")
    incident = models.ForeignKey("incidents.Incident", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_by_label = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    switched_at = models.DateTimeField(null=True, blank=True, help_text="New colour reached 100 %")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One rollout at a time per environment, whatever the callers do.
            models.UniqueConstraint(
                fields=["environment"], condition=Q(state__in=ACTIVE_DEPLOYMENT_STATES), name="deployment_one_active_per_env"),
            models.CheckConstraint(condition=~Q(from_colour=F("to_colour")), name="deployment_colours_differ"),
        ]
        indexes = [
            # the driver and the watchdog: active deployments whose wake time has come
            models.Index(fields=["state", "wake_at"], name="deployment_state_wake_idx"),
            # the history list and "latest deployment of this environment"
            models.Index(fields=["environment", "-created_at"], name="deployment_env_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.release} to {self.to_colour} on {self.environment}"

    def get_absolute_url(self) -> str:
        return f"/deployments/{self.public_id}/"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_DEPLOYMENT_STATES

    @property
    def total_steps(self) -> int:
        return len(self.strategy.weights or [])

    @property
    def current_weight(self) -> int:
        return int((self.weights or {}).get(self.to_colour, 0))

    @property
    def progress_percent(self) -> int:
        """Through prepare, smoke, each weight step, watch and scale-down."""
        phases = 2 + self.total_steps + 2
        done = {
            DeploymentState.PENDING: 0, DeploymentState.PREPARING: 0, DeploymentState.SMOKE: 1,
            DeploymentState.WATCHING: 2 + self.total_steps, DeploymentState.SCALING_DOWN: 3 + self.total_steps,
            DeploymentState.COMPLETED: phases,
        }.get(self.state)
        if done is None:
            done = 2 + max(self.step_index, 0) + (1 if self.state == DeploymentState.HOLDING else 0)
        return max(0, min(100, round(100 * done / phases)))


class DeploymentEvent(models.Model):
    """The timeline of a deployment: every step, weight read-back, analysis, action."""

    class Kind(models.TextChoices):
        STATE = "state", "State"
        STEP = "step", "Step"
        WEIGHTS = "weights", "Weights"
        ANALYSIS = "analysis", "Analysis"
        SMOKE = "smoke", "Smoke check"
        SCALE = "scale", "Scale"
        ACTION = "action", "Action"
        ROLLBACK = "rollback", "Rollback"
        ERROR = "error", "Error"
        NOTE = "note", "Note"

    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    rollback = models.ForeignKey("Rollback", null=True, blank=True, on_delete=models.CASCADE, related_name="events")
    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    message = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    actor_label = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [
            # a deployment's timeline, in order
            models.Index(fields=["deployment", "at"], name="depevent_deployment_at_idx"),
            # a rollback's timeline
            models.Index(fields=["rollback", "at"], name="depevent_rollback_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind}: {self.message}"


class Analysis(models.Model):
    """One analysis at a hold: the numbers and the decision."""

    class Decision(models.TextChoices):
        PASS = "pass", "Pass"
        FAIL = "fail", "Fail"
        CRITICAL = "critical", "Critical (fails at once)"
        INCONCLUSIVE = "inconclusive", "Inconclusive"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="analyses")
    at = models.DateTimeField()
    step_index = models.SmallIntegerField()
    weight = models.PositiveSmallIntegerField()
    window_minutes = models.PositiveSmallIntegerField()
    decision = models.CharField(max_length=12, choices=Decision.choices)
    new_error_rate = models.FloatField(null=True, blank=True)
    old_error_rate = models.FloatField(null=True, blank=True)
    new_p95 = models.FloatField(null=True, blank=True)
    old_p95 = models.FloatField(null=True, blank=True)
    new_requests = models.FloatField(null=True, blank=True)
    old_requests = models.FloatField(null=True, blank=True)
    new_errors = models.FloatField(null=True, blank=True)
    old_errors = models.FloatField(null=True, blank=True)
    p_value = models.FloatField(null=True, blank=True, help_text="One-sided Fisher exact test: new colour's errors above the old's")
    new_error_upper = models.FloatField(null=True, blank=True, help_text="Upper confidence bound of the new colour's error rate (%)")
    window_started_at = models.DateTimeField(null=True, blank=True)
    watching = models.BooleanField(default=False)
    template_slug = models.CharField(max_length=50, blank=True)
    thresholds = models.JSONField(default=dict, blank=True, help_text="The limits this run used")
    extra = models.JSONField(default=dict, blank=True, help_text="The template's extra metrics, as read")
    reasons = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["deployment", "at"], name="analysis_deployment_at_idx")]

    def __str__(self) -> str:
        return f"{self.decision} at {self.weight} %"


class RollbackState(models.TextChoices):
    REQUESTED = "requested", "Requested"
    SCALING_UP = "scaling_up", "Scaling the old colour up"
    SWITCHING = "switching", "Switching traffic"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


ACTIVE_ROLLBACK_STATES = [RollbackState.REQUESTED, RollbackState.SCALING_UP, RollbackState.SWITCHING]


class Rollback(models.Model):
    """Traffic back to the previous colour. One at a time per environment (database constraint)."""

    State = RollbackState

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="rollbacks")
    deployment = models.ForeignKey(Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="rollbacks")
    from_colour = models.CharField(max_length=5, choices=Colour.choices)
    to_colour = models.CharField(max_length=5, choices=Colour.choices)
    state = models.CharField(max_length=12, choices=RollbackState.choices, default=RollbackState.REQUESTED)
    automatic = models.BooleanField(default=False)
    reason = models.CharField(max_length=500, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    requested_by_label = models.CharField(max_length=150)
    needed_capacity = models.PositiveSmallIntegerField(default=0)
    scaled_up = models.BooleanField(default=False, help_text="The old colour had to be scaled up first")
    weights_before = models.JSONField(default=dict, blank=True)
    weights_after = models.JSONField(default=dict, blank=True)
    error = models.CharField(max_length=500, blank=True)
    requested_at = models.DateTimeField()
    capacity_ready_at = models.DateTimeField(null=True, blank=True)
    switched_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    polled_at = models.DateTimeField(null=True, blank=True, help_text="Last pass of the rollback task (the driver restarts stale ones)")

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [
            # Two clicks, two people or a click racing the automatic rollback: one rollback.
            models.UniqueConstraint(
                fields=["environment"], condition=Q(state__in=ACTIVE_ROLLBACK_STATES), name="rollback_one_active_per_env"),
        ]
        indexes = [
            # the driver: active rollbacks
            models.Index(fields=["state"], name="rollback_state_idx"),
        ]

    def __str__(self) -> str:
        return f"rollback to {self.to_colour} on {self.environment}"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_ROLLBACK_STATES

    def seconds(self, field: str) -> float | None:
        value = getattr(self, field)
        return None if value is None else round((value - self.requested_at).total_seconds(), 2)


class ScaleAction(models.Model):
    """A change of a colour's desired capacity: who asked, who approved, what AWS read back."""

    class State(models.TextChoices):
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting a lead's approval"
        APPLIED = "applied", "Applied"
        DRY_RUN = "dry_run", "Dry run (recorded only)"
        FAILED = "failed", "Failed"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="scale_actions")
    colour = models.CharField(max_length=5, choices=Colour.choices)
    from_desired = models.PositiveSmallIntegerField()
    to_desired = models.PositiveSmallIntegerField()
    reason = models.CharField(max_length=500)
    state = models.CharField(max_length=18, choices=State.choices)
    automatic = models.BooleanField(default=False)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    requested_by_label = models.CharField(max_length=150)
    approved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    approved_by_label = models.CharField(max_length=150, blank=True)
    read_back = models.JSONField(default=dict, blank=True, help_text="desired/min/max as AWS reported after the change")
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField()
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # the cooldown: the last applied action of this colour
            models.Index(fields=["environment", "colour", "state", "-created_at"], name="scale_cooldown_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.colour} {self.from_desired}->{self.to_desired} on {self.environment}"


class AutoscaleState(models.Model):
    """Since when a colour has been hot or idle (so 'for a set time' survives worker restarts)."""

    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="+")
    colour = models.CharField(max_length=5, choices=Colour.choices)
    high_since = models.DateTimeField(null=True, blank=True)
    low_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["environment", "colour"], name="autoscale_state_unique")]

    def __str__(self) -> str:
        return f"{self.environment} {self.colour}"


class AutoscaleDecision(models.Model):
    """One evaluation of the automatic scaler, with the numbers behind it."""

    class Decision(models.TextChoices):
        SCALE_OUT = "scale_out", "Scale out"
        SCALE_IN = "scale_in", "Scale in"
        HOLD = "hold", "No change"
        COOLDOWN = "cooldown", "In cooldown"
        ROLLOUT = "rollout", "Rollout in progress"
        AT_MAX = "at_max", "At the phase maximum: a lead was paged"
        PAUSED = "paused", "Automation paused"
        DRY_RUN = "dry_run", "Dry run"
        NO_DATA = "no_data", "No metrics"

    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="+")
    colour = models.CharField(max_length=5, choices=Colour.choices)
    at = models.DateTimeField()
    decision = models.CharField(max_length=10, choices=Decision.choices)
    cpu = models.FloatField(null=True, blank=True)
    requests_per_instance = models.FloatField(null=True, blank=True)
    desired = models.PositiveSmallIntegerField(default=0)
    new_desired = models.PositiveSmallIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=300)
    numbers = models.JSONField(default=dict, blank=True)
    scale_action = models.ForeignKey(ScaleAction, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            # the page's "recent decisions" per environment
            models.Index(fields=["environment", "-at"], name="autoscale_env_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.decision} {self.colour} at {self.at:%H:%M:%S}"


class FreezeWindow(models.Model):
    """No deployments on an environment in this window (rollbacks always run); one-off or recurring (RRULE)."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    environment = models.ForeignKey("cloud.Environment", on_delete=models.CASCADE, related_name="freezes")
    starts_at = models.DateTimeField(help_text="The first (or only) window's start")
    ends_at = models.DateTimeField(help_text="The first (or only) window's end")
    rrule = models.CharField(max_length=300, blank=True, help_text="RFC 5545 recurrence, e.g. FREQ=WEEKLY;BYDAY=FR; empty = once")
    reason = models.CharField(max_length=300)
    created_by_label = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Lifted early")

    class Meta:
        ordering = ["starts_at", "id"]
        constraints = [models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="freeze_ends_after_start")]

    def __str__(self) -> str:
        return f"freeze on {self.environment}: {self.reason}"
