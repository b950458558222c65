"""Environment pages, the drills page and the environments API."""

import pytest
from django.urls import reverse

from portal.audit.models import AuditEvent
from portal.cloud import aws
from portal.cloud.models import Drill, Environment
from portal.cloud.tests.forms import posted_form


def test_list_and_detail_show_groups_listener_db_cache(client, viewer, aws_platform):
    client.force_login(viewer)
    page = client.get("/environments/")
    assert page.status_code == 200 and b"sandbox" in page.content
    detail = client.get("/environments/sandbox/")
    body = detail.content.decode()
    assert detail.status_code == 200
    assert 'data-testid="weight-blue">100% of traffic' in body
    assert "ftw-blue" in body and "ftw-green" in body
    assert "db.r5.large" in body and "cache.r5.large" in body
    assert "ftw-p95-critical" in body  # alarms
    assert "Amazon Relational Database Service" in body  # cost by service
    assert body.count("InService") == 2
    live = client.get("/environments/sandbox/live/")
    assert live.status_code == 200 and b"hx-trigger=\"every 10s\"" in live.content
    assert 'data-testid="error-rate-blue"><span class="muted">no traffic' in body  # no simulator tick yet


def test_detail_shows_metrics_moving(client, viewer, aws_platform):
    import random

    from django.utils import timezone

    from portal.sandbox.simulator import tick

    tick(aws_platform, now=timezone.now(), rng=random.Random(3))
    client.force_login(viewer)
    body = client.get("/environments/sandbox/live/").content.decode()
    import re

    blue_requests = re.search(r'data-testid="requests-blue">([\d,]+)<', body)
    assert blue_requests and int(blue_requests.group(1).replace(",", "")) > 0
    assert 'data-testid="error-rate-green"><span class="muted">no traffic' in body
    assert "% of traffic" in body


def test_aws_errors_show_in_words_not_an_error_page(client, viewer, aws_platform):
    Environment.objects.filter(pk=aws_platform.pk).update(rds_instance_id="does-not-exist", listener_arn="")
    client.force_login(viewer)
    body = client.get("/environments/sandbox/").content.decode()
    assert "DescribeDBInstances in the sandbox environment failed" in body
    assert "does not name the resource" in body  # the missing listener ARN
    assert "ftw-blue" in body  # the groups still show


def test_edit_needs_administer_and_keeps_secret_write_only(client, lead, admin_user, aws_platform):
    client.force_login(lead)
    assert client.get("/environments/sandbox/edit/").status_code == 403
    client.force_login(admin_user)
    form = client.get("/environments/sandbox/edit/")
    assert form.status_code == 200
    env = Environment.objects.get(name="sandbox")
    data = posted_form(env, buckets='{"photos": "ftw-sandbox-photos"}', prometheus_queries="{}", description="edited",
                       external_id="s3cret-ext-id")
    resp = client.post("/environments/sandbox/edit/", data)
    assert resp.status_code == 302
    env.refresh_from_db()
    assert env.description == "edited" and env.external_id == "s3cret-ext-id" and env.buckets == {"photos": "ftw-sandbox-photos"}
    event = AuditEvent.objects.filter(verb="environment.update").latest("id")
    assert event.extra["external_id"] == "replaced" and "s3cret" not in str(event.before) + str(event.after)
    again = client.get("/environments/sandbox/edit/").content.decode()
    assert "s3cret-ext-id" not in again
    from django.db import connection
    with connection.cursor() as cur:
        cur.execute("select external_id from cloud_environment where id=%s", [env.pk])
        assert "s3cret" not in cur.fetchone()[0]
    # bad input is refused in words and nothing changes
    data.update(credentials_mode="role", role_arn="not-an-arn", description="should not save")
    bad = client.post("/environments/sandbox/edit/", data)
    assert bad.status_code == 400 and b"Assuming a role needs its ARN" in bad.content
    env.refresh_from_db()
    assert env.description == "edited"


