"""docs/iam-policy.json grants exactly what the portal calls on AWS, and nothing wider.

A static scan (ast) of portal/, deployments/ and runbooks/ finds every boto3 call made through the
cloud layer's clients (`client(env, "svc")`, `aws.client(...)`, `clients.client(...)`, `raw_client(...)`,
`session.client("svc")`): calls chained on the factory, calls on names bound to it (in the same
function, or a parameter of that name bound elsewhere in the module), and the operations behind
`get_paginator("...")` / `get_waiter("...")`. Each operation is checked against botocore's service
model and mapped to its IAM action. A new boto3 call without a policy entry fails here.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import botocore.session
import pytest
from botocore import xform_name

ROOT = Path(__file__).resolve().parent.parent
POLICY_PATH = ROOT / "docs" / "iam-policy.json"
SCAN_DIRS = ("portal", "deployments", "runbooks")
# The local sandbox builds its own fake AWS (moto); these never run against a real account.
EXCLUDED = {
    "portal/sandbox/platform.py", "portal/sandbox/simulator.py", "portal/sandbox/runner.py",
    "portal/sandbox/moto_process.py", "portal/sandbox/statuspages.py", "portal/sandbox/patches.py",
}
FACTORY_NAMES = {"client", "_client", "raw_client"}
CLIENT_HELPERS = {"get_paginator", "get_waiter", "can_paginate"}
# Permissions held by the identity that assumes the portal's role, not by the role itself.
CALLER_SIDE = {"sts:AssumeRole"}
IAM_PREFIX = {"elbv2": "elasticloadbalancing", "elb": "elasticloadbalancing"}
# Operations whose IAM action is not named after the API operation.
ACTION_OVERRIDES = {
    ("s3", "HeadBucket"): "s3:ListBucket",
    ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket",
    ("s3", "ListObjects"): "s3:ListBucket",
    ("s3", "GetBucketEncryption"): "s3:GetEncryptionConfiguration",
}
# Actions AWS checks on the caller as part of another call. UpdateAutoScalingGroup with a launch
# template requires ec2:RunInstances (and ec2:CreateTags for launch tags, iam:PassRole for the
# template's instance profile) on the caller.
IMPLIED = {
    "autoscaling:UpdateAutoScalingGroup": {"ec2:RunInstances", "ec2:CreateTags", "iam:PassRole"},
}

# RunInstances is authorised per resource: the image (ec2:Owner) and the rest (from a launch template)
# are separate statements.
SPLIT_BY_RESOURCE = {"ec2:RunInstances"}
# Changes the portal makes: each only on the environment's own resources (aws:ResourceTag/environment).
SCOPED_WRITES = {"autoscaling:SetDesiredCapacity", "autoscaling:UpdateAutoScalingGroup", "elasticloadbalancing:ModifyListener",
                 "rds:RebootDBInstance", "ec2:CreateLaunchTemplateVersion"}

_botocore = botocore.session.get_session()


def _operations(service: str) -> dict[str, str]:
    """snake_case method -> API operation name, from botocore's model of the service."""
    model = _botocore.get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def iam_action(service: str, operation: str) -> str:
    return ACTION_OVERRIDES.get((service, operation), f"{IAM_PREFIX.get(service, service)}:{operation}")


def _factory_service(node: ast.AST) -> str | None:
    """The service name when `node` is a call that builds a client through the cloud layer or boto3."""
    if not isinstance(node, ast.Call):
        return None
    func = node.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
    if name not in FACTORY_NAMES:
        return None
    for kw in node.keywords:
        if kw.arg in ("service", "service_name") and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    for arg in node.args[:2]:  # client(env, "svc") or session.client("svc", ...)
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def _target_keys(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name | ast.Attribute):
        return [ast.unparse(target)]
    if isinstance(target, ast.Tuple | ast.List):
        return [k for elt in target.elts for k in _target_keys(elt)]
    return []


def _bindings(tree: ast.AST) -> dict[str, set[str]]:
    """Names (or self.attr) assigned a client anywhere under `tree` -> services."""
    out: dict[str, set[str]] = defaultdict(set)
    for node in ast.walk(tree):
        value, targets = None, []
        if isinstance(node, ast.Assign):
            value, targets = node.value, node.targets
        elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
            value, targets = node.value, [node.target]
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            value, targets = node.context_expr, [node.optional_vars]
        service = _factory_service(value) if value is not None else None
        if service:
            for t in targets:
                for key in _target_keys(t):
                    out[key].add(service)
    return out


def _walk_scope(node: ast.AST):
    """Nodes of one scope: does not descend into nested functions (they are scopes of their own)."""
    todo = list(ast.iter_child_nodes(node))
    while todo:
        child = todo.pop()
        yield child
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            todo.extend(ast.iter_child_nodes(child))


def _waiter_operation(service: str, waiter: str) -> str:
    model = _botocore.get_waiter_model(service)
    for name in model.waiter_names:
        if xform_name(name) == waiter:
            return xform_name(model.get_waiter(name).operation)
    raise KeyError(f"{service} has no waiter {waiter!r}")


