"""Deployments launch only approved images (issue 14, item 3): refused with a 4xx before AWS changes."""

from __future__ import annotations

import pytest

from deployments import errors, services
from deployments.models import Deployment, Release
from deployments.rollout import deployment_advance
from deployments.tests.conftest import drive
from portal.audit.models import AuditEvent
from portal.cloud.clients import client
from portal.cloud.models import Environment


def _cloud_snapshot(env) -> dict:
    """What a deployment would change: the launch template's versions and the groups' launch specs and sizes."""
    ec2, asg = client(env, "ec2"), client(env, "autoscaling")
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=env.launch_template_id)["LaunchTemplateVersions"]
    groups = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[env.blue_asg, env.green_asg])["AutoScalingGroups"]
    return {"versions": sorted(v["VersionNumber"] for v in versions),
            "groups": {g["AutoScalingGroupName"]: (g.get("LaunchTemplate"), g["DesiredCapacity"], g["MinSize"], g["MaxSize"])
                       for g in groups}}


def _template_image(env) -> str:
    v = client(env, "ec2").describe_launch_template_versions(LaunchTemplateId=env.launch_template_id, Versions=["$Latest"])
    return v["LaunchTemplateVersions"][0]["LaunchTemplateData"]["ImageId"]


def _other_amazon_image(env) -> dict:
    """An image of another publisher (moto's built-in AMIs), not the one the launch template boots."""
    used = _template_image(env)
    images = client(env, "ec2").describe_images(Owners=["amazon"])["Images"]
    return next(i for i in sorted(images, key=lambda i: i["ImageId"]) if i["ImageId"] != used)


