"""Readiness probes for the database and the broker, each bounded in time."""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings
from django.db import connection


def check_database() -> str | None:
    """None when the database answers, else the reason in words."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        try:
            connection.close()
        except Exception:  # noqa: BLE001,S110
            pass
        return f"database unreachable: {exc.__class__.__name__}: {str(exc).strip()[:200]}"
    return None


def check_broker(timeout: float = 1.5) -> str | None:
    url = settings.CELERY_BROKER_URL
    if url.startswith("memory://"):
        return None
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        if folder.is_dir() and os.access(folder, os.W_OK):
            return None
        return f"broker folder {folder} is missing or not writable"
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        client.ping()
        client.close()
    except Exception as exc:  # noqa: BLE001
        return f"broker unreachable: {exc.__class__.__name__}: {str(exc)[:200]}"
    return None


def queue_depths() -> dict[str, int]:
    """Messages waiting per queue (best effort; empty when the broker does not answer)."""
    url = settings.CELERY_BROKER_URL
    queues = ("default", "polling", "actions")
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
        if not folder.is_dir():
            return {}
        counts = dict.fromkeys(queues, 0)
        for name in os.listdir(folder):
            for q in queues:
                if f"_{q}." in name or name.endswith(f".{q}.msg"):
                    counts[q] += 1
        return counts
    if url.startswith(("redis://", "rediss://")):
        import redis

        try:
            client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
            depths = {q: int(client.llen(q)) for q in queues}
            client.close()
            return depths
        except Exception:  # noqa: BLE001
            return {}
    return {}


def ensure_broker_folders() -> None:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        for key in ("data_folder_in", "data_folder_out", "control_folder"):
            Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS[key]).mkdir(parents=True, exist_ok=True)