def scan_source(source: str, filename: str) -> tuple[set[tuple[str, str, str]], list[str]]:
    """(service, method, where) for every client call in `source`, and problems found on the way.

    A receiver's service comes from the factory call it is chained on, else from the client bound to
    that name in the same function, else from one bound to that name anywhere in the module (a
    helper taking the client as a parameter, a closure, a module-level client).
    """
    tree = ast.parse(source, filename)
    module_bindings = _bindings(tree)
    found: set[tuple[str, str, str]] = set()
    problems: list[str] = []
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)]
    for scope in scopes:
        local = _bindings(scope) if scope is not tree else module_bindings
        for node in _walk_scope(scope):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            direct = _factory_service(receiver)
            if direct:
                services = {direct}
            elif isinstance(receiver, ast.Name | ast.Attribute):
                key = ast.unparse(receiver)
                services = local.get(key) or module_bindings.get(key) or set()
            else:
                services = set()
            where = f"{filename}:{node.lineno}"
            method = node.func.attr
            for service in services:
                if method in ("get_paginator", "get_waiter"):
                    arg = node.args[0] if node.args else None
                    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
                        problems.append(f"{where}: {method}() with a name the scan cannot read")
                        continue
                    if method == "get_waiter":
                        try:
                            found.add((service, _waiter_operation(service, arg.value), where))
                        except Exception as exc:  # unknown service or waiter: report it
                            problems.append(f"{where}: {exc}")
                    else:
                        found.add((service, arg.value, where))
                elif method not in CLIENT_HELPERS:
                    found.add((service, method, where))
    return found, problems


