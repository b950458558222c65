"""Storage against the year-one estimates when the media buckets live in CloudFlare R2 (the sandbox's
CloudFlare stand-in in front of the in-process AWS sandbox), and on S3 as before."""

from __future__ import annotations

import random
import re
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone

from portal.cloud import aws
from portal.phases.status import phase_status
from portal.plan.loader import load_plan
from portal.sandbox import cloudflare_standin
from portal.sandbox.simulator import bucket_sizes_at, tick

ROOT = Path(__file__).resolve().parents[3]
ESTIMATES = {e["bucket"]: int(e["bytes"]) for e in load_plan()["storage_estimates"] if e.get("bucket")}
N = 123_456_789_012


@pytest.fixture
def edge(cloudflare_edge):
    return cloudflare_edge


def _row(body: str, slug: str) -> str:
    m = re.search(rf'<tr data-testid="storage-{slug}">(.*?)</tr>', body, re.S)
    assert m, f"no storage row {slug}"
    return m.group(1)


def test_storage_on_cloudflare_shows_one_r2_row_with_the_account_total_against_the_summed_estimate(edge, viewer, client):
    edge.standin.state.r2_bytes = N
    rows = phase_status(live=True).storage
    assert rows.ok, rows.error
    estimate = sum(ESTIMATES.values())
    assert rows.data == [{
        "slug": "r2", "name": "Photos + Videos + Documents", "provider": "R2",
        "bucket": ", ".join(edge.buckets[b] for b in ("photos", "videos", "documents")),
        "buckets": [edge.buckets[b] for b in ("photos", "videos", "documents")],
        "used_bytes": N, "estimate_bytes": estimate, "estimate_display": "~6.16 TB",
        "percent": round(N * 100 / estimate, 2)}]

    client.force_login(viewer)
    body = client.get("/phases/").content.decode()
    assert "<th>Provider</th>" in body
    row = _row(body, "r2")
    assert 'data-testid="storage-provider-r2">R2' in row and f'title="{N} bytes"' in row
    assert "~6.16 TB" in row and f'data-testid="storage-percent-r2">{round(N * 100 / estimate, 2)}%' in row
    assert 'data-testid="storage-photos"' not in body  # the photos are not counted twice, on S3 too


def test_buckets_r2_does_not_hold_stay_s3_rows(edge):
    state = edge.standin.state
    state.buckets = [b for b in state.buckets if b["name"] == edge.buckets["photos"]]
    state.r2_bytes = N
    rows = {r["slug"]: r for r in phase_status(live=True).storage.data}
    assert [r["slug"] for r in phase_status(live=True).storage.data] == ["r2", "videos", "documents"]
    assert (rows["r2"]["provider"], rows["r2"]["buckets"], rows["r2"]["estimate_bytes"]) == ("R2", [edge.buckets["photos"]],
                                                                                              ESTIMATES["photos"])
    assert rows["r2"]["percent"] == round(N * 100 / ESTIMATES["photos"], 2)
    assert rows["videos"]["provider"] == rows["documents"]["provider"] == "S3"
    assert rows["videos"]["bucket"] == edge.buckets["videos"] and rows["videos"]["used_bytes"] == 0


def test_storage_on_aws_is_s3_rows_as_before(aws_platform, viewer, client):
    tick(aws_platform, now=timezone.now(), rng=random.Random(2))
    sizes = aws.bucket_sizes(aws_platform)
    rows = phase_status(live=True).storage.data
    assert [(r["slug"], r["provider"], r["bucket"]) for r in rows] == [
        (b, "S3", aws_platform.buckets[b]) for b in ("photos", "videos", "documents")]
    for r in rows:
        assert r["used_bytes"] == sizes[r["slug"]] > 0 and r["estimate_bytes"] == ESTIMATES[r["slug"]]
    client.force_login(viewer)
    body = client.get("/phases/").content.decode()
    assert 'data-testid="storage-provider-photos">S3' in body and 'data-testid="storage-r2"' not in body


def test_the_simulator_gives_the_standin_the_scaled_bucket_sizes(edge, viewer, client):
    assert edge.standin.state.r2_bytes == 0
    from portal.cloud.models import SimulatorState

    tick(edge, now=timezone.now(), rng=random.Random(5))
    expected = bucket_sizes_at(edge, SimulatorState.objects.get(environment=edge).data["users"])
    assert edge.standin.state.r2_bytes == sum(expected.values()) > 0
    # the same figures as S3's BucketSizeBytes (written on the same tick)
    edge.storage_provider = "aws"
    assert {edge.buckets[k]: v for k, v in aws.bucket_sizes(edge).items()} == expected
    edge.storage_provider = "cloudflare"
    r2 = next(r for r in phase_status(live=True).storage.data if r["slug"] == "r2")
    assert r2["used_bytes"] == sum(expected.values())


def test_the_simulator_tries_again_when_the_standin_was_away(edge):
    from portal.cloud.models import SimulatorState

    edge.standin.stop()
    now = timezone.now()
    tick(edge, now=now, rng=random.Random(5))
    assert SimulatorState.objects.get(environment=edge).data["r2_at"] is None
    restarted = cloudflare_standin.CloudflareStandIn("127.0.0.1", edge.standin.port, state=edge.standin.state).start()
    try:
        tick(edge, now=now + timedelta(seconds=5), rng=random.Random(6))  # S3 is not due again for an hour
        assert restarted.state.r2_bytes > 0
        assert SimulatorState.objects.get(environment=edge).data["r2_at"] is not None
    finally:
        restarted.stop()


def test_the_sandbox_endpoint_wants_the_token_and_counts_only_held_buckets(edge):
    url = f"{edge.standin.url}/__sandbox/r2/usage"
    sizes = {edge.buckets["photos"]: 10, edge.buckets["videos"]: 20, "not-in-r2": 1000}
    assert requests.put(url, json={"buckets": sizes}, timeout=5).status_code == 403
    assert requests.put(url, json={"buckets": sizes}, timeout=5,
                        headers={"Authorization": "Bearer wrong"}).status_code == 403
    bad = requests.put(url, json={"buckets": {"x": "many"}}, timeout=5,
                       headers={"Authorization": f"Bearer {edge.standin.state.token}"})
    assert bad.status_code == 400
    ok = requests.put(url, json={"buckets": sizes}, timeout=5, headers={"Authorization": f"Bearer {edge.standin.state.token}"})
    assert ok.status_code == 200 and ok.json()["result"]["ignored"] == ["not-in-r2"]
    assert edge.standin.state.r2_bytes == 30


def test_product_code_never_knows_the_sandbox_endpoint():
    for folder in ("portal/phases", "portal/cloud", "portal/checklist"):
        for path in (ROOT / folder).rglob("*.py"):
            if "tests" not in path.parts:
                assert "__sandbox" not in path.read_text(), path