def _own_image(env) -> str:
    """An image made in the environment's own account (moto's 123456789012)."""
    ec2 = client(env, "ec2")
    instance = ec2.run_instances(ImageId=_template_image(env), MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    return ec2.create_image(InstanceId=instance, Name="portal-release-v3")["ImageId"]


def _only_own_images(env) -> Environment:
    Environment.objects.filter(pk=env.pk).update(approved_image_owners=["self"], approved_image_ids=[])
    return Environment.objects.get(pk=env.pk)


def test_sandbox_registration_seeds_its_allow_list(aws_platform):
    env = Environment.objects.get(pk=aws_platform.pk)
    assert env.approved_image_owners == ["amazon", "self"] and env.approved_image_ids == []
    # Registering again keeps a lead's change.
    from portal.sandbox.platform import register_environment

    Environment.objects.filter(pk=env.pk).update(approved_image_owners=["self"])
    assert register_environment(aws_platform.platform, endpoint_url="").approved_image_owners == ["self"]


def test_an_unapproved_image_id_is_refused_with_422_and_aws_is_not_changed(
        aws_platform, strategies, fake_metrics, fast, api_client, make_token):
    env = _only_own_images(aws_platform)
    stranger = _other_amazon_image(env)
    before = _cloud_snapshot(env)
    r = api_client.post("/api/v1/deployments", {"environment": "sandbox", "version": "v-evil", "strategy": "canary-quick",
                                                "image_id": stranger["ImageId"]}, token=make_token("actions"))
    assert r.status_code == 422, r.content
    body = r.json()
    assert body["error"] == "image_not_approved"
    assert stranger["ImageId"] in body["detail"] and stranger["OwnerId"] in body["detail"] and "not approved" in body["detail"]
    assert not Deployment.objects.exists() and not Release.objects.exists()
    assert _cloud_snapshot(env) == before  # no launch template version, no group change
    # An image that does not exist at all is refused the same way.
    r = api_client.post("/api/v1/deployments", {"environment": "sandbox", "version": "v-ghost", "strategy": "canary-quick",
                                                "image_id": "ami-0123456789abcdef0"}, token=make_token("actions"))
    assert r.status_code == 422 and r.json()["error"] == "image_not_approved" and "does not exist" in r.json()["detail"]
    assert _cloud_snapshot(env) == before


def test_an_unapproved_launch_template_version_is_refused(aws_platform, strategies, fake_metrics, fast, api_client,
                                                          make_token):
    env = _only_own_images(aws_platform)
    Environment.objects.filter(pk=env.pk).update(approved_image_ids=[_template_image(env)])
    env.refresh_from_db()
    stranger = _other_amazon_image(env)["ImageId"]
    # Someone made a version with another image directly in AWS; "$Latest" is now that version.
    bad = client(env, "ec2").create_launch_template_version(
        LaunchTemplateId=env.launch_template_id, SourceVersion="$Latest",
        LaunchTemplateData={"ImageId": stranger})["LaunchTemplateVersion"]["VersionNumber"]
    before = _cloud_snapshot(env)
    token = make_token("actions")
    for version in (str(bad), "$Latest"):
        r = api_client.post("/api/v1/deployments", {"environment": "sandbox", "version": f"v-{version}",
                                                    "strategy": "canary-quick", "launch_template_version": version}, token=token)
        assert r.status_code == 422, r.content
        assert r.json()["error"] == "image_not_approved"
        assert stranger in r.json()["detail"] and f"launch template version {version}" in r.json()["detail"]
    assert not Deployment.objects.exists()
    assert _cloud_snapshot(env) == before
    # The approved first version still deploys.
    r = api_client.post("/api/v1/deployments", {"environment": "sandbox", "version": "v1-ok", "strategy": "canary-quick",
                                                "launch_template_version": "1"}, token=token)
    assert r.status_code == 201, r.content


def test_approved_images_proceed_by_owner_self_and_by_id(aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = _only_own_images(aws_platform)
    own = _own_image(env)
    dep = services.deployment_create(environment=env, version="v-own", strategy="canary-quick", image_id=own, actor=responder)
    assert drive(dep, clock, until=("holding",)) == "holding"
    green = client(env, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[env.green_asg])["AutoScalingGroups"][0]
    launched = client(env, "ec2").describe_launch_template_versions(
        LaunchTemplateId=env.launch_template_id, Versions=[green["LaunchTemplate"]["Version"]])["LaunchTemplateVersions"][0]
    assert launched["LaunchTemplateData"]["ImageId"] == own
    # An image of another owner is approved by its id.
    from deployments.images import verdict

    stranger = _other_amazon_image(env)["ImageId"]
    assert not verdict(env, image_id=stranger).approved
    Environment.objects.filter(pk=env.pk).update(approved_image_ids=[stranger])
    env.refresh_from_db()
    assert verdict(env, image_id=stranger).approved


def test_the_sandbox_default_deploys_its_launch_template(aws_platform, strategies, fake_metrics, fast, clock, responder):
    dep = services.deployment_create(environment=aws_platform, version="v2", strategy="canary-quick",
                                     launch_template_version="$Latest", actor=responder)
    assert drive(dep, clock, until=("holding",)) == "holding"
    green = client(aws_platform, "autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[aws_platform.green_asg])["AutoScalingGroups"][0]
    assert green["LaunchTemplate"]["Version"] == "1"  # the checked number, not "$Latest"


def test_the_rollout_checks_again_before_it_launches(aws_platform, strategies, fake_metrics, fast, clock, responder):
    env = aws_platform
    stranger = _other_amazon_image(env)["ImageId"]
    dep = services.deployment_create(environment=env, version="v-late", strategy="canary-quick", image_id=stranger,
                                     actor=responder)
    _only_own_images(env)  # the allow-list narrowed before the worker picked the deployment up
    before = _cloud_snapshot(env)
    assert deployment_advance(deployment_id=dep.pk, now=dep.wake_at) == "failed"
    dep.refresh_from_db()
    assert "not approved" in dep.failure_reason
    assert _cloud_snapshot(env) == before


def test_the_deploy_form_shows_why_an_image_is_refused(aws_platform, strategies, fake_metrics, client, responder):
    env = _only_own_images(aws_platform)
    stranger = _other_amazon_image(env)
    c = client
    c.force_login(responder)
    r = c.post("/deployments/new/", {"environment": "sandbox", "version": "v-evil", "strategy": "canary-quick",
                                     "image_id": stranger["ImageId"]}, follow=True)
    assert r.status_code == 200
    page = r.content.decode()
    assert "refused before anything was changed" in page and stranger["OwnerId"] in page and "not approved" in page
    assert not Deployment.objects.exists()
    assert 'data-testid="approved-images"' in page and "Owners: self" in page


def test_editing_the_allow_list_needs_a_lead_and_is_audited(aws_platform, client, responder, lead, make_token):
    from portal.accounts.models import ApiToken

    env = aws_platform
    client.force_login(responder)
    r = client.post("/deployments/images/", {"environment": "sandbox", "owners": "amazon self 111122223333", "reason": "x"})
    assert r.status_code == 403
    with pytest.raises(errors.NeedsApproval):
        services.environment_images_set(environment=env, owners=["111122223333"], image_ids=[], actor=responder)
    make_token("actions", name="ci-actions")
    with pytest.raises(errors.NeedsApproval):
        services.environment_images_set(environment=env, owners=["111122223333"], image_ids=[],
                                        actor=ApiToken.objects.get(name="ci-actions"))
    env.refresh_from_db()
    assert env.approved_image_owners == ["amazon", "self"]
    assert not AuditEvent.objects.filter(verb="environment.images").exists()

    client.force_login(lead)
    r = client.post("/deployments/images/", {"environment": "sandbox", "owners": "self, 111122223333",
                                             "image_ids": "ami-0abc12345def67890", "reason": "only our builds"}, follow=True)
    assert b"Approved images saved" in r.content
    env.refresh_from_db()
    assert env.approved_image_owners == ["111122223333", "self"] and env.approved_image_ids == ["ami-0abc12345def67890"]
    event = AuditEvent.objects.get(verb="environment.images")
    assert event.actor_label == lead.username
    assert event.before == {"approved_image_owners": ["amazon", "self"], "approved_image_ids": []}
    assert event.after == {"approved_image_owners": ["111122223333", "self"], "approved_image_ids": ["ami-0abc12345def67890"]}
    assert event.extra["reason"] == "only our builds"
    # Bad entries are refused with the reason, nothing saved.
    r = client.post("/deployments/images/", {"environment": "sandbox", "owners": "evil-corp", "reason": "x"}, follow=True)
    assert b"12-digit account ids" in r.content
    env.refresh_from_db()
    assert env.approved_image_owners == ["111122223333", "self"]
    assert AuditEvent.objects.filter(verb="environment.images").count() == 1
