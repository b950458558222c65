"""The one place that builds boto3 sessions and clients for an Environment.

Credentials: the default chain, a named profile, a role assumed through STS with an external id
(refreshed before it expires), or static test keys for the local sandbox. Every client has
connect/read timeouts, adaptive retries (throttling is retried with backoff by botocore; access
denied is not retryable) and a user agent naming the portal. Every call made through `client()`
turns AWS's errors into `CloudError` naming the operation and the environment.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from django.conf import settings

from portal.cloud.errors import CloudError

USER_AGENT = "fairtradeworker-ops-portal/0.1"
SANDBOX_ACCESS_KEY = "testing"  # moto accepts any keys; these never reach AWS
SANDBOX_SECRET_KEY = "testing"
ROLE_SESSION_SECONDS = 3600

_lock = threading.Lock()
_sessions: dict[tuple, boto3.Session] = {}
_clients: dict[tuple, Any] = {}


# Set by `page_reads()`: reads made to draw a page try once, with short timeouts.
_page_reads: contextvars.ContextVar[bool] = contextvars.ContextVar("aws_page_reads", default=False)


@contextlib.contextmanager
def page_reads() -> Iterator[None]:
    """AWS reads inside this block are made for a page a person is waiting on: one attempt and short
    timeouts (AWS_PAGE_CONNECT_TIMEOUT, AWS_PAGE_READ_TIMEOUT) instead of retries with backoff.

    Retries suit the workers, where a late answer is still useful; a page shows "AWS could not be
    read" at once and its next poll reads again. An unreachable endpoint otherwise held the request
    for the retries' back-off sleeps (about half a second to several seconds)."""
    token = _page_reads.set(True)
    try:
        yield
    finally:
        _page_reads.reset(token)


def client_config(*, page: bool = False) -> Config:
    if page:
        return Config(
            connect_timeout=float(getattr(settings, "AWS_PAGE_CONNECT_TIMEOUT", 1)),
            read_timeout=float(getattr(settings, "AWS_PAGE_READ_TIMEOUT", 3)),
            retries={"mode": "standard", "total_max_attempts": 1},
            user_agent_extra=USER_AGENT,
        )
    return Config(
        connect_timeout=float(getattr(settings, "AWS_CONNECT_TIMEOUT", 3)),
        read_timeout=float(getattr(settings, "AWS_READ_TIMEOUT", 15)),
        retries={"mode": "adaptive", "total_max_attempts": int(getattr(settings, "AWS_MAX_ATTEMPTS", 5))},
        user_agent_extra=USER_AGENT,
    )


def _cache_key(env) -> tuple:
    return (env.pk, env.name, env.region, env.credentials_mode, env.profile, env.role_arn, env.external_id,
            env.endpoint_url)


def _assume_role_session(env) -> boto3.Session:
    base = boto3.Session(profile_name=env.profile or None, region_name=env.region)
    sts = base.client("sts", config=client_config(), endpoint_url=env.endpoint_url or None)

    def refresh() -> dict[str, str]:
        kwargs: dict[str, Any] = {"RoleArn": env.role_arn, "RoleSessionName": f"ops-portal-{env.name}"[:64],
                                  "DurationSeconds": ROLE_SESSION_SECONDS}
        if env.external_id:
            kwargs["ExternalId"] = env.external_id
        try:
            creds = sts.assume_role(**kwargs)["Credentials"]
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "AssumeRole", env.name) from exc
        return {"access_key": creds["AccessKeyId"], "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"], "expiry_time": creds["Expiration"].isoformat()}

    core = botocore.session.get_session()
    core._credentials = DeferredRefreshableCredentials(refresh_using=refresh, method="assume-role")
    return boto3.Session(botocore_session=core, region_name=env.region)


def build_session(env) -> boto3.Session:
    mode = env.credentials_mode
    try:
        if mode == "static":
            return boto3.Session(aws_access_key_id=SANDBOX_ACCESS_KEY, aws_secret_access_key=SANDBOX_SECRET_KEY,
                                 region_name=env.region)
        if mode == "profile":
            return boto3.Session(profile_name=env.profile, region_name=env.region)
        if mode == "role":
            if not env.role_arn:
                raise CloudError("NotConfigured", "AssumeRole", env.name, "credentials mode is 'role' but no role ARN is set")
            return _assume_role_session(env)
        return boto3.Session(region_name=env.region)
    except ProfileNotFound as exc:
        raise CloudError("ProfileNotFound", "CreateSession", env.name, str(exc)) from exc


