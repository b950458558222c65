"""Test settings: the same settings with speed knobs turned (fast hashing, no throttled lockouts by default)."""

import os
import tempfile

os.environ.setdefault("PORTAL_ENV", "test")
os.environ.setdefault("PORTAL_DATA_DIR", tempfile.mkdtemp(prefix="portal-test-"))

from portal.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
BROKER_POLLING_INTERVAL = 0.05
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405

# SQLite's default test database is in memory, and Django's live server then hands that one
# connection to every request thread: htmx panels polling at once broke each other's transactions
# ("cannot commit transaction - SQL statements in progress"). A file gives each thread its own
# connection, with the same WAL, IMMEDIATE transactions and busy timeout as the embedded default.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}  # noqa: F405
