"""Shared test fixtures: the network guard, people by role, tokens, PostgreSQL/Redis/Chromium gates."""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket

import pytest

pytest_plugins = ["tests.plugins.aws"]

IN_CI = bool(os.environ.get("CI"))
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "ip6-localhost", "testserver"}


def _is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host)
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        raise RuntimeError(f"test tried to reach {address!r}: tests may only connect to 127.0.0.1")
    return _real_connect(self, address, *args)


def _guarded_connect_ex(self, address, *args):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        raise RuntimeError(f"test tried to reach {address!r}: tests may only connect to 127.0.0.1")
    return _real_connect_ex(self, address, *args)


class NetworkGuardResolveError(socket.gaierror, RuntimeError):
    """A resolver failure, as a closed network gives: the product reports it like any other, in words."""


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        raise NetworkGuardResolveError(socket.EAI_NONAME, f"test tried to resolve {host!r}: tests may only connect to 127.0.0.1")
    return _real_getaddrinfo(host, *args, **kwargs)


def pytest_addoption(parser):
    parser.addoption("--faults", action="store_true",
                     help="collect tests/faults: they stop and start this machine's PostgreSQL and Redis (scripts/test.sh runs them in CI)")


def pytest_ignore_collect(collection_path, config):
    # The fault tests stop PostgreSQL under every other test's feet: they run in a session of their own.
    if collection_path.name == "faults" and collection_path.parent.name == "tests" and not config.getoption("--faults"):
        return True
    return None


def pytest_configure(config):
    # The guard is installed for the whole run, before any test or fixture opens a socket.
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
    socket.getaddrinfo = _guarded_getaddrinfo
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.pop("AWS_PROFILE", None)


def need(condition: bool, reason: str) -> None:
    """Skip with a reason locally; fail in CI, where every dependency must be present."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def _port_open(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        return s.connect_ex(("127.0.0.1", port)) == 0
    finally:
        s.close()


@pytest.fixture
def require_postgres(settings):
    from django.db import connection

    need(connection.vendor == "postgresql", "needs PostgreSQL: run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal")


@pytest.fixture
def redis_url():
    need(_port_open(6379), "needs Redis on 127.0.0.1:6379")
    return os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser():
    need(shutil.which(CHROMIUM) is not None or os.path.exists(CHROMIUM), f"needs Chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(15000)
    pg = context.new_page()
    yield pg
    context.close()


@pytest.fixture(autouse=True)
def _clear_cache():
    """Pages cache AWS reads for a few seconds; no test sees another test's cache."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _eager_celery(request):
    """Tasks run in-process unless a test asks for a real worker (marker `real_broker`)."""
    from portal.celery import app

    eager = "real_broker" not in request.keywords
    old = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = eager
    app.conf.task_eager_propagates = eager
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


def _make_user(django_user_model, username: str, role: str):
    from portal.accounts.services import user_create_or_update

    user, _ = user_create_or_update(username=username, role=role, password=f"{username}-password-1", validate=False)
    user.raw_password = f"{username}-password-1"
    return user


@pytest.fixture
def viewer(db, django_user_model):
    return _make_user(django_user_model, "vera-viewer", "viewer")


@pytest.fixture
def responder(db, django_user_model):
    """The on-call engineer."""
    return _make_user(django_user_model, "oscar-oncall", "responder")


@pytest.fixture
def responder2(db, django_user_model):
    return _make_user(django_user_model, "rita-responder", "responder")


@pytest.fixture
def lead(db, django_user_model):
    return _make_user(django_user_model, "lena-lead", "lead")


@pytest.fixture
def lead2(db, django_user_model):
    return _make_user(django_user_model, "leo-lead", "lead")


@pytest.fixture
def admin_user(db, django_user_model):
    return _make_user(django_user_model, "ada-admin", "admin")


@pytest.fixture
def growth_phases(db):
    """The plan's growth phases, as seed_defaults stores them (selectors read them, never seed them)."""
    # Imported here: this module loads before Django's app registry is ready.
    from portal.phases.models import GrowthPhase
    from portal.phases.seed import seed_phases
    from portal.plan.loader import SeedStats, load_plan

    seed_phases(load_plan(), reset=False, stats=SeedStats())
    return list(GrowthPhase.objects.order_by("number"))


@pytest.fixture
def users_by_role(viewer, responder, lead, admin_user):
    return {"viewer": viewer, "responder": responder, "lead": lead, "admin": admin_user}


@pytest.fixture
def make_token(db):
    from portal.accounts.services import api_token_create

    def make(scope: str, name: str | None = None) -> str:
        _, raw = api_token_create(name=name or f"test-{scope}-{os.urandom(3).hex()}", scope=scope)
        return raw

    return make


@pytest.fixture
def api_client(client):
    """Django test client with helpers for bearer-token JSON calls."""

    class Api:
        def __init__(self, c):
            self.c = c

        def get(self, path, token=None, **kw):
            return self.c.get(path, headers=self._h(token), **kw)

        def post(self, path, data=None, token=None, **kw):
            import json as _json

            body = kw.pop("raw", None)
            if body is None:
                body = _json.dumps(data if data is not None else {})
            return self.c.post(path, data=body, content_type="application/json", headers=self._h(token), **kw)

        @staticmethod
        def _h(token):
            return {"Authorization": f"Bearer {token}"} if token else {}

    return Api(client)


def browser_login(page, user) -> None:
    """Log `user` in through the real login form and wait for the dashboard."""
    page.goto("/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", user.raw_password)
    page.click("button[type=submit]")
    page.wait_for_selector("h1:has-text('On-call dashboard')")
