"""The environment form's edge and Grafana settings: providers, zone, account, and the write-only tokens."""

from __future__ import annotations

import pytest
from django.db import connection

from portal.audit.models import AuditEvent
from portal.cloud.models import Environment
from portal.cloud.services import environment_update
from portal.cloud.tests.forms import posted_form

TOKEN = "cf-s3cret-token-0123456789"  # noqa: S105 - a test value
GRAFANA_TOKEN = "glsa_grafana-s3cret"  # noqa: S105 - a test value
EDIT = "/environments/staging/edit/"


@pytest.fixture
def staging(db):
    return Environment.objects.create(name="staging", description="before", region="eu-west-1")


def _stored(env: Environment, column: str) -> str:
    with connection.cursor() as cur:
        cur.execute(f"select {column} from cloud_environment where id=%s", [env.pk])  # noqa: S608 - a column name of ours
        return cur.fetchone()[0]


def _updates():
    return AuditEvent.objects.filter(verb="environment.update").order_by("id")


def test_admin_switches_dns_to_cloudflare_token_encrypted_never_echoed_nor_audited(client, admin_user, staging):
    client.force_login(admin_user)
    form = client.get(EDIT).content.decode()
    assert "Edge: DNS, CDN and storage" in form and "Dashboards (Grafana)" in form
    assert 'name="cloudflare_api_token"' in form and 'name="clear_cloudflare_api_token"' not in form  # nothing to clear yet
    resp = client.post(EDIT, posted_form(staging, dns_provider="cloudflare", cloudflare_zone="FairTradeWorker.com.",
                                         cloudflare_api_token=TOKEN, grafana_url="https://grafana.example.com",
                                         grafana_token=GRAFANA_TOKEN))
    assert resp.status_code == 302, resp.content.decode()[:3000]
    staging.refresh_from_db()
    assert (staging.dns_provider, staging.cdn_provider, staging.storage_provider) == ("cloudflare", "aws", "aws")
    assert staging.cloudflare_zone == "fairtradeworker.com" and staging.grafana_url == "https://grafana.example.com"
    assert staging.cloudflare_api_token == TOKEN and staging.grafana_token == GRAFANA_TOKEN
    for column, clear in (("cloudflare_api_token", TOKEN), ("grafana_token", GRAFANA_TOKEN)):
        raw = _stored(staging, column)
        assert raw.startswith("enc:") and clear not in raw
    event = _updates().get()
    assert event.extra == {"external_id": "unchanged", "cloudflare_api_token": "replaced", "grafana_token": "replaced"}
    assert event.after["dns_provider"] == "cloudflare" and event.after["cloudflare_zone"] == "fairtradeworker.com"
    row = str(event.before) + str(event.after) + str(event.extra)
    assert TOKEN not in row and GRAFANA_TOKEN not in row
    again = client.get(EDIT).content.decode()
    assert TOKEN not in again and GRAFANA_TOKEN not in again
    assert 'name="clear_cloudflare_api_token"' in again and 'name="clear_grafana_token"' in again
    assert again.count("One is stored: leave empty to keep it.") == 2


