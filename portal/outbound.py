"""The one way the portal sends a request to an address someone typed in (SSRF guard).

Health checks, status pages, Slack/Twilio notifications and the Prometheus source all go through
`request()` (or `open_socket()` for a bare TLS handshake). The name is resolved once, every
address it resolves to is checked, and the socket is connected to the address that was checked
(the Host header, SNI and certificate check keep the name), so a DNS answer that changes between
the check and the connect cannot move the request. Redirects are followed here, hop by hop, each
hop checked the same way, and the caller's headers never travel to another origin.

Loopback, private (RFC 1918), shared (100.64/10), link-local (169.254/16 with the metadata
service, fe80::/10), unique-local (fc00::/7), multicast, unspecified and reserved addresses are
refused unless the caller passes `allow_private=True`. Callers take that from data: the
environment's `outbound_policy` row (portal.health.models.OutboundPolicy), seeded True only for the
local sandbox. `redact_url()` is the one helper that hides credentials in URLs that are displayed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import threading
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from django.core.exceptions import ObjectDoesNotExist
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError

USER_AGENT = "FairTradeWorker-OpsPortal/1"
MAX_REDIRECTS = 5
REDIRECT_CODES = {301, 302, 303, 307, 308}


class OutboundRefused(requests.exceptions.ConnectionError):
    """The destination is an address this caller may not reach; nothing was sent."""

    def __init__(self, host: str, reason: str):
        self.host = host
        self.reason = reason
        super().__init__(f"refused to connect to {host}: {reason}")


class _Refusal(Exception):  # noqa: N818 - internal: not an OSError, so urllib3 does not wrap or retry it
    def __init__(self, host: str, reason: str):
        self.host, self.reason = host, reason
        super().__init__(reason)


# ------------------------------------------------------------------------------------ addresses

_NAMED = [
    ("loopback", ["127.0.0.0/8", "::1/128"]),
    ("link-local (cloud metadata service range)", ["169.254.0.0/16", "fe80::/10"]),
    ("private", ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]),
    ("shared (carrier-grade NAT)", ["100.64.0.0/10"]),
    ("unique-local", ["fc00::/7"]),
    ("multicast", ["224.0.0.0/4", "ff00::/8"]),
    ("unspecified", ["0.0.0.0/8", "::/128"]),
]
_NETWORKS = [(words, ipaddress.ip_network(n)) for words, nets in _NAMED for n in nets]


def address_refusal(address: str) -> str | None:
    """Why `address` may not be reached from a non-private environment, or None when it is public."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return f"{address} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for words, net in _NETWORKS:
        if ip.version == net.version and ip in net:
            return f"{ip} is a {words} address"
    if not ip.is_global:
        return f"{ip} is a reserved address"
    return None


def resolve(host: str, port: int) -> list[tuple[int, tuple]]:
    """(family, sockaddr) for each address of `host` (tests replace this to fake public DNS)."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:  # an address literal needs no lookup
        if literal.version == 6:
            return [(socket.AF_INET6, (str(literal), port, 0, 0))]
        return [(socket.AF_INET, (str(literal), port))]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [(family, sockaddr) for family, _type, _proto, _name, sockaddr in infos]


def connect(family: int, sockaddr: tuple, timeout: float | None) -> socket.socket:
    """Connect one TCP socket to exactly `sockaddr` (tests replace this to reach a local server)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def _checked_addresses(host: str, port: int, allow_private: bool) -> list[tuple[int, tuple]]:
    addresses = resolve(host, port)
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"no address for {host}")
    if not allow_private:
        # Every answer is checked, not only the first: a name that also resolves to 127.0.0.1 is refused.
        for _family, sockaddr in addresses:
            why = address_refusal(str(sockaddr[0]))
            if why:
                raise _Refusal(host, why)
    return addresses


def _open(host: str, port: int, timeout: float | None, allow_private: bool) -> socket.socket:
    last: OSError | None = None
    for family, sockaddr in _checked_addresses(host, port, allow_private):
        try:
            return connect(family, sockaddr, timeout)
        except OSError as exc:
            last = exc
    assert last is not None  # noqa: S101 - _checked_addresses never returns an empty list
    raise last


def open_socket(host: str, port: int, *, timeout: float | None, allow_private: bool) -> socket.socket:
    """A TCP socket to a checked address of `host` (for callers that speak TLS themselves)."""
    try:
        return _open(host, port, timeout, allow_private)
    except _Refusal as exc:
        raise OutboundRefused(exc.host, exc.reason) from None


# ------------------------------------------------------------------------------------ transport

def _timeout_value(timeout) -> float | None:
    return timeout if isinstance(timeout, int | float) else None


