#!/usr/bin/env bash
# Lint the shipped IAM policy with parliament (duo-labs, offline), community auditors included.
# Fails on every finding except the known false positives listed below, each with its reason.
# usage: scripts/iam_lint.sh [policy.json]   (default docs/iam-policy.json)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" - "${1:-docs/iam-policy.json}" <<'PY'
import re
import sys

from pathlib import Path

import parliament
from parliament import analyze_policy_string, enhance_finding, override_config
from parliament.cli import is_finding_filtered

# what `parliament --include-community-auditors` loads before it reports their findings
override_config(Path(parliament.__file__).parent / "community_auditors" / "config_override.yaml")

# (issue, statement Sid or None for the whole policy, actions named in the finding) -> why it is accepted
KNOWN = {
    ("RESOURCE_MISMATCH", "ShiftTheEnvironmentsListener", frozenset({"elasticloadbalancing:ModifyListener"})):
        "parliament wants the network load balancer listener form too; the portal only shifts an ALB listener",
    ("RESOURCE_MISMATCH", "LaunchOnlyApprovedImages", frozenset({"ec2:RunInstances"})):
        "RunInstances' resource types are split over two statements on purpose (the image has its own ec2:Owner "
        "condition); parliament checks each statement alone",
    ("RESOURCE_MISMATCH", "LaunchOnlyFromLaunchTemplates", frozenset({"ec2:RunInstances"})):
        "the other half of that split: every resource type but the image",
    ("PRIVILEGE_ESCALATION", None, frozenset({"iam:passrole", "ec2:runinstances"})):
        "a group launching from a launch template needs both; PassRole is limited to the one instance role and to "
        "EC2, RunInstances to launch templates and approved images",
    ("PERMISSIONS_MANAGEMENT_ACTIONS", None, frozenset({"iam:passrole"})):
        "the same iam:PassRole, scoped to the instance role and ec2.amazonaws.com",
}

path = sys.argv[1]
text = open(path).read()
lines = text.splitlines()


def sid_at(line):
    for row in lines[max(0, line - 1):]:
        m = re.search(r'"Sid"\s*:\s*"([^"]+)"', row)
        if m:
            return m.group(1)
    return None


def actions_of(finding):
    loc, detail = finding.location or {}, finding.detail
    if loc.get("actions"):
        return frozenset(loc["actions"])
    if isinstance(detail, list):
        return frozenset(d["action"] if isinstance(d, dict) else d for d in detail)
    return frozenset()


policy = analyze_policy_string(text, path, include_community_auditors=True)
bad = 0
for finding in policy.findings:
    finding = enhance_finding(finding)
    if is_finding_filtered(finding, "LOW"):
        continue
    line = (finding.location or {}).get("line")
    key = (finding.issue, sid_at(line) if line else None, actions_of(finding))
    if key in KNOWN:
        print(f"known: {finding.issue} {key[1] or ''} {sorted(key[2])}: {KNOWN[key]}")
        continue
    bad += 1
    print(f"FINDING {finding.severity} {finding.issue} ({finding.title}) statement={key[1]} "
          f"detail={finding.detail} location={finding.location}")
print(f"{path}: {bad} finding(s)")
sys.exit(1 if bad else 0)
PY