def test_empty_token_keeps_the_stored_one_and_clear_removes_it(client, admin_user, staging):
    staging.dns_provider, staging.cloudflare_zone, staging.cloudflare_api_token = "cloudflare", "fairtradeworker.com", TOKEN
    staging.save()
    client.force_login(admin_user)

    kept = client.post(EDIT, posted_form(staging, description="edited", cloudflare_api_token=""))
    assert kept.status_code == 302
    staging.refresh_from_db()
    assert staging.description == "edited" and staging.cloudflare_api_token == TOKEN
    assert _updates().get().extra["cloudflare_api_token"] == "unchanged"

    # clearing while DNS is still on CloudFlare leaves it without a token: refused, nothing changes
    refused = client.post(EDIT, posted_form(staging, clear_cloudflare_api_token="on"))
    assert refused.status_code == 400 and b"CloudFlare for DNS needs an API token" in refused.content
    staging.refresh_from_db()
    assert staging.cloudflare_api_token == TOKEN and _updates().count() == 1

    cleared = client.post(EDIT, posted_form(staging, dns_provider="aws", clear_cloudflare_api_token="on"))
    assert cleared.status_code == 302
    staging.refresh_from_db()
    assert staging.cloudflare_api_token == "" and staging.dns_provider == "aws"
    event = _updates().last()
    assert event.extra == {"external_id": "unchanged", "cloudflare_api_token": "cleared", "grafana_token": "unchanged"}
    assert TOKEN not in str(event.before) + str(event.after)


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"dns_provider": "cloudflare", "cloudflare_api_token": TOKEN}, "cloudflare_zone",
     "CloudFlare for DNS needs the zone"),
    ({"cdn_provider": "cloudflare", "cloudflare_zone": "fairtradeworker.com"}, "cloudflare_api_token",
     "CloudFlare for the CDN needs an API token (none is stored)"),
    ({"storage_provider": "cloudflare", "cloudflare_zone": "fairtradeworker.com", "cloudflare_api_token": TOKEN},
     "cloudflare_account_id", "Storage on CloudFlare (R2) needs the account id"),
    ({"grafana_url": "grafana.example.com", "grafana_token": GRAFANA_TOKEN}, "grafana_url",
     "Give a full http(s) URL with a host"),
    ({"cloudflare_base_url": "ftp://127.0.0.1/client/v4"}, "cloudflare_base_url", "Give a full http(s) URL with a host"),
    ({"grafana_url": "https://"}, "grafana_url", "Give a full http(s) URL with a host"),
])
def test_edge_settings_refused_in_words_and_nothing_changes(client, admin_user, staging, changes, field, words):
    client.force_login(admin_user)
    before = {k: getattr(staging, k) for k in ("dns_provider", "cdn_provider", "storage_provider", "cloudflare_zone",
                                                "grafana_url", "cloudflare_base_url", "description")}
    bad = client.post(EDIT, posted_form(staging, description="should not save", **changes))
    assert bad.status_code == 400
    assert bad.context["form"].errors[field] and words in bad.context["form"].errors[field][0]
    assert words in bad.content.decode()
    staging.refresh_from_db()
    assert {k: getattr(staging, k) for k in before} == before
    assert staging.cloudflare_api_token == "" and staging.grafana_token == ""
    assert not _updates().exists()
    page = bad.content.decode()
    assert TOKEN not in page and GRAFANA_TOKEN not in page  # a refused form does not echo the typed token either


def test_a_token_from_the_settings_is_enough_for_cloudflare(client, admin_user, staging, settings):
    settings.CLOUDFLARE_API_TOKEN = TOKEN
    client.force_login(admin_user)
    resp = client.post(EDIT, posted_form(staging, dns_provider="cloudflare", cloudflare_zone="fairtradeworker.com"))
    assert resp.status_code == 302
    staging.refresh_from_db()
    assert staging.dns_provider == "cloudflare" and staging.cloudflare_api_token == ""


def test_viewer_and_lead_cannot_edit(client, lead, viewer, staging):
    for person in (viewer, lead):
        client.force_login(person)
        assert client.post(EDIT, posted_form(staging, dns_provider="cloudflare", cloudflare_zone="z.example",
                                             cloudflare_api_token=TOKEN)).status_code == 403
    staging.refresh_from_db()
    assert staging.dns_provider == "aws" and staging.cloudflare_api_token == ""


def test_new_environment_on_cloudflare_audits_which_secrets_were_set(client, admin_user, db):
    client.force_login(admin_user)
    data = posted_form(Environment(), name="edge", dns_provider="cloudflare", cdn_provider="cloudflare",
                       storage_provider="cloudflare", cloudflare_zone="fairtradeworker.com", cloudflare_account_id="acc-1",
                       cloudflare_api_token=TOKEN)
    resp = client.post("/environments/new/", data)
    assert resp.status_code == 302, resp.content.decode()[:3000]
    env = Environment.objects.get(name="edge")
    assert env.storage_provider == "cloudflare" and env.cloudflare_account_id == "acc-1" and env.cloudflare_api_token == TOKEN
    event = AuditEvent.objects.get(verb="environment.create")
    assert event.extra == {"external_id": "none", "cloudflare_api_token": "set", "grafana_token": "none"}
    assert TOKEN not in str(event.after)


def test_service_refuses_an_unknown_secret(admin_user, staging):
    with pytest.raises(ValueError, match="not a secret"):
        environment_update(environment=staging, changes={}, actor=admin_user, secrets={"password": "x"})
