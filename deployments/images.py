"""Which images a deployment may launch: the environment's allow-list of image owners and ids.

A release names an image id or a launch template version; either way the image that would boot is
found (DescribeLaunchTemplateVersions for a version) and approved only if its id is listed, or if
DescribeImages shows an owner that is listed. Only reads: the caller refuses before any AWS write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deployments import awsextra
from deployments.errors import ImageNotApproved
from portal.cloud.errors import CloudError

OWNER_ALIASES = ("self", "amazon", "aws-marketplace")
ACCOUNT_ID = re.compile(r"^\d{12}$")
IMAGE_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")


@dataclass(frozen=True)
class ImageVerdict:
    approved: bool
    image_id: str
    owner: str = ""
    # the launch template version number the verdict is about ("$Latest" resolved), "" for an image id
    version: str = ""
    reason: str = ""


def clean_owners(values) -> list[str]:
    """Validated, de-duplicated, sorted owners; ValueError naming the bad entries."""
    owners = sorted({str(v).strip() for v in values or [] if str(v).strip()})
    bad = [o for o in owners if not (ACCOUNT_ID.match(o) or o in OWNER_ALIASES)]
    if bad:
        raise ValueError(f"image owners are 12-digit account ids or {', '.join(OWNER_ALIASES)}; not {', '.join(bad)}")
    return owners


def clean_image_ids(values) -> list[str]:
    ids = sorted({str(v).strip() for v in values or [] if str(v).strip()})
    bad = [i for i in ids if not IMAGE_ID.match(i)]
    if bad:
        raise ValueError(f"image ids look like ami-0123456789abcdef0; not {', '.join(bad)}")
    return ids


def account_id(env) -> str:
    """The environment's own account ("self"), read from the ARNs it names (no extra AWS call)."""
    for arn in (env.listener_arn, env.load_balancer_arn, env.blue_target_group_arn, env.green_target_group_arn):
        parts = (arn or "").split(":")
        if len(parts) > 4 and ACCOUNT_ID.match(parts[4]):
            return parts[4]
    return ""


def owner_approved(env, image: dict) -> bool:
    owners = set(env.approved_image_owners or [])
    owner_id = str(image.get("OwnerId") or "")
    alias = str(image.get("ImageOwnerAlias") or "")
    if owner_id and owner_id in owners:
        return True
    if alias and alias != "self" and alias in owners:  # "amazon", "aws-marketplace": set by AWS, not by the owner
        return True
    return "self" in owners and bool(owner_id) and owner_id == account_id(env)


def _listed(env) -> str:
    owners = ", ".join(env.approved_image_owners or []) or "none"
    ids = ", ".join(env.approved_image_ids or []) or "none"
    return f"approved owners: {owners}; approved image ids: {ids}"


def image_verdict(env, image_id: str, *, version: str = "") -> ImageVerdict:
    if not IMAGE_ID.match(image_id or ""):
        # e.g. "resolve:ssm:/path": what it resolves to is decided at launch, so it cannot be approved now
        return ImageVerdict(False, image_id, version=version,
                            reason=f"{image_id or 'no image'} is not an image id the portal can check ({_listed(env)})")
    if image_id in (env.approved_image_ids or []):
        return ImageVerdict(True, image_id, version=version, reason="the image id is on the allow-list")
    image = awsextra.describe_image(env, image_id)
    if image is None:
        return ImageVerdict(False, image_id, version=version,
                            reason=f"image {image_id} does not exist or is not visible to {env.name}")
    owner = str(image.get("OwnerId") or "")
    alias = image.get("ImageOwnerAlias") or ""
    if owner_approved(env, image):
        return ImageVerdict(True, image_id, owner=owner, version=version, reason=f"its owner {owner} is on the allow-list")
    shown = f"{owner} ({alias})" if alias else owner or "an unknown owner"
    return ImageVerdict(False, image_id, owner=owner, version=version,
                        reason=f"image {image_id} is owned by {shown}, which is not approved for {env.name} ({_listed(env)})")


def verdict(env, *, image_id: str = "", launch_template_version: str = "") -> ImageVerdict:
    """Is the image this release would boot approved? Reads AWS (DescribeLaunchTemplateVersions, DescribeImages)."""
    if image_id:
        return image_verdict(env, image_id)
    number, resolved = awsextra.launch_template_version_image(env, launch_template_version)
    out = image_verdict(env, resolved, version=number)
    if out.approved:
        return out
    return ImageVerdict(False, out.image_id, owner=out.owner, version=number,
                        reason=f"launch template version {launch_template_version}"
                               f"{f' (number {number})' if number != launch_template_version else ''} boots "
                               f"{out.image_id or 'no image'}: {out.reason}")


def require_approved_image(*, environment, image_id: str = "", launch_template_version: str = ""):
    """The image the release would boot, approved; ImageNotApproved otherwise. Only reads AWS."""
    try:
        found = verdict(environment, image_id=image_id, launch_template_version=launch_template_version)
    except CloudError as exc:
        if exc.is_not_found or exc.code.startswith(("InvalidLaunchTemplate", "InvalidAMIID")):
            raise ImageNotApproved(f"the image cannot be checked: {exc.words}") from exc
        raise
    if not found.approved:
        raise ImageNotApproved(f"refused before anything was changed: {found.reason}")
    return found
