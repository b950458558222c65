import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal import env


def test_bad_boolean_names_the_variable(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG"):
        env.env_bool("SOME_FLAG")


@pytest.mark.parametrize("raw,expected", [("true", True), ("0", False), ("YES", True), ("off", False)])
def test_booleans_parse(monkeypatch, raw, expected):
    monkeypatch.setenv("SOME_FLAG", raw)
    assert env.env_bool("SOME_FLAG") is expected


def test_bad_integer_names_the_variable(monkeypatch):
    monkeypatch.setenv("SOME_INT", "ten")
    with pytest.raises(ImproperlyConfigured, match="SOME_INT"):
        env.env_int("SOME_INT", 3)


def test_secret_from_file(monkeypatch, tmp_path):
    f = tmp_path / "s"
    f.write_text("from-file\n")
    monkeypatch.setenv("MY_SECRET_FILE", str(f))
    assert env.env_secret("MY_SECRET") == "from-file"
    monkeypatch.setenv("MY_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="MY_SECRET_FILE"):
        env.env_secret("MY_SECRET")


def _load_settings(extra_env):
    """Import the real settings module in a fresh interpreter with the given environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("PORTAL_", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_", "FIELD_ENCRYPTION_KEY"))}
    environ.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", "import portal.settings as s; print('OK', s.DEBUG, s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)"],
        env=environ, capture_output=True, text=True, timeout=60,
    )


GOOD_PROD = {"PORTAL_ENV": "production", "SECRET_KEY": "x" * 50, "ALLOWED_HOSTS": "ops.example.com", "DEBUG": "false",
             "FIELD_ENCRYPTION_KEY": "lWQ0-d3FXxS4yYb0G0nIvWx1dXk1lqOJ6qqT2cbE0lA="}


def test_production_refuses_default_secret(tmp_path):
    r = _load_settings({**GOOD_PROD, "SECRET_KEY": "", "PORTAL_DATA_DIR": str(tmp_path)})
    assert r.returncode != 0
    assert "SECRET_KEY" in r.stderr


def test_production_refuses_debug(tmp_path):
    r = _load_settings({**GOOD_PROD, "DEBUG": "true", "PORTAL_DATA_DIR": str(tmp_path)})
    assert r.returncode != 0 and "DEBUG" in r.stderr


def test_production_refuses_empty_allowed_hosts(tmp_path):
    r = _load_settings({**GOOD_PROD, "ALLOWED_HOSTS": "", "PORTAL_DATA_DIR": str(tmp_path)})
    assert r.returncode != 0 and "ALLOWED_HOSTS" in r.stderr


def test_bad_boolean_in_settings_fails_start(tmp_path):
    r = _load_settings({"DEBUG": "perhaps", "PORTAL_DATA_DIR": str(tmp_path)})
    assert r.returncode != 0 and "DEBUG" in r.stderr


def test_embedded_default_and_switches(tmp_path):
    r = _load_settings({"PORTAL_DATA_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert "sqlite3" in r.stdout and "filesystem://" in r.stdout
    r = _load_settings({"PORTAL_DATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/portal",
                        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert r.returncode == 0, r.stderr
    assert "postgresql" in r.stdout and "redis://" in r.stdout


def test_check_deploy_passes_with_production_settings(tmp_path):
    environ = {**os.environ, **GOOD_PROD, "PORTAL_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "portal.settings",
               "SECRET_KEY": "k3y-" + "abcdefghijklmnopqrstuvwxyz0123456789" * 2}
    environ.pop("DATABASE_URL", None)
    environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for the browser tests only
    r = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                       env=environ, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_bad_rum_app_monitors_fails_start(tmp_path):
    r = _load_settings({"RUM_APP_MONITORS": "production", "PORTAL_DATA_DIR": str(tmp_path)})
    assert r.returncode != 0 and "RUM_APP_MONITORS" in r.stderr
