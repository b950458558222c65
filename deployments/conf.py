"""The deployments app's knobs: settings.DEPLOYMENTS_<NAME> overrides each default.

Tests turn the waits down (hold, poll, timeouts) through the `settings` fixture; production keeps these.
"""

from __future__ import annotations

from django.conf import settings

DEFAULTS: dict[str, object] = {
    # After a weight change the listener is read back; this many tries, this far apart.
    "WEIGHT_READBACK_ATTEMPTS": 6,
    "WEIGHT_READBACK_DELAY": 0.25,
    # The rollout driver: how often a waiting step is looked at again (and the beat interval).
    "POLL_SECONDS": 2.0,
    "DRIVE_EVERY_SECONDS": 2,
    # A rollback task keeps polling in-process this long before handing over to a fresh task.
    "ROLLBACK_POLL_SECONDS": 0.5,
    "ROLLBACK_TASK_BUDGET_SECONDS": 90.0,
    # How long a rollback waits for the old colour's healthy targets before it settles for the phase minimum.
    "ROLLBACK_CAPACITY_TIMEOUT_SECONDS": 300,
    # Manual scale actions of one colour at most this often; the automatic scaler has its own.
    "SCALE_COOLDOWN_SECONDS": 60,
    "AUTOSCALE_COOLDOWN_SECONDS": 300,
    "AUTOSCALE_HIGH_SECONDS": 120,   # CPU above the warning this long -> scale out
    "AUTOSCALE_LOW_SECONDS": 600,    # CPU below AUTOSCALE_LOW_CPU this long -> scale in
    "AUTOSCALE_LOW_CPU": 30.0,
    "AUTOSCALE_STEP": 1,
    "AUTOSCALE_REQUESTS_PER_INSTANCE": 25.0,  # measured capacity (requests/second an instance serves well)
    "AUTOSCALE_EVERY_SECONDS": 30,
    # The watchdog: a rollout step with no progress for this long past its wake time raises an alert.
    "STALL_SECONDS": 300,
    "WATCHDOG_EVERY_SECONDS": 60,
    # Smoke checks: per-environment URL templates ({colour} is replaced), e.g. https://{colour}.staging.example.com/healthz
    "SMOKE_URLS": {},
    "SMOKE_TIMEOUT_SECONDS": 5.0,
    # An analysis template's false-alarm rate: this many simulated clean steps at this traffic (requests/s).
    "SIMULATION_TRIALS": 400,
    "SIMULATION_RPS": 10.0,
}


def get(name: str):
    return getattr(settings, f"DEPLOYMENTS_{name}", DEFAULTS[name])
