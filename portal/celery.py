"""The Celery app: JSON only, late acks, explicit queues, bounded publish retries."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

from portal import broker

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
broker.install()  # filesystem:// uses atomic writes (see portal/broker.py)

app = Celery("portal")
app.config_from_object("django.conf:settings", namespace="CELERY")

_default = Exchange("default", type="direct")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="default",
    task_queues=(
        Queue("default", _default, routing_key="default"),
        Queue("polling", _default, routing_key="polling"),
        Queue("actions", _default, routing_key="actions"),
    ),
    task_default_exchange="default",
    task_default_routing_key="default",
    # Apps route their own tasks with @shared_task(queue=...); this catches names by prefix.
    task_routes={
        "portal.health.tasks.*": {"queue": "polling", "routing_key": "polling"},
        "deployments.tasks.*": {"queue": "actions", "routing_key": "actions"},
    },
    # A dead broker must never hang a web request: a couple of quick retries, then the
    # caller gets an exception (and the outbox keeps the work).
    task_publish_retry=True,
    task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5},
    broker_connection_timeout=2,
    broker_connection_retry_on_startup=True,
    broker_channel_error_retry=True,
    worker_send_task_events=False,
    task_track_started=True,
    # Tasks that store no result (the intake path: its rows are the record) still store a failure.
    task_store_errors_even_if_ignored=True,
    timezone="UTC",
)
app.autodiscover_tasks()


@app.task(name="portal.ping")
def ping(value: str = "pong") -> str:
    """Round-trip probe for the broker and the worker (used by tests and /readyz checks)."""
    return value
