"""The one wrapper the health checks use to reach HTTP(S) endpoints and status pages.

Every failure comes back as a FetchResult with `error` in words (never an exception), and the
whole exchange (connect, headers, body) is bounded by one deadline. Requests go through
portal.outbound: the resolved address is checked and pinned, and redirects are re-checked hop by hop.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests

from portal import outbound

MAX_BODY_BYTES = 512 * 1024
USER_AGENT = "FairTradeWorker-OpsPortal-health/1"


@dataclass
class FetchResult:
    url: str
    status: int | None = None
    reason: str = ""
    content_type: str = ""
    body: bytes = b""
    elapsed_ms: float = 0.0
    error: str = ""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def describe_error(exc: BaseException, url: str, timeout: float) -> str:
    host = _host(url)
    if isinstance(exc, outbound.OutboundRefused):
        return f"refused to connect to {exc.host}: {exc.reason} (this environment's checks may reach only public addresses)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection to {host} within {timeout:g} s"
    if isinstance(exc, requests.exceptions.ReadTimeout | TimeoutError | socket.timeout):
        return f"timed out after {timeout:g} s waiting for {host} to answer"
    text = str(exc)
    chain = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 6:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(isinstance(x, socket.gaierror) for x in chain) or "NameResolutionError" in text or "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return f"DNS lookup failed for {host} (unreachable from here)"
    if isinstance(exc, requests.exceptions.SSLError) or any(isinstance(x, ssl.SSLError) for x in chain):
        return f"TLS handshake with {host} failed: {text[:200]}"
    if any(isinstance(x, ConnectionRefusedError) for x in chain) or "Connection refused" in text:
        return f"connection refused by {host}:{urlsplit(url).port or (443 if url.startswith('https') else 80)}"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "RemoteDisconnected" in text or "Connection aborted" in text:
            return f"{host} closed the connection without answering"
        return f"could not connect to {host}: {text[:200]}"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema | requests.exceptions.InvalidSchema):
        return f"invalid URL {outbound.redact_url(url)!r}: {type(exc).__name__}"
    return f"request to {host} failed: {type(exc).__name__}: {text[:200]}"


def fetch(url: str, *, allow_private: bool, method: str = "GET", timeout: float = 10.0, headers: dict | None = None,
          body: str | None = None, max_bytes: int = MAX_BODY_BYTES) -> FetchResult:
    """Do one request within `timeout` seconds in total; the body is read up to `max_bytes`.

    `allow_private` comes from the check's environment (portal.outbound.allows_private_targets).
    """
    start = time.monotonic()
    deadline = start + timeout
    result = FetchResult(url=url)
    try:
        resp = outbound.request(
            method.upper(), url, allow_private=allow_private, headers={"User-Agent": USER_AGENT, **(headers or {})},
            data=body, stream=True, timeout=(min(timeout, 10.0), timeout),
        )
        try:
            result.status = resp.status_code
            result.reason = resp.reason or ""
            result.content_type = resp.headers.get("Content-Type", "")
            chunks = []
            size = 0
            for chunk in resp.iter_content(chunk_size=16384):
                chunks.append(chunk)
                size += len(chunk)
                if size >= max_bytes:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError("body not finished within the deadline")
            result.body = b"".join(chunks)[:max_bytes]
        finally:
            resp.close()
    except BaseException as exc:  # noqa: BLE001 - every failure becomes words in the result
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        result.error = describe_error(exc, url, timeout)
    result.elapsed_ms = (time.monotonic() - start) * 1000.0
    if not result.error and time.monotonic() > deadline:
        result.error = f"timed out after {timeout:g} s waiting for {_host(url)} to answer"
    return result


def certificate_days_left(url: str, *, allow_private: bool, timeout: float = 10.0) -> tuple[float | None, str]:
    """Days until the TLS certificate of an https URL expires, or (None, reason)."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return None, "not an https URL"
    ctx = ssl.create_default_context()
    try:
        with outbound.open_socket(parts.hostname, parts.port or 443, timeout=timeout, allow_private=allow_private) as sock:
            with ctx.wrap_socket(sock, server_hostname=parts.hostname) as tls:
                cert = tls.getpeercert()
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        return None, describe_error(exc, url, timeout)
    not_after = cert.get("notAfter") if cert else None
    if not not_after:
        return None, "the server sent no certificate expiry"
    expires = datetime.fromtimestamp(ssl.cert_time_to_seconds(not_after), tz=UTC)
    return (expires - datetime.now(tz=UTC)).total_seconds() / 86400.0, ""