def portal_files() -> list[Path]:
    files = []
    for d in SCAN_DIRS:
        for path in sorted((ROOT / d).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            parts = set(path.relative_to(ROOT).parts)
            if rel in EXCLUDED or "tests" in parts or "migrations" in parts or path.name.startswith("test_"):
                continue
            files.append(path)
    return files


def required_actions(calls) -> tuple[dict[str, list[str]], list[str]]:
    """IAM action -> where it is called; and calls that are not operations of their service."""
    actions: dict[str, list[str]] = defaultdict(list)
    problems = []
    known_services = set(_botocore.get_available_services())
    for service, method, where in sorted(calls):
        if service not in known_services:
            problems.append(f"{where}: unknown AWS service {service!r}")
            continue
        ops = _operations(service)
        if method not in ops:
            problems.append(f"{where}: {service}.{method} is not an operation of {service}")
            continue
        actions[iam_action(service, ops[method])].append(where)
    return actions, problems


def policy_actions(policy: dict) -> list[str]:
    out = []
    for st in policy["Statement"]:
        acts = st["Action"]
        out.extend([acts] if isinstance(acts, str) else acts)
    return out


@pytest.fixture(scope="module")
def policy() -> dict:
    return json.loads(POLICY_PATH.read_text())


@pytest.fixture(scope="module")
def scanned():
    calls, problems = set(), []
    for path in portal_files():
        c, p = scan_source(path.read_text(), path.relative_to(ROOT).as_posix())
        calls |= c
        problems += p
    actions, p2 = required_actions(calls)
    return actions, problems + p2


def test_policy_is_well_formed_and_has_no_wildcard_actions(policy):
    assert policy["Version"] == "2012-10-17"
    sids = [st["Sid"] for st in policy["Statement"]]
    assert len(sids) == len(set(sids))
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        assert "NotAction" not in st and "NotResource" not in st, st["Sid"]
        assert st.get("Resource"), st["Sid"]
    actions = [a for a in policy_actions(policy) if a not in SPLIT_BY_RESOURCE]
    assert len(actions) == len(set(actions)), "an action is listed twice"
    actions = policy_actions(policy)
    for action in actions:
        service, _, name = action.partition(":")
        assert service and name, action
        assert "*" not in action and "?" not in action, f"wildcard action {action!r}"
    passrole = [st for st in policy["Statement"] if "iam:PassRole" in policy_actions({"Statement": [st]})]
    for st in passrole:  # PassRole only to EC2 (the launch template's instance profile)
        assert st["Condition"]["StringEquals"]["iam:PassedToService"] == "ec2.amazonaws.com"
        assert st["Resource"] != "*" and ":role/" in st["Resource"], "PassRole only the instance role"


def _resources(st) -> list[str]:
    return [st["Resource"]] if isinstance(st["Resource"], str) else list(st["Resource"])


def test_instances_launch_only_from_templates_and_only_approved_images(policy):
    """RunInstances: the image resource only of approved owners, every other resource only from a launch template."""
    runs = [st for st in policy["Statement"] if "ec2:RunInstances" in policy_actions({"Statement": [st]})]
    assert runs
    image_statements = []
    for st in runs:
        resources = _resources(st)
        assert "*" not in resources, st["Sid"]
        if any(":image/" in r for r in resources):
            assert resources == ["arn:aws:ec2:*::image/*"], "the image resource has a statement of its own"
            owners = st["Condition"]["StringEquals"]["ec2:Owner"]
            assert owners and "*" not in "".join(owners), st["Sid"]
            image_statements.append(st)
        else:
            assert st["Condition"]["ArnLike"]["ec2:LaunchTemplate"].endswith(":launch-template/*"), st["Sid"]
    assert len(image_statements) == 1


def test_write_actions_are_scoped_to_the_environments_resources(policy):
    """No write on Resource "*": each names its resource type and needs the environment's tag."""
    for st in policy["Statement"]:
        acts = policy_actions({"Statement": [st]})
        writes = [a for a in acts if a in SCOPED_WRITES]
        if not writes:
            if _resources(st) == ["*"]:
                reads = [a for a in acts if not a.split(":")[1].startswith(("Describe", "List", "Get"))]
                assert not reads, f"{st['Sid']}: only reads without resource-level permissions may use Resource *"
            continue
        assert "*" not in _resources(st), st["Sid"]
        tag = st["Condition"]["StringEquals"]["aws:ResourceTag/environment"]
        assert tag == "${aws:PrincipalTag/environment}", st["Sid"]
    assert SCOPED_WRITES <= set(policy_actions(policy))


def test_policy_passes_the_iam_linter(tmp_path):
    """parliament (duo-labs) through scripts/iam_lint.sh, the same as CI; a Resource "*" write is caught."""
    pytest.importorskip("parliament")
    script = ROOT / "scripts" / "iam_lint.sh"
    env = {**os.environ, "PYTHON": sys.executable}
    ok = subprocess.run([str(script)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)  # noqa: S603
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 finding(s)" in ok.stdout
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Loose", "Effect": "Allow", "Action": ["elasticloadbalancing:ModifyListener"], "Resource": "*"}]}))
    bad = subprocess.run([str(script), str(loose)], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)  # noqa: S603
    assert bad.returncode == 1 and "RESOURCE_STAR" in bad.stdout, bad.stdout + bad.stderr


def test_scan_finds_the_cloud_layer_calls(scanned):
    actions, problems = scanned
    assert not problems, "\n".join(problems)
    # the scan really sees the calls behind health, checklist, phases, runbooks and the write actions
    for expected in ("autoscaling:DescribeAutoScalingGroups", "autoscaling:SetDesiredCapacity",
                     "autoscaling:DescribePolicies", "elasticloadbalancing:ModifyListener",
                     "elasticloadbalancing:DescribeTargetHealth", "rds:RebootDBInstance", "rds:DescribeDBParameters",
                     "cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics", "cloudwatch:DescribeAlarms",
                     "ce:GetCostAndUsage", "s3:ListBucket", "ec2:CreateLaunchTemplateVersion",
                     "route53:ListResourceRecordSets", "cloudfront:ListDistributions", "acm:DescribeCertificate",
                     "elasticache:DescribeReplicationGroups"):
        assert expected in actions, f"scan did not find {expected}"


def test_policy_allows_every_call_the_portal_makes(policy, scanned):
    actions, _ = scanned
    allowed = set(policy_actions(policy))
    missing = {a: where for a, where in actions.items() if a not in allowed and a not in CALLER_SIDE}
    assert not missing, "docs/iam-policy.json lacks:\n" + "\n".join(f"  {a}  (called at {', '.join(w)})"
                                                                    for a, w in sorted(missing.items()))


def test_policy_grants_nothing_the_portal_does_not_use(policy, scanned):
    actions, _ = scanned
    needed = set(actions) - CALLER_SIDE
    for action in list(needed):
        needed |= IMPLIED.get(action, set())
    unused = set(policy_actions(policy)) - needed
    assert not unused, f"docs/iam-policy.json grants actions no code calls: {sorted(unused)}"
    assert not set(policy_actions(policy)) & CALLER_SIDE


def test_a_new_boto3_call_without_a_policy_entry_is_caught(policy):
    source = '''
from portal.cloud.clients import client
from portal.cloud import aws

def notify(env, message):
    sns = client(env, "sns")
    sns.publish(TopicArn=env.topic, Message=message)

def snapshot(env):
    aws.client(env, "rds").create_db_snapshot(DBSnapshotIdentifier="x", DBInstanceIdentifier="y")

def objects(env):
    for page in client(env, "s3").get_paginator("list_objects_v2").paginate(Bucket="b"):
        yield page

def _helper(sns, env):
    return sns.list_topics()

def typo(env):
    client(env, "autoscaling").describe_autoscaling_groups()

def wait(env):
    client(env, "rds").get_waiter("db_instance_available").wait(DBInstanceIdentifier="y")
'''
    calls, problems = scan_source(source, "example.py")
    actions, bad = required_actions(calls)
    assert not problems
    assert {"sns:Publish", "rds:CreateDBSnapshot", "s3:ListBucket", "sns:ListTopics",
            "rds:DescribeDBInstances"} <= set(actions)
    assert any("describe_autoscaling_groups is not an operation" in b for b in bad)
    allowed = set(policy_actions(policy))
    assert "sns:Publish" not in allowed and "rds:CreateDBSnapshot" not in allowed
