"""The CloudFlare stand-in answers CloudFlare's official library (the portal's wrapper) as CloudFlare does."""

import pytest
from cloudflare import Cloudflare, PermissionDeniedError

from portal.cloud import cloudflare as cf
from portal.cloud.errors import CloudError
from portal.cloud.models import Environment
from portal.sandbox import cloudflare_standin
from tests.plugins.aws import free_port

DOMAIN = "fairtradeworker.example"
ALB = "ftw-alb-123.us-east-1.elb.amazonaws.com"


@pytest.fixture
def standin():
    server = cloudflare_standin.CloudflareStandIn("127.0.0.1", free_port())
    cloudflare_standin.seed_state(server.state, domain=DOMAIN, load_balancer_dns=ALB,
                                  buckets={"photos": "ftw-photos", "videos": "ftw-videos"}, r2_bytes=5 * 1024**3)
    server.start()
    yield server
    server.stop()


def _env(server, **kw):
    values = {"name": "edge", "cloudflare_zone": DOMAIN, "cloudflare_account_id": server.state.account_id,
              "cloudflare_api_token": server.state.token, "cloudflare_base_url": server.url}
    values.update(kw)
    return Environment(**values)


def test_the_seeded_zone_fronts_the_load_balancer_proxied(standin):
    env = _env(standin)
    zone = cf.zone(env)
    assert zone.name == DOMAIN and zone.status == "active"
    apex = [r for r in cf.dns_records(env) if r.name == DOMAIN]
    assert [(r.type, r.content, r.proxied) for r in apex] == [("CNAME", ALB, True)]


def test_r2_buckets_and_their_bytes(standin):
    env = _env(standin)
    assert [b.name for b in cf.r2_buckets(env)] == ["ftw-photos", "ftw-videos"]
    assert cf.r2_storage_bytes(env) == 5 * 1024**3


def test_rate_limit_and_cache_rules_are_seeded_per_user_and_per_endpoint(standin):
    env = _env(standin)
    rules = cf.rate_limit_rules(env)
    assert any('http.request.headers["authorization"]' in r.characteristics for r in rules)
    assert any("http.request.uri.path" in r.expression and r.requests_per_period == 10 for r in rules)
    assert all(r.cache for r in cf.cache_rules(env))


def test_a_record_edited_through_the_official_library_reads_back(standin):
    env = _env(standin)
    lib = Cloudflare(api_token=standin.state.token, base_url=standin.url)
    zone = cf.zone(env)
    rec = next(r for r in lib.dns.records.list(zone_id=zone.id) if r.name == f"app.{DOMAIN}")
    lib.dns.records.edit(rec.id, zone_id=zone.id, type="CNAME", name=f"app.{DOMAIN}", content="elsewhere.example",
                         proxied=False, ttl=300)
    moved = next(r for r in cf.dns_records(env) if r.name == f"app.{DOMAIN}")
    assert (moved.content, moved.proxied, moved.ttl) == ("elsewhere.example", False, 300)


def test_a_wrong_token_is_refused_and_named_as_a_cloud_error(standin):
    with pytest.raises(PermissionDeniedError):
        Cloudflare(api_token="wrong", base_url=standin.url).zones.list().result  # noqa: B018
    with pytest.raises(CloudError) as exc:
        cf.zone(_env(standin, cloudflare_api_token="wrong"))
    assert exc.value.code == "AccessDenied" and exc.value.operation == "ListZones"


def test_an_unknown_zone_is_not_found(standin):
    with pytest.raises(CloudError) as exc:
        cf.zone(_env(standin, cloudflare_zone="other.example"))
    assert exc.value.is_not_found


def test_the_sandbox_command_starts_the_stand_in_and_puts_cloudflare_in_front(aws_platform, settings):
    """What `make run` does after building the platform: the stand-in seeded with the built load balancer,
    the sandbox environment reading DNS, CDN and storage from it, and the checks passing through it."""
    import io
    from types import SimpleNamespace

    from portal.checklist.verify import run_check
    from portal.sandbox.management.commands.sandbox import Command

    settings.SANDBOX_CLOUDFLARE_PORT = free_port()
    sandbox = SimpleNamespace(names=aws_platform.platform, env=aws_platform)
    command = Command(stdout=io.StringIO())
    edge = command.start_cloudflare("127.0.0.1", sandbox)
    try:
        env = Environment.objects.get(pk=aws_platform.pk)
        assert (env.dns_provider, env.cdn_provider, env.storage_provider) == ("cloudflare", "cloudflare", "cloudflare")
        assert env.cloudflare_base_url == edge.url and env.cloudflare_api_token == edge.state.token
        assert f"CloudFlare API stand-in on {edge.url}" in command.stdout.getvalue()
        for slug in ("dns", "cdn", "security-audit"):
            result = run_check(slug, env)
            assert result.outcome == "passing", (slug, result.summary)
    finally:
        edge.stop()
