"""The portal's CloudFlare wrapper (what portal.cloud.aws is for boto3): every CloudFlare call goes here.

Through CloudFlare's official Python library. An Environment names its zone, its account (R2), the
API token (encrypted on the row) and, only when it is not CloudFlare's own API, a base URL. Functions
take the Environment first and raise CloudError naming the operation; they never ask who answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cloudflare as cf_lib
from cloudflare import Cloudflare
from django.conf import settings

from portal.cloud.errors import CloudError

__all__ = [
    "CacheRule", "CfRecord", "R2Bucket", "RateLimitRule", "Zone", "cache_rules", "dns_records", "r2_buckets",
    "r2_storage_bytes", "rate_limit_rules", "sdk", "zone",
]

RATE_LIMIT_PHASE = "http_ratelimit"
CACHE_PHASE = "http_request_cache_settings"


@dataclass(frozen=True)
class Zone:
    id: str
    name: str
    status: str
    plan: str = ""


@dataclass(frozen=True)
class CfRecord:
    name: str
    type: str
    content: str
    proxied: bool
    ttl: int = 1


@dataclass(frozen=True)
class R2Bucket:
    name: str
    location: str = ""
    created: str = ""


@dataclass(frozen=True)
class RateLimitRule:
    id: str
    description: str
    expression: str
    action: str
    enabled: bool
    requests_per_period: int | None
    period: int | None
    characteristics: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CacheRule:
    id: str
    description: str
    expression: str
    enabled: bool
    cache: bool
    edge_ttl: int | None = None


def sdk(env) -> Cloudflare:
    """A client for the environment (token from the row, or CLOUDFLARE_API_TOKEN when the row has none)."""
    token = env.cloudflare_api_token or getattr(settings, "CLOUDFLARE_API_TOKEN", "")
    if not token:
        raise CloudError("NotConfigured", "CloudFlare", env.name, "the environment has no CloudFlare API token")
    kwargs: dict[str, Any] = {"api_token": token, "max_retries": 1,
                              "timeout": float(getattr(settings, "AWS_READ_TIMEOUT", 15))}
    if env.cloudflare_base_url:
        kwargs["base_url"] = env.cloudflare_base_url
    return Cloudflare(**kwargs)


def _call(env, operation: str, fn):
    try:
        return fn()
    except cf_lib.APIStatusError as exc:
        code = {401: "Unauthorized", 403: "AccessDenied", 404: "NotFound", 429: "Throttling"}.get(exc.status_code, f"HTTP{exc.status_code}")
        raise CloudError(code, operation, env.name, str(exc)[:300]) from exc
    except cf_lib.APIConnectionError as exc:
        raise CloudError("EndpointConnectionError", operation, env.name, str(exc)[:300]) from exc
    except cf_lib.CloudflareError as exc:
        raise CloudError("CloudFlareError", operation, env.name, str(exc)[:300]) from exc


def _plain(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(by_alias=False)
    return obj


def zone(env) -> Zone:
    name = env.cloudflare_zone
    if not name:
        raise CloudError("NotConfigured", "ListZones", env.name, "the environment names no CloudFlare zone")
    found = _call(env, "ListZones", lambda: list(sdk(env).zones.list(name=name)))
    if not found:
        raise CloudError("NotFound", "ListZones", env.name, f"CloudFlare has no zone {name!r}")
    z = found[0]
    return Zone(id=z.id, name=z.name, status=str(z.status or ""), plan=str(getattr(z.plan, "name", "") or ""))


def dns_records(env, zone_id: str | None = None) -> list[CfRecord]:
    zid = zone_id or zone(env).id
    rows = _call(env, "ListDnsRecords", lambda: list(sdk(env).dns.records.list(zone_id=zid)))
    out = []
    for r in rows:
        d = _plain(r)
        out.append(CfRecord(name=str(d.get("name", "")), type=str(d.get("type", "")), content=str(d.get("content", "")),
                            proxied=bool(d.get("proxied")), ttl=int(d.get("ttl") or 1)))
    return sorted(out, key=lambda r: (r.name, r.type))


def _entrypoint(env, zone_id: str, phase: str, operation: str) -> list[dict]:
    def read():
        try:
            return sdk(env).rulesets.phases.get(phase, zone_id=zone_id)
        except cf_lib.NotFoundError:
            return None  # no rules in this phase yet

    ruleset = _call(env, operation, read)
    if ruleset is None:
        return []
    return [_plain(r) for r in (ruleset.rules or [])]


def rate_limit_rules(env, zone_id: str | None = None) -> list[RateLimitRule]:
    zid = zone_id or zone(env).id
    out = []
    for r in _entrypoint(env, zid, RATE_LIMIT_PHASE, "GetRateLimitRules"):
        rl = r.get("ratelimit") or {}
        out.append(RateLimitRule(id=str(r.get("id") or ""), description=str(r.get("description") or ""),
                                 expression=str(r.get("expression") or ""), action=str(r.get("action") or ""),
                                 enabled=r.get("enabled") is not False, requests_per_period=rl.get("requests_per_period"),
                                 period=rl.get("period"), characteristics=list(rl.get("characteristics") or [])))
    return out


def cache_rules(env, zone_id: str | None = None) -> list[CacheRule]:
    zid = zone_id or zone(env).id
    out = []
    for r in _entrypoint(env, zid, CACHE_PHASE, "GetCacheRules"):
        params = r.get("action_parameters") or {}
        ttl = (params.get("edge_ttl") or {}).get("default")
        out.append(CacheRule(id=str(r.get("id") or ""), description=str(r.get("description") or ""),
                             expression=str(r.get("expression") or ""), enabled=r.get("enabled") is not False,
                             cache=bool(params.get("cache")), edge_ttl=ttl))
    return out


def _account(env, operation: str) -> str:
    if not env.cloudflare_account_id:
        raise CloudError("NotConfigured", operation, env.name, "the environment names no CloudFlare account id")
    return env.cloudflare_account_id


def r2_buckets(env) -> list[R2Bucket]:
    account = _account(env, "ListR2Buckets")
    resp = _call(env, "ListR2Buckets", lambda: sdk(env).r2.buckets.list(account_id=account))
    return sorted((R2Bucket(name=b.name or "", location=str(b.location or ""), created=str(b.creation_date or ""))
                   for b in (resp.buckets or [])), key=lambda b: b.name)


def r2_storage_bytes(env) -> int:
    """The account's R2 storage (standard and infrequent access, published objects' payload bytes)."""
    account = _account(env, "GetR2Metrics")
    m = _call(env, "GetR2Metrics", lambda: sdk(env).r2.buckets.metrics.list(account_id=account))
    total = 0.0
    for cls in (m.standard, m.infrequent_access):
        published = getattr(cls, "published", None) if cls is not None else None
        total += float(getattr(published, "payload_size", 0) or 0) + float(getattr(published, "metadata_size", 0) or 0)
    return int(total)
