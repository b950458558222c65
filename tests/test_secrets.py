"""Secrets stay secret: field keys and their rotation, the debug page, the image, the bind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter

from portal.cloud.fields import UndecryptableValue

ROOT = Path(__file__).resolve().parent.parent
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def _raw_webhook(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_url FROM incidents_notificationchannel WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_rotate_field_keys_moves_every_value_to_the_new_key_and_the_old_key_can_go():
    from portal.incidents.models import NotificationChannel

    url = "https://hooks.slack.com/services/T0/B0/rotate-me"
    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        channel = NotificationChannel.objects.create(name="rot", kind="slack", webhook_url=url)
        before = _raw_webhook(channel.pk)
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW, OLD]):
        assert NotificationChannel.objects.get(pk=channel.pk).webhook_url == url  # the old key still decrypts
        call_command("rotate_field_keys", stdout=open(os.devnull, "w"))
        after = _raw_webhook(channel.pk)
    assert after != before and after.startswith("enc:") and "rotate-me" not in after
    assert Fernet(NEW.encode()).decrypt(after[4:].encode()).decode() == url
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]):  # old key removed
        assert NotificationChannel.objects.get(pk=channel.pk).webhook_url == url


@pytest.mark.django_db
def test_a_value_no_key_decrypts_is_an_error_not_an_empty_string():
    from portal.incidents.models import NotificationChannel

    with override_settings(FIELD_ENCRYPTION_KEYS=[OLD]):
        channel = NotificationChannel.objects.create(name="lost", kind="slack", webhook_url="https://hooks.example.com/x")
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]), pytest.raises(UndecryptableValue, match="NotificationChannel.webhook_url"):
        NotificationChannel.objects.get(pk=channel.pk)
    with override_settings(FIELD_ENCRYPTION_KEYS=[NEW]), pytest.raises(Exception, match="could not be decrypted"):
        call_command("rotate_field_keys", stdout=open(os.devnull, "w"))


def _settings_env(extra: dict) -> dict:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("PORTAL_", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_", "FIELD_"))}
    return {**environ, **extra}


@pytest.mark.parametrize("key,message", [("", "FIELD_ENCRYPTION_KEY"), ("not-a-key", "key 1 is not a Fernet key")])
def test_production_needs_its_own_field_encryption_key(tmp_path, key, message):
    env = _settings_env({"PORTAL_ENV": "production", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "ops.example.com",
                         "DEBUG": "false", "PORTAL_DATA_DIR": str(tmp_path), "FIELD_ENCRYPTION_KEY": key})
    r = subprocess.run([sys.executable, "-c", "import portal.settings"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and message in r.stderr
    env["FIELD_ENCRYPTION_KEY"] = f"{NEW}, {OLD}"
    r = subprocess.run([sys.executable, "-c", "import portal.settings as s; print(len(s.FIELD_ENCRYPTION_KEYS))"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr


W = "".join(["s3", "cr", "et"])  # never written out whole: the traceback shows this file's source lines too


@override_settings(
    DEBUG=True,
    DATABASE_URL=f"postgres://portal:db-{W}@db.internal:5432/portal",
    CELERY_BROKER_URL=f"redis://:broker-{W}@redis.internal:6379/0",
    CELERY_RESULT_BACKEND=f"redis://default:result-{W}@redis.internal:6379/1",
    SENTRY_DSN=f"https://dsn-{W}@o1.ingest.example.com/1",
    OTHER_ENDPOINTS=[f"amqp://user:list-{W}@mq.internal/"],
)
def test_debug_page_never_shows_the_database_or_broker_url():
    from django.conf import settings

    request = RequestFactory().get("/boom", HTTP_X_ENV=f"postgres://u:header-{W}@h/db")
    request.META["DATABASE_URL"] = settings.DATABASE_URL  # runserver copies the environment into META
    request.META["CELERY_BROKER_URL"] = settings.CELERY_BROKER_URL
    other = {"ENGINE": "django.db.backends.postgresql", "NAME": "portal", "PASSWORD": f"dict-{W}"}
    try:
        dsn = settings.DATABASE_URL  # a local variable holding it, shown in the traceback
        raise RuntimeError(f"cannot connect {len(dsn)}")
    except RuntimeError:
        with override_settings(DATABASES={**settings.DATABASES, "other": other}):
            html = ExceptionReporter(request, *sys.exc_info()).get_traceback_html()
            text = ExceptionReporter(request, *sys.exc_info()).get_traceback_text()
    for page in (html, text):
        assert W not in page
    assert "DATABASE_URL" in html and "CELERY_BROKER_URL" in html  # listed, value hidden


def _gunicorn_conf():
    import runpy

    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize("bind,local", [
    ("127.0.0.1:8000", True), ("[::1]:8000", True), ("localhost:8000", True), ("unix:/run/portal.sock", True),
    ("0.0.0.0:8000", False), ("[::]:8000", False), (":8000", False), ("10.0.0.5:8000", False),
    ("ops.example.com:8000", False), ("fd://3", False), ("0.0.0.0", False),
])
def test_which_binds_count_as_loopback(bind, local):
    assert _gunicorn_conf()["is_loopback"](bind) is local


def test_public_binds_refused_only_outside_production():
    public_binds = _gunicorn_conf()["public_binds"]
    assert public_binds(["127.0.0.1:8000", "0.0.0.0:8000"], "development") == ["0.0.0.0:8000"]
    assert public_binds(["0.0.0.0:8000"], None) == ["0.0.0.0:8000"]
    assert public_binds(["0.0.0.0:8000"], "production") == []


def test_gunicorn_refuses_a_public_bind_without_production():
    """The real server, started as the Procfile does (config read from the working directory)."""
    env = _settings_env({"PORTAL_ENV": "development"})
    r = subprocess.run([str(Path(sys.executable).parent / "gunicorn"), "portal.wsgi:application", "--bind", "0.0.0.0:0",
                        "--workers", "1", "--no-control-socket"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "refusing to listen on 0.0.0.0:0" in r.stdout + r.stderr


def test_dockerfile_sets_production_and_dockerignore_keeps_secrets_out():
    entries = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for needed in ("secrets/", "data/", ".git", ".venv"):
        assert needed in entries
    assert any("__pycache__" in e for e in entries)
    assert "ENV PORTAL_ENV=production" in (ROOT / "Dockerfile").read_text()
    assert "secrets/" in (ROOT / ".gitignore").read_text().split()
