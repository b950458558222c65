"""The seed's contradictions are shown to a lead; whether a phase's instance range is per colour or for the
whole platform is the lead's choice, and deployments' bounds follow it."""

from __future__ import annotations

import time

import pytest

from deployments.bounds import phase_bounds
from portal.accounts.reauth import AUTH_AT_KEY
from portal.audit.models import AuditEvent
from portal.cloud.models import Environment
from portal.phases.contradictions import seed_contradictions
from portal.phases.models import PhaseSettings
from portal.phases.services import PhaseError, instance_range_scope_set

pytestmark = pytest.mark.usefixtures("growth_phases")


def test_the_three_contradictions_of_the_seed_are_found(db):
    found = {c.slug: c for c in seed_contradictions()}
    assert set(found) == {"instances-phase-1", "cache-memory", "optimized-budget-phase-4"}
    assert found["instances-phase-1"].title == "Phase 1 says 2-4 instances; the compute line says auto-scale 4-32"
    assert found["cache-memory"].title == "The cache is 1 GB on cache.r5.large, a node type with about 13.07 GiB"
    assert found["optimized-budget-phase-4"].title == "Phase 4's $7,000 is the optimized figure, not the cost table's $9,675"


def test_the_contradictions_are_listed_on_the_phases_page_for_a_lead(client, lead, viewer):
    client.force_login(lead)
    page = client.get("/phases/").content.decode()
    assert 'data-testid="contradictions"' in page
    assert "Phase 1 says 2-4 instances; the compute line says auto-scale 4-32" in page
    assert "The cache is 1 GB on cache.r5.large, a node type with about 13.07 GiB" in page
    assert "Phase 4&#x27;s $7,000 is the optimized figure" in page
    assert 'data-testid="range-scope-form"' in page
    client.force_login(viewer)
    page = client.get("/phases/").content.decode()
    assert 'data-testid="contradictions"' not in page
    assert "Instance ranges are read <strong>per colour (blue and green each)</strong>" in page


def test_a_lead_reads_the_range_for_the_whole_platform_and_the_bounds_follow(client, lead):
    assert (phase_bounds().instances_min, phase_bounds().instances_max) == (2, 4)
    client.force_login(lead)
    resp = client.post("/phases/range-scope/", {"scope": "platform"}, follow=True)
    assert "each colour scales within 1-2 in this phase" in resp.content.decode()
    assert (phase_bounds().instances_min, phase_bounds().instances_max) == (1, 2)
    event = AuditEvent.objects.get(verb="phase.instance_range_scope")
    assert event.before["instance_range_scope"] == "per_colour" and event.after["per_colour"] == [1, 2]
    page = client.get("/phases/").content.decode()
    assert "2–4 instances for the platform" in page
    # The same choice again changes nothing and writes no second row.
    client.post("/phases/range-scope/", {"scope": "platform"})
    assert AuditEvent.objects.filter(verb="phase.instance_range_scope").count() == 1


def test_only_a_lead_chooses(client, responder):
    client.force_login(responder)
    assert client.post("/phases/range-scope/", {"scope": "platform"}).status_code == 403
    assert not PhaseSettings.objects.exists()


def test_an_unknown_scope_is_refused(lead):
    with pytest.raises(PhaseError, match="per_colour or platform"):
        instance_range_scope_set(scope="per-region", actor=lead)


def test_with_production_registered_an_old_login_confirms_the_password_first(client, lead, settings):
    Environment.objects.create(name="production", is_production=True, region="us-east-1", endpoint_url="http://127.0.0.1:9")
    client.force_login(lead)
    session = client.session
    session[AUTH_AT_KEY] = time.time() - settings.REAUTH_SECONDS - 60
    session.save()
    resp = client.post("/phases/range-scope/", {"scope": "platform"})
    assert resp.status_code == 302 and resp["Location"].startswith("/accounts/reauth/")
    assert not PhaseSettings.objects.exists()
    assert not AuditEvent.objects.filter(verb="phase.instance_range_scope").exists()
