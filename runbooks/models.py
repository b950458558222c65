"""Runbooks (one YAML file each, versioned by content hash), runs pinned to a version, step outcomes."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Runbook(models.Model):
    """A runbook as known from its file under runbooks/library/; its steps live in its versions."""

    slug = models.SlugField(max_length=80, unique=True)
    title = models.CharField(max_length=200)
    summary = models.TextField(blank=True)
    source_file = models.CharField(max_length=300, help_text="Path of the YAML file, relative to the library")
    current_version = models.ForeignKey(
        "RunbookVersion", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_load_error = models.TextField(blank=True, help_text="Why the last load of the file failed (old version kept)")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return f"/runbooks/{self.slug}/"


class RunbookVersion(models.Model):
    """One loaded content of a runbook file. Runs point here, so editing a file never changes a run."""

    runbook = models.ForeignKey(Runbook, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64)
    source_text = models.TextField()
    # The validated, normalised definition: {"title", "summary", "alerts", "environment_required", "steps": [...]}.
    definition = models.JSONField()
    loaded_at = models.DateTimeField(auto_now_add=True)
    loaded_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["runbook", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["runbook", "number"], name="runbook_version_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.runbook.slug} v{self.number}"

    @property
    def steps(self) -> list[dict]:
        return self.definition.get("steps", [])

    def step(self, step_id: str) -> dict | None:
        for s in self.steps:
            if s["id"] == step_id:
                return s
        return None


class RunStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    ABANDONED = "abandoned", "Abandoned"


class RunbookRun(models.Model):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    version = models.ForeignKey(RunbookVersion, on_delete=models.PROTECT, related_name="runs")
    incident = models.ForeignKey(
        "incidents.Incident", null=True, blank=True, on_delete=models.SET_NULL, related_name="runbook_runs"
    )
    environment = models.ForeignKey(
        "cloud.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="runbook_runs"
    )
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="runbook_runs"
    )
    started_by_label = models.CharField(max_length=150)
    status = models.CharField(max_length=12, choices=RunStatus.choices, default=RunStatus.RUNNING)
    # The latest value each check step showed ({step_id: reading}); saved as evidence when the step is marked.
    readings = models.JSONField(default=dict, blank=True)
    # Set while an action step's action runs, so a second click cannot start it twice.
    claimed_step = models.CharField(max_length=80, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    abandon_reason = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            # "last used" per runbook on the library page and the runs list of a runbook
            models.Index(fields=["version", "-started_at"], name="run_version_started_idx"),
            # runs of an incident, shown on the incident page
            models.Index(fields=["incident", "-started_at"], name="run_incident_started_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status="running", finished_at__isnull=True)
                | (~models.Q(status="running") & models.Q(finished_at__isnull=False)),
                name="run_finished_at_matches_status",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} run {self.public_id}"

    def get_absolute_url(self) -> str:
        return f"/runbooks/runs/{self.public_id}/"

    @property
    def runbook(self) -> Runbook:
        return self.version.runbook


class OutcomeStatus(models.TextChoices):
    DONE = "done", "Done"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class StepOutcome(models.Model):
    run = models.ForeignKey(RunbookRun, on_delete=models.CASCADE, related_name="outcomes")
    step_id = models.CharField(max_length=80)
    position = models.PositiveIntegerField(help_text="Order in which the run reached this step")
    status = models.CharField(max_length=10, choices=OutcomeStatus.choices)
    note = models.TextField(blank=True)
    answer = models.CharField(max_length=80, blank=True, help_text="The chosen answer's id, for decision steps")
    evidence = models.JSONField(default=dict, blank=True, help_text="What the step showed (check data, action result)")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    actor_label = models.CharField(max_length=150)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "position"]
        constraints = [
            # One outcome a step: a second click (or a second responder) finds the first one.
            models.UniqueConstraint(fields=["run", "step_id"], name="step_outcome_once_per_step"),
            models.CheckConstraint(
                condition=~models.Q(status="skipped") | ~models.Q(note=""),
                name="step_outcome_skip_needs_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.step_id}: {self.status}"
