"""The edge verifications flip on real state: the CloudFlare stand-in (through the official library),
a real Prometheus, the listener's TLS policy in moto, a Grafana stand-in."""

import pytest
from cloudflare import Cloudflare

from portal.checklist.verify import run_check
from portal.cloud import cloudflare as cf
from portal.sandbox import cloudflare_standin
from portal.sandbox.platform import DOMAIN, register_cloudflare
from tests.plugins.aws import free_port


@pytest.fixture
def edge(aws_platform):
    """The sandbox platform (moto in process) with CloudFlare in front of it, as `make run` has it."""
    server = cloudflare_standin.CloudflareStandIn("127.0.0.1", free_port())
    cloudflare_standin.seed_state(server.state, domain=DOMAIN, load_balancer_dns=aws_platform.platform["load_balancer_dns"],
                                  buckets=aws_platform.buckets)
    server.start()
    env = register_cloudflare(aws_platform, base_url=server.url, account_id=server.state.account_id, token=server.state.token)
    env.platform, env.standin = aws_platform.platform, server
    yield env
    server.stop()


def _lib(env) -> Cloudflare:
    return Cloudflare(api_token=env.standin.state.token, base_url=env.standin.url)


def _move(env, host: str, **changes):
    lib = _lib(env)
    zone = cf.zone(env)
    rec = next(r for r in lib.dns.records.list(zone_id=zone.id) if r.name == host)
    values = {"type": rec.type, "name": rec.name, "content": rec.content, "proxied": rec.proxied, "ttl": 1, **changes}
    lib.dns.records.edit(rec.id, zone_id=zone.id, **values)


def test_dns_passes_through_cloudflare_and_fails_when_a_record_leaves_the_load_balancer(edge, items):
    r = run_check("dns", edge)
    assert r.outcome == "passing", r.summary
    assert r.evidence["provider"] == "cloudflare" and "proxied" in r.summary
    _move(edge, f"app.{DOMAIN}", content="old-server.example.net")
    r = run_check("dns", edge)
    assert r.outcome == "failing"
    assert f"app.{DOMAIN} points at old-server.example.net, not the load balancer" in r.summary


def test_dns_fails_when_the_record_is_dns_only(edge, items):
    _move(edge, DOMAIN, proxied=False)
    r = run_check("dns", edge)
    assert r.outcome == "failing" and "not proxied" in r.summary


def test_cdn_fails_when_the_video_host_is_not_proxied(edge, items):
    assert run_check("cdn", edge).outcome == "passing"
    _move(edge, f"videos.{DOMAIN}", proxied=False)
    r = run_check("cdn", edge)
    assert r.outcome == "failing" and f"videos.{DOMAIN} is not proxied" in r.summary


def test_dns_on_aws_still_reads_route53(aws_platform, items):
    r = run_check("dns", aws_platform)
    assert r.outcome == "passing" and "Route" not in r.summary and r.evidence.get("provider") is None
