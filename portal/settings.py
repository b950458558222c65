"""Settings for the ops portal, read from the environment (see portal/env.py).

Defaults are the embedded mode: a SQLite file and a filesystem broker under DATA_DIR,
the local AWS sandbox. Production sets PORTAL_ENV=production, DATABASE_URL,
CELERY_BROKER_URL, SECRET_KEY and ALLOWED_HOSTS.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet as _Fernet
from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_choice, env_float, env_int, env_list, env_secret, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
PORTAL_ENV = env_choice("PORTAL_ENV", ("development", "production", "test"), "development")
PRODUCTION = PORTAL_ENV == "production"
DATA_DIR = Path(env_str("PORTAL_DATA_DIR", str(BASE_DIR / "data")))
if not PRODUCTION:
    # The embedded mode keeps its SQLite file, broker folders and demo logins here.
    for _sub in ("", "broker/queue", "broker/control", "staticfiles", "media"):
        (DATA_DIR / _sub).mkdir(parents=True, exist_ok=True)

_DEFAULT_SECRET = "insecure-development-key-change-me-in-production"  # noqa: S105 - dev only, refused in production
SECRET_KEY = env_secret("SECRET_KEY") or _DEFAULT_SECRET
DEBUG = env_bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

if PRODUCTION:
    if DEBUG:
        raise ImproperlyConfigured("DEBUG must be false when PORTAL_ENV=production")
    if SECRET_KEY == _DEFAULT_SECRET or len(SECRET_KEY) < 32:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set to a random value of 32+ characters when PORTAL_ENV=production")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured("ALLOWED_HOSTS must list the portal's host names when PORTAL_ENV=production")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "axes",
    "django_celery_beat",
    "django_celery_results",
    "portal.accounts",
    "portal.plan",
    "portal.audit",
    "portal.cloud",
    "portal.incidents",
    "portal.health",
    "portal.checklist",
    "portal.phases",
    "runbooks",
    "deployments",
    "portal.oncall",
    "portal.handoff",
    "portal.heartbeats",
    "portal.inbound",
    "portal.webhooks",
    "portal.command",
]
# The local AWS sandbox (moto, simulator, drills) is an app above the product: on everywhere but production.
SANDBOX_ENABLED = env_bool("PORTAL_SANDBOX", default=not PRODUCTION)
if SANDBOX_ENABLED:
    INSTALLED_APPS.append("portal.sandbox")

MIDDLEWARE = [
    "portal.middleware.RequestIdMiddleware",
    "portal.metrics.MetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.middleware.SessionLifetimeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "portal.middleware.SecurityHeadersMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "portal.context_processors.portal",
            ],
        },
    }
]

# Database: SQLite file by default; DATABASE_URL=postgres://... for PostgreSQL (psycopg 3).
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    try:
        _db = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True)
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from exc
    if _db["ENGINE"] == "django.db.backends.postgresql":
        _db.setdefault("OPTIONS", {})["connect_timeout"] = env_int("DB_CONNECT_TIMEOUT", 3)
else:
    # Several processes (web, worker, beat, sandbox) share one file: WAL, IMMEDIATE
    # transactions and a busy timeout keep writes from failing with "database is locked".
    _db = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": DATA_DIR / "portal.sqlite3",
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Sessions end after 30 minutes without a person's request and after 12 hours at most whatever the
# activity (SessionLifetimeMiddleware). Background refreshes (htmx polling) do not count and do not
# write the session: only a person's request saves it, which also renews the cookie.
SESSION_IDLE_SECONDS = env_int("SESSION_IDLE_SECONDS", 30 * 60, minimum=60)
SESSION_COOKIE_AGE = SESSION_IDLE_SECONDS
SESSION_SAVE_EVERY_REQUEST = False
SESSION_ABSOLUTE_SECONDS = env_int("SESSION_ABSOLUTE_SECONDS", 12 * 3600, minimum=60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
# Every production change (portal.accounts.reauth.step_up) asks for the password again after this.
REAUTH_SECONDS = env_int("REAUTH_SECONDS", 15 * 60)



def _cidrs(name: str, default: list[str]) -> list[str]:
    """A list of addresses or networks (10.0.0.0/8, 127.0.0.1, ::1); a malformed entry refuses to start."""
    import ipaddress

    values = env_list(name, default)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {value!r} is not an IP address or network") from exc
    return values


# The reverse proxy in front of the portal (docs/operating.md): X-Forwarded-For is believed only
# from these peers, and the right-most address in it that is not one of them is the client.
# Loopback by default (a proxy on the same host); with Docker's published port, add the bridge
# network (e.g. 172.16.0.0/12). From any other peer the header is ignored.
TRUSTED_PROXIES = _cidrs("TRUSTED_PROXIES", ["127.0.0.1", "::1"])
FORWARDED_FOR_HEADER = "HTTP_X_FORWARDED_FOR"
# /metrics and the API description (/api/v1/openapi.json, /api/v1/docs) are open unless restricted:
# METRICS_ALLOWED_CIDRS and/or METRICS_TOKEN (a bearer token Prometheus sends); for the API docs,
# API_DOCS_ALLOWED_CIDRS and/or API_DOCS_REQUIRE_TOKEN (any valid API token or a logged-in user).
METRICS_ALLOWED_CIDRS = _cidrs("METRICS_ALLOWED_CIDRS", [])
METRICS_TOKEN = env_secret("METRICS_TOKEN") or ""
API_DOCS_ALLOWED_CIDRS = _cidrs("API_DOCS_ALLOWED_CIDRS", [])
API_DOCS_REQUIRE_TOKEN = env_bool("API_DOCS_REQUIRE_TOKEN", False)

# Failed logins (and failed password confirmations, portal.accounts.views.reauth): django-axes locks
# the username+address pair after AXES_FAILURE_LIMIT tries, the address being the real client's
# (portal.accounts.clientip), so a flood from one client cannot lock a lead out everywhere.
AXES_CLIENT_IP_CALLABLE = "portal.accounts.clientip.client_ip"
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = env_float("AXES_COOLOFF_HOURS", 0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLED = env_bool("AXES_ENABLED", True)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = DATA_DIR / "media"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
if env_str("EVIDENCE_S3_BUCKET"):
    # Checklist evidence attachments go to S3 in production (django-storages is optional there).
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {"bucket_name": env_str("EVIDENCE_S3_BUCKET")},
    }

# Alertmanager batches can be large: accept at least 5 MB bodies on the webhooks.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("MAX_BODY_BYTES", 5 * 1024 * 1024 + 512 * 1024)

# Security: strict headers everywhere, TLS-only cookies and HSTS in production.
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
CSRF_COOKIE_HTTPONLY = False  # htmx reads it from the meta tag, not the cookie; kept default for admin
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# Celery: embedded filesystem broker by default, Redis with CELERY_BROKER_URL=redis://...
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        # kombu polls once a second by default; alerts and rollbacks should not wait that long.
        "polling_interval": env_float("BROKER_POLLING_INTERVAL", 0.1),
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "socket_connect_timeout": 2,
        "socket_timeout": 5,
        "visibility_timeout": 3600,
    }
elif CELERY_BROKER_URL.startswith("memory://"):
    pass
else:
    raise ImproperlyConfigured(f"CELERY_BROKER_URL must be filesystem://, redis://, rediss:// or memory://, got {CELERY_BROKER_URL!r}")
CELERY_RESULT_BACKEND = env_str("CELERY_RESULT_BACKEND", "django-db")
CELERY_RESULT_EXTENDED = True
CELERY_RESULT_EXPIRES = 7 * 24 * 3600
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 150)
CELERY_BEAT_SCHEDULER = "portal.beat:PortalScheduler"

# The local AWS sandbox (moto's server) and the environment the portal talks to by default.
SANDBOX_HOST = env_str("SANDBOX_HOST", "127.0.0.1")
SANDBOX_PORT = env_int("SANDBOX_PORT", 4566)
SANDBOX_INTERVAL_SECONDS = env_float("SANDBOX_INTERVAL_SECONDS", 5.0)
DEFAULT_ENVIRONMENT = env_str("DEFAULT_ENVIRONMENT", "sandbox")


def _pairs(name: str) -> dict[str, str]:
    """"production=ftw-web,staging=ftw-web-staging" -> a dict; an entry without "=" refuses to start."""
    out = {}
    for item in env_list(name, []):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise ImproperlyConfigured(f"{name}: {item!r} is not environment=name")
        out[key.strip()] = value.strip()
    return out


# The CloudWatch RUM app monitor of each environment's web front end (the application_name dimension
# of AWS/RUM PerformanceNavigationDuration, the page-load P95 SLO); unnamed environments: ftw-<environment>.
RUM_APP_MONITORS = _pairs("RUM_APP_MONITORS")
# Keys for secrets stored in the database (portal.cloud.fields): FIELD_ENCRYPTION_KEY (or _FILE) holds
# comma-separated Fernet keys, the first encrypts and all decrypt (rotation: docs/operating.md).
# Production must set it (SECRET_KEY is not reused); the embedded mode derives one from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = [k.strip() for k in (env_secret("FIELD_ENCRYPTION_KEY") or "").split(",") if k.strip()]
for _i, _key in enumerate(FIELD_ENCRYPTION_KEYS, start=1):
    try:
        _Fernet(_key.encode())
    except ValueError:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEY: key {_i} is not a Fernet key (32 url-safe base64 bytes; "
                                   "make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)") from None
if PRODUCTION and not FIELD_ENCRYPTION_KEYS:
    raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY (or FIELD_ENCRYPTION_KEY_FILE) must be set when PORTAL_ENV=production")

# Notifications. Outside services are reached at TWILIO_API_BASE, SLACK_API_BASE and EMAIL_HOST:EMAIL_PORT
# (defaults: the real services). With the sandbox on, the defaults are its local stand-ins (a Twilio API,
# a Slack Web API and an SMTP catcher on 127.0.0.1, started by `manage.py sandbox`) with dummy
# credentials, so every page lands on /sandbox/messages/; any variable set in the environment wins.
SANDBOX_TWILIO_PORT = env_int("SANDBOX_TWILIO_PORT", 4580, minimum=1)
SANDBOX_SLACK_PORT = env_int("SANDBOX_SLACK_PORT", 4581, minimum=1)
SANDBOX_SMTP_PORT = env_int("SANDBOX_SMTP_PORT", 1025, minimum=1)
SANDBOX_CLOUDFLARE_PORT = env_int("SANDBOX_CLOUDFLARE_PORT", 4582, minimum=1)
# The sandbox's Prometheus (Debian's binary, when installed) loading the rules the portal exports.
SANDBOX_PROMETHEUS_PORT = env_int("SANDBOX_PROMETHEUS_PORT", 4590, minimum=1)
SANDBOX_PROMETHEUS_BINARY = env_str("SANDBOX_PROMETHEUS_BINARY", "")
# Used when an environment's row holds no CloudFlare token of its own (portal.cloud.cloudflare).
CLOUDFLARE_API_TOKEN = env_secret("CLOUDFLARE_API_TOKEN") or ""
_standin = f"http://{SANDBOX_HOST}" if SANDBOX_ENABLED else ""
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if PRODUCTION or SANDBOX_ENABLED
    else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", SANDBOX_HOST if SANDBOX_ENABLED else "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", SANDBOX_SMTP_PORT if SANDBOX_ENABLED else 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10, minimum=1)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "ops-portal@localhost")
TWILIO_API_BASE = env_url("TWILIO_API_BASE", f"{_standin}:{SANDBOX_TWILIO_PORT}" if SANDBOX_ENABLED else "https://api.twilio.com")
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000sandbox" if SANDBOX_ENABLED else "")
TWILIO_AUTH_TOKEN = env_secret("TWILIO_AUTH_TOKEN") or ("sandbox-auth-token" if SANDBOX_ENABLED else "")
TWILIO_FROM = env_str("TWILIO_FROM", "+15005550006" if SANDBOX_ENABLED else "")
SLACK_API_BASE = env_url("SLACK_API_BASE", f"{_standin}:{SANDBOX_SLACK_PORT}" if SANDBOX_ENABLED else "https://slack.com")
SLACK_BOT_TOKEN = env_secret("SLACK_BOT_TOKEN") or ("xoxb-sandbox-token" if SANDBOX_ENABLED else "")
SLACK_SIGNING_SECRET = env_secret("SLACK_SIGNING_SECRET") or ("sandbox-signing-secret" if SANDBOX_ENABLED else "")
if PRODUCTION:
    for _name in ("TWILIO_API_BASE", "SLACK_API_BASE"):
        if not globals()[_name].startswith("https://"):
            raise ImproperlyConfigured(f"{_name} must be an https:// URL when PORTAL_ENV=production")
SNS_ALLOWED_TOPIC_ARNS = env_list("SNS_ALLOWED_TOPIC_ARNS", [])
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", "http://127.0.0.1:8000")
# The base URL the portal links with in pages and that outside services call back: Twilio signs its
# requests over PORTAL_PUBLIC_URL + path, so it must be the URL set in the Twilio console.
PORTAL_PUBLIC_URL = env_str("PORTAL_PUBLIC_URL", PORTAL_BASE_URL).rstrip("/")

# The debug page and error reports never show DATABASE_URL, CELERY_BROKER_URL or credentials in a URL.
DEFAULT_EXCEPTION_REPORTER_FILTER = "portal.reporting.PortalExceptionReporterFilter"

LOG_LEVEL = env_choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "botocore": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "werkzeug": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
    },
}

# Panels on the dashboard, each an htmx partial served by its app; missing ones are skipped.
DASHBOARD_PANELS = [
    "incidents:panel",
    "deployments:panel",
    "health:panel",
    "health:slo_panel",
    "checklist:panel",
    "phases:panel",
    "oncall:panel",
    "command:panel",
]

# Seeders run by `manage.py seed_defaults` after the plan's facts, in order; apps add theirs here.
PORTAL_SEEDERS = [
    "portal.cloud.seed.seed",
    "portal.health.seed.seed",
    "portal.incidents.seed.seed",
    "portal.checklist.seed.seed",
    "portal.phases.seed.seed",
    "runbooks.seed.seed",
    "deployments.seed.seed",
    "portal.handoff.seed.seed",
    "portal.heartbeats.seed.seed",
    "portal.webhooks.seed.seed",
    "portal.command.seed.seed",
]
# Incident command: the public status page (/status/public/, no login) is off unless set; the schedule
# whose on-call person is paged to command a declared SEV1 (empty: the critical policy's first schedule).
STATUS_PAGE_PUBLIC = env_bool("STATUS_PAGE_PUBLIC", default=False)
COMMAND_COMMANDER_SCHEDULE = env_str("COMMAND_COMMANDER_SCHEDULE", "")
AXES_VERBOSE = False