def session(env) -> boto3.Session:
    """A cached session per environment (rebuilt when its credentials settings change)."""
    key = _cache_key(env)
    with _lock:
        s = _sessions.get(key)
        if s is None:
            for old in [k for k in _sessions if k[0] == env.pk and k[1] == env.name]:
                _sessions.pop(old, None)
            for old in [k for k in _clients if k[0][0] == env.pk and k[0][1] == env.name and k[0] != key]:
                _clients.pop(old, None)
            s = _sessions[key] = build_session(env)
        return s


def reset_cache() -> None:
    with _lock:
        _sessions.clear()
        _clients.clear()


def raw_client(env, service: str):
    """A plain boto3 client (errors not translated). Prefer `client()`.

    Clients are thread-safe and cached; sessions are not, so creation happens under the lock.
    Inside `page_reads()` a second client per service is used, one that does not retry.
    """
    page = _page_reads.get()
    key = (_cache_key(env), service, page)
    found = _clients.get(key)
    if found is not None:
        return found
    s = session(env)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = s.client(service, config=client_config(page=page), endpoint_url=env.endpoint_url or None)
        return found


log = logging.getLogger(__name__)

ROLLBACK_SERVICES = ("elbv2", "autoscaling")


def warm_clients() -> None:
    """The load balancer and auto scaling clients of every environment, built before the first rollback
    needs them: a fresh process's first call paid for botocore's service models and the session
    (measured: 680 ms against 9-19 ms warm). Web processes call it through portal.warmup; worker
    processes when they start (connected in portal.cloud.apps)."""
    from portal.cloud.models import Environment

    for env in Environment.objects.all():
        for service in ROLLBACK_SERVICES:
            raw_client(env, service)


def warm_worker(**_kwargs) -> None:
    try:
        warm_clients()
    except Exception:  # noqa: BLE001 - best effort: the task creates what it needs anyway
        log.warning("could not warm the AWS clients", exc_info=True)


def translate(exc: Exception, operation: str, environment: str) -> CloudError:
    if isinstance(exc, CloudError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {}) or {}
        code = str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or "Unknown")
        return CloudError(code, getattr(exc, "operation_name", None) or operation, environment, str(err.get("Message") or ""))
    if isinstance(exc, EndpointConnectionError):
        return CloudError("EndpointConnectionError", operation, environment, str(exc))
    if isinstance(exc, ConnectTimeoutError):
        return CloudError("ConnectTimeout", operation, environment, str(exc))
    if isinstance(exc, ReadTimeoutError):
        return CloudError("ReadTimeout", operation, environment, str(exc))
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CloudError("NoCredentials", operation, environment, str(exc))
    if isinstance(exc, NoRegionError):
        return CloudError("NoRegion", operation, environment, str(exc))
    if isinstance(exc, ParamValidationError):
        return CloudError("InvalidParameter", operation, environment, str(exc))
    return CloudError(type(exc).__name__, operation, environment, str(exc))


def _op_name(client, method: str) -> str:
    try:
        return client.meta.method_to_api_mapping.get(method, method)
    except AttributeError:
        return method


class _Paginator:
    def __init__(self, paginator, op: str, env_name: str):
        self._p, self._op, self._env = paginator, op, env_name

    def paginate(self, **kwargs):
        try:
            yield from self._p.paginate(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, self._op, self._env) from exc


class Client:
    """A boto3 client whose calls raise CloudError instead of botocore's exceptions."""

    def __init__(self, boto_client, env_name: str):
        self._client = boto_client
        self._env = env_name

    @property
    def meta(self):
        return self._client.meta

    @property
    def exceptions(self):
        return self._client.exceptions

    def get_paginator(self, method: str) -> _Paginator:
        return _Paginator(self._client.get_paginator(method), _op_name(self._client, method), self._env)

    def __getattr__(self, name: str):
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            return attr
        op = _op_name(self._client, name)

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, op, self._env) from exc

        call.__name__ = name
        return call


def client(env, service: str) -> Client:
    try:
        return Client(raw_client(env, service), env.name)
    except (BotoCoreError, ValueError) as exc:
        raise translate(exc, f"create {service} client", env.name) from exc