def test_drills_page_start_and_stop(client, admin_user, responder, aws_platform):
    client.force_login(responder)
    assert client.get("/environments/drills/").status_code == 403
    assert client.post("/environments/drills/start/", {"environment": "sandbox", "kind": "cpu", "minutes": 5}).status_code == 403
    client.force_login(admin_user)
    assert client.get("/environments/drills/").status_code == 200
    post = {"environment": "sandbox", "kind": "error-rate", "colour": "green", "level": "25", "minutes": "5", "seed": "4"}
    assert client.post("/environments/drills/start/", post).status_code == 302
    assert client.post("/environments/drills/start/", post).status_code == 302  # twice: still one drill
    drill = Drill.objects.get()
    assert (drill.kind, drill.colour, drill.level, drill.seed) == ("error-rate", "green", 25.0, 4)
    assert AuditEvent.objects.filter(verb="drill.start").count() == 1
    page = client.get("/environments/drills/").content.decode()
    assert "Error rate on one colour" in page and str(drill.public_id) in page
    bad = client.post("/environments/drills/start/", {**post, "kind": "cache-hit-ratio", "colour": "blue"})
    assert bad.status_code == 400 and b"not per colour" in bad.content
    assert client.post(reverse("cloud:drill_stop", args=[drill.public_id])).status_code == 302
    drill.refresh_from_db()
    assert drill.stopped_at is not None
    assert client.post(reverse("cloud:drill_stop", args=[drill.public_id])).status_code == 302  # twice: fine
    assert AuditEvent.objects.filter(verb="drill.stop").count() == 1


def test_unhealthy_instance_drill_shows_in_target_health(admin_user, aws_platform):
    from portal.sandbox.services import drill_start, drill_stop

    env = aws_platform
    assert aws.healthy_count(env, "blue") == 2
    with pytest.raises(ValueError):
        aws.healthy_count(env, "purple")
    drill = drill_start(environment=env, kind="unhealthy-instance", colour="blue", minutes=5, seed=9, actor=admin_user)
    from portal.sandbox.simulator import sync_state
    sync_state(env)
    health = aws.describe_target_health(env, "blue")
    assert [t.state for t in health].count("unhealthy") == 1 and aws.healthy_count(env, "blue") == 1
    bad = next(t for t in health if t.state == "unhealthy")
    assert bad.reason == "Target.FailedHealthChecks"
    by_id = {i.id: i for i in aws.describe_groups(env)["blue"].instances}
    assert by_id[bad.id].health_status == "Unhealthy"
    drill_stop(drill=drill, actor=admin_user)
    sync_state(env)
    assert aws.healthy_count(env, "blue") == 2


def test_api_environment(api_client, make_token, aws_platform):
    token = make_token("read")
    resp = api_client.get("/api/v1/environments/sandbox", token=token)
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["listener"]["weights"] == {"blue": 100, "green": 0}
    assert body["groups"]["blue"]["desired"] == 2 and body["groups"]["blue"]["healthy"] == 2
    assert body["groups"]["green"]["instances"] == []
    assert body["automation"] == {"paused": False, "reason": "", "dry_run": False}
    assert api_client.get("/api/v1/environments/nope", token=token).json()["error"] == "not_found"
    assert api_client.get("/api/v1/environments/sandbox").status_code == 401
    Environment.objects.filter(pk=aws_platform.pk).update(blue_asg="missing-group")
    err = api_client.get("/api/v1/environments/sandbox", token=token)
    assert err.status_code == 503 and err.json()["error"] == "cloud_error" and "missing-group" in err.json()["detail"]
    listing = api_client.get("/api/v1/environments", token=token).json()
    assert [e["name"] for e in listing["environments"]] == ["sandbox"]


def test_admin_adds_a_real_environment(client, admin_user, viewer, db):
    client.force_login(viewer)
    assert client.get("/environments/new/").status_code == 403
    client.force_login(admin_user)
    assert client.get("/environments/new/").status_code == 200
    data = {"name": "production", "region": "eu-west-1", "credentials_mode": "role",
            "dns_provider": "aws", "cdn_provider": "aws", "storage_provider": "aws",
            "role_arn": "arn:aws:iam::123456789012:role/ops-portal", "external_id": "prod-ext",
            "platform_namespace": "FairTradeWorker/Platform", "metrics_source": "prometheus",
            "prometheus_url": "http://prometheus.internal:9090", "buckets": "{}", "prometheus_queries": "{}",
            "is_production": "on"}
    resp = client.post("/environments/new/", data)
    assert resp.status_code == 302, resp.content.decode()[:2000]
    env = Environment.objects.get(name="production")
    assert env.is_production and env.external_id == "prod-ext" and env.credentials_mode == "role"
    event = AuditEvent.objects.get(verb="environment.create")
    assert "prod-ext" not in str(event.after) and event.extra["external_id"] == "set"
    again = client.post("/environments/new/", data)
    assert again.status_code == 400 and b"exists already" in again.content
    static_prod = client.post("/environments/new/", {**data, "name": "prod2", "credentials_mode": "static"})
    assert static_prod.status_code == 400 and b"never for production" in static_prod.content
