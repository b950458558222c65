"""The client's real address behind the reverse proxy, and the address/token guards of /metrics and the API docs.

X-Forwarded-For is believed only when the connection comes from a configured proxy
(settings.TRUSTED_PROXIES): then the right-most address that is not itself a trusted proxy is the
client (the left part of the header is whatever the client chose to send). From any other peer the
header is ignored, so a client cannot pick the address its failed logins are counted against.
"""

from __future__ import annotations

import hmac
import ipaddress
from functools import lru_cache, wraps

from django.conf import settings
from django.http import HttpResponse

from portal.accounts.models import ApiToken, hash_token

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@lru_cache(maxsize=32)
def _networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _address(raw: str) -> Address | None:
    raw = (raw or "").strip()
    if raw.startswith("[") and "]" in raw:  # [v6]:port
        raw = raw[1:raw.index("]")]
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _in(addr: Address | None, networks: tuple[Network, ...]) -> bool:
    return addr is not None and any(addr in n for n in networks)


def client_ip(request) -> str:
    """The address the request came from, seen through the trusted proxies (axes' AXES_CLIENT_IP_CALLABLE)."""
    remote = request.META.get("REMOTE_ADDR", "") or ""
    proxies = _networks(tuple(getattr(settings, "TRUSTED_PROXIES", ()) or ()))
    peer = _address(remote)
    if not proxies or not _in(peer, proxies):
        return remote
    header = request.META.get(getattr(settings, "FORWARDED_FOR_HEADER", "HTTP_X_FORWARDED_FOR"), "")
    nearest = peer
    for hop in reversed([h for h in header.split(",") if h.strip()]):
        addr = _address(hop)
        if addr is None:
            break  # a malformed hop: believe no further than the last proxy we trust
        if not _in(addr, proxies):
            return str(addr)
        nearest = addr
    return str(nearest)


def address_allowed(request, cidrs) -> bool:
    return _in(_address(client_ip(request)), _networks(tuple(cidrs or ())))


def _bearer(request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _refused(what: str) -> HttpResponse:
    return HttpResponse(f"{what} is restricted: not from an allowed address, and no valid token.\n", status=403,
                        content_type="text/plain; charset=utf-8")


def metrics_allowed(request) -> bool:
    """Open unless METRICS_ALLOWED_CIDRS or METRICS_TOKEN is set; then either one lets a scrape in."""
    cidrs = getattr(settings, "METRICS_ALLOWED_CIDRS", ()) or ()
    token = getattr(settings, "METRICS_TOKEN", "") or ""
    if not cidrs and not token:
        return True
    if token and hmac.compare_digest(_bearer(request).encode(), token.encode()):
        return True
    return bool(cidrs) and address_allowed(request, cidrs)


def metrics_guard(view):
    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not metrics_allowed(request):
            return _refused("/metrics")
        return view(request, *args, **kwargs)

    return wrapped


def docs_allowed(request) -> bool:
    """Open unless API_DOCS_ALLOWED_CIDRS or API_DOCS_REQUIRE_TOKEN is set; then an allowed address, a
    valid API token (any scope) or a logged-in portal user lets the request in."""
    cidrs = getattr(settings, "API_DOCS_ALLOWED_CIDRS", ()) or ()
    if not cidrs and not getattr(settings, "API_DOCS_REQUIRE_TOKEN", False):
        return True
    if cidrs and address_allowed(request, cidrs):
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.has_perm("accounts.view_portal"):
        return True
    raw = _bearer(request)
    if raw and len(raw) <= 200:
        return ApiToken.objects.filter(ApiToken.usable_q(), token_hash=hash_token(raw)).exists()
    return False


def docs_guard(view):
    """NinjaAPI(docs_decorator=...): wraps /api/v1/openapi.json and /api/v1/docs."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not docs_allowed(request):
            return _refused("The API description")
        return view(request, *args, **kwargs)

    return wrapped
