"""AWS calls deployments need that portal.cloud.aws does not offer (yet): pointing a colour's
auto scaling group at a release. Goes through portal.cloud.clients, so errors are CloudErrors."""

from __future__ import annotations

from portal.cloud.clients import client
from portal.cloud.errors import CloudError


def set_launch_template(env, colour: str, *, version: str | None = None, image_id: str | None = None) -> dict:
    """Make the colour's group launch `version` of the environment's launch template, or a new version with `image_id`.

    Instances already running keep their old spec; a rollout starts from 0 (or scales the idle colour
    up) so that the new instances come from the release.
    """
    template_id = env.launch_template_id
    if not template_id:
        raise CloudError("NotConfigured", "UpdateAutoScalingGroup", env.name, "the environment has no launch template id set")
    name = env.asg_name(colour)
    if not name:
        raise CloudError("NotConfigured", "UpdateAutoScalingGroup", env.name, f"the environment has no {colour} auto scaling group")
    created = None
    pinned = None
    if image_id:
        pinned = pin_colour(env, "green" if colour == "blue" else "blue", template_id)
        ec2 = client(env, "ec2")
        resp = ec2.create_launch_template_version(
            LaunchTemplateId=template_id, SourceVersion="$Latest", VersionDescription=f"portal release image {image_id}",
            LaunchTemplateData={"ImageId": image_id})
        created = str(resp["LaunchTemplateVersion"]["VersionNumber"])
        version = created
    version = version or "$Latest"
    client(env, "autoscaling").update_auto_scaling_group(
        AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateId": template_id, "Version": str(version)})
    group = client(env, "autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
    spec = group.get("LaunchTemplate") or {}
    return {"launch_template_id": spec.get("LaunchTemplateId", template_id), "version": spec.get("Version", version),
            "created_version": created, "image_id": image_id or None, "pinned_other_colour": pinned}


def pin_colour(env, colour: str, template_id: str) -> str | None:
    """A group launching "$Latest"/"$Default" would pick up a version made for the other colour's release
    (and a rollback's scale-up would launch the bad release): pin it to the number it resolves to now."""
    name = env.asg_name(colour)
    if not name:
        return None
    asg = client(env, "autoscaling")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])["AutoScalingGroups"]
    spec = (group[0].get("LaunchTemplate") or {}) if group else {}
    version = str(spec.get("Version") or "")
    if not spec or version not in ("$Latest", "$Default", ""):
        return None
    lt = client(env, "ec2").describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"][0]
    number = str(lt["LatestVersionNumber"] if version in ("$Latest", "") else lt["DefaultVersionNumber"])
    asg.update_auto_scaling_group(AutoScalingGroupName=name, LaunchTemplate={"LaunchTemplateId": template_id, "Version": number})
    return number


def widen_group_bounds(env, colour: str, desired: int, group) -> dict | None:
    """AWS refuses a desired capacity outside the group's MinSize..MaxSize: widen them first (the
    portal's own bounds, the phase range and a lead's approval, were checked by the caller)."""
    updates = {}
    if desired > int(group.max_size):
        updates["MaxSize"] = int(desired)
    if desired < int(group.min_size):
        updates["MinSize"] = int(desired)
    if not updates:
        return None
    client(env, "autoscaling").update_auto_scaling_group(AutoScalingGroupName=env.asg_name(colour), **updates)
    return updates


def describe_image(env, image_id: str) -> dict | None:
    """The image as EC2 describes it to this account, or None when it does not exist (or is not visible here)."""
    try:
        images = client(env, "ec2").describe_images(ImageIds=[image_id]).get("Images") or []
    except CloudError as exc:
        if exc.code.startswith("InvalidAMIID"):
            return None
        raise
    return next((i for i in images if i.get("ImageId") == image_id), None)


def launch_template_version_image(env, version: str) -> tuple[str, str]:
    """(version number, ImageId) of a version ("7", "$Latest", "$Default") of the environment's launch template."""
    template_id = env.launch_template_id
    if not template_id:
        raise CloudError("NotConfigured", "DescribeLaunchTemplateVersions", env.name, "the environment has no launch template id set")
    found = client(env, "ec2").describe_launch_template_versions(
        LaunchTemplateId=template_id, Versions=[str(version)]).get("LaunchTemplateVersions") or []
    if not found:
        raise CloudError("InvalidLaunchTemplateId.VersionNotFound", "DescribeLaunchTemplateVersions", env.name,
                         f"launch template {template_id} has no version {version}")
    data = found[0].get("LaunchTemplateData") or {}
    return str(found[0]["VersionNumber"]), str(data.get("ImageId") or "")