def _pinned_classes(allow_private: bool):
    def _new_conn(self):
        try:
            sock = _open(self._dns_host, self.port, _timeout_value(self.timeout), allow_private)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        except TimeoutError as e:
            raise ConnectTimeoutError(self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})") from e
        except OSError as e:
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e
        return sock

    http_conn = type("PinnedHTTPConnection", (HTTPConnection,), {"_new_conn": _new_conn})
    https_conn = type("PinnedHTTPSConnection", (HTTPSConnection,), {"_new_conn": _new_conn})
    return {
        "http": type("PinnedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }


class PinnedAdapter(HTTPAdapter):
    """requests adapter whose connections resolve, check and connect to the checked address."""

    def __init__(self, *, allow_private: bool, **kw):
        self.allow_private = allow_private
        super().__init__(**kw)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pinned_classes(self.allow_private)

    def proxy_manager_for(self, proxy, **proxy_kwargs):  # pragma: no cover - trust_env is off
        raise OutboundRefused(str(proxy), "proxies are not used for outbound requests")


_local = threading.local()


def session(*, allow_private: bool) -> requests.Session:
    """One session a thread and policy: connection reuse for checks polled every minute."""
    key = "allow" if allow_private else "public"
    s = getattr(_local, key, None)
    if s is None:
        s = requests.Session()
        s.trust_env = False  # no proxy or .netrc from the environment
        s.headers["User-Agent"] = USER_AGENT
        s.mount("http://", PinnedAdapter(allow_private=allow_private))
        s.mount("https://", PinnedAdapter(allow_private=allow_private))
        setattr(_local, key, s)
    return s


def _origin(url: str) -> tuple[str, str, int | None]:
    p = urlsplit(url)
    return p.scheme, (p.hostname or "").lower(), p.port


def request(method: str, url: str, *, allow_private: bool, headers: dict | None = None,
            max_redirects: int = MAX_REDIRECTS, **kwargs) -> requests.Response:
    """Send one request; follow up to `max_redirects` redirects, each hop checked like the first.

    Raises OutboundRefused (a requests ConnectionError) when any hop's address is not allowed, and
    the usual requests exceptions otherwise. `kwargs` go to requests (timeout, json, data, auth, stream).
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise requests.exceptions.InvalidSchema(f"only http and https URLs are fetched, not {urlsplit(url).scheme or 'none'}:")
    s = session(allow_private=allow_private)
    first = _origin(url)
    hops = 0
    while True:
        try:
            resp = s.request(method, url, headers=headers, allow_redirects=False, **kwargs)
        except _Refusal as exc:
            raise OutboundRefused(exc.host, exc.reason) from None
        location = resp.headers.get("Location")
        if resp.status_code not in REDIRECT_CODES or not location or hops >= max_redirects:
            return resp
        resp.close()
        hops += 1
        url = urljoin(url, location)
        if urlsplit(url).scheme not in ("http", "https"):
            raise requests.exceptions.InvalidSchema(f"redirected to a {urlsplit(url).scheme}: URL")
        if resp.status_code == 303 or (resp.status_code in (301, 302) and method.upper() == "POST"):
            method = "GET"
            kwargs.pop("data", None)
            kwargs.pop("json", None)
        if _origin(url) != first:
            # Secret headers and credentials are for the origin the operator configured.
            headers = None
            kwargs.pop("auth", None)


# ------------------------------------------------------------------------------------ display

_SECRET_PARAM = re.compile(r"(token|key|secret|passw|pwd|sig|signature|auth|credential|session|code)", re.I)
_SECRET_PATHS = [
    (re.compile(r"^(hooks\.slack(?:-gov)?\.com)$", re.I), re.compile(r"^(/services|/workflows|/triggers)/.+$")),
    (re.compile(r"(^|\.)discord(?:app)?\.com$", re.I), re.compile(r"^(/api/webhooks)/.+$")),
    (re.compile(r"(^|\.)webhook\.office\.com$", re.I), re.compile(r"^(/webhookb2)/.+$")),
]
_TOKENISH = re.compile(r"^[A-Za-z0-9_\-]{24,}$")
MASK = "***"


def redact_url(url: str) -> str:
    """The URL with userinfo, token-like query values and webhook secrets replaced by ***."""
    if not url:
        return url
    try:
        p = urlsplit(str(url))
        host = p.hostname or ""
    except ValueError:
        return MASK
    netloc = p.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    path = p.path
    for host_re, path_re in _SECRET_PATHS:
        if host_re.search(host) and path_re.match(path):
            path = path_re.sub(lambda m: f"{m.group(1)}/{MASK}", path)
            break
    else:
        path = "/".join(MASK if _TOKENISH.match(seg) and any(c.isdigit() for c in seg) else seg for seg in path.split("/"))
    query = p.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((p.scheme, netloc, path, query, ""))


def error_words(exc: BaseException, url: str) -> str:
    """An error to store: the exception class and the host, never the URL (it may hold a token)."""
    host = ""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        pass
    if isinstance(exc, OutboundRefused):
        return f"OutboundRefused to {host or 'the destination'}: {exc.reason}"
    return f"{type(exc).__name__} to {host or 'the destination'}"


def allows_private_targets(environment) -> bool:
    """The environment's outbound policy (a row of portal.health's OutboundPolicy); none means public only."""
    if environment is None:
        return False
    try:
        policy = environment.outbound_policy
    except ObjectDoesNotExist:
        return False
    return bool(policy.allow_private_targets)
