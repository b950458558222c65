"""Guards on the shape of the code: no private name crosses a module, and the API keeps its routes."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("portal", "runbooks", "deployments")
# Underscored names that are public API of Django or of the standard library.
ALLOWED = frozenset({"_meta", "_default_manager", "_base_manager", "_asdict", "_replace", "_fields", "_make"})


def _modules():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts or path.name.startswith("test_"):
                continue
            yield path, ".".join(parts)[: -len(".py")].removesuffix(".__init__")


def _is_repo(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in ALLOWED


def _absolute(module_name: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module_name.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _private_definitions(tree: ast.AST) -> set[str]:
    """Underscored names a module defines: functions, classes, methods, and attributes it assigns."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if _is_private(n)}


def _violations_in(module_name: str, tree: ast.AST, is_package: bool, elsewhere: set[str]) -> list[str]:
    found = []
    imported: set[str] = set()  # local names bound to this repo's modules or to names imported from them
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_repo(alias.name):
                    imported.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module_name, node, is_package)
            if not _is_repo(source) or source == module_name:
                continue
            for alias in node.names:
                if _is_private(alias.name):
                    found.append(f"{module_name}:{node.lineno} imports {alias.name} from {source}")
                imported.add(alias.asname or alias.name)
    own = _private_definitions(tree)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        root = node.value
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and root.id in imported:
            found.append(f"{module_name}:{node.lineno} uses {ast.unparse(node)}")
        elif node.attr in elsewhere and node.attr not in own and not (isinstance(root, ast.Name) and root.id in ("self", "cls")):
            # An object of another module's class reaching for that class's private member (x._get()).
            found.append(f"{module_name}:{node.lineno} uses {ast.unparse(node)} (defined privately elsewhere)")
    return found


def private_name_crossings() -> list[str]:
    trees = {name: (path, ast.parse(path.read_text(), filename=str(path))) for path, name in _modules()}
    defined = {name: _private_definitions(tree) for name, (_, tree) in trees.items()}
    found = []
    for name, (path, tree) in trees.items():
        elsewhere = set().union(*(names for other, names in defined.items() if other != name))
        found += _violations_in(name, tree, path.name == "__init__.py", elsewhere)
    return found


def test_no_private_name_crosses_a_module():
    crossings = private_name_crossings()
    assert crossings == [], "a leading underscore never crosses a module:\n" + "\n".join(crossings)


# The API's operations and their ids as of issue 15 and the on-call API (scripts/schemathesis.sh and the authz matrix use them).
OPERATIONS = {
    "GET /api/v1/audit": "portal_audit_api_list_audit",
    "GET /api/v1/checklist": "portal_checklist_api_list_items",
    "GET /api/v1/checklist/{slug}": "portal_checklist_api_get_item",
    "GET /api/v1/deployments": "deployments_api_list_deployments",
    "GET /api/v1/deployments/{deployment_id}": "deployments_api_get_deployment",
    "GET /api/v1/environments": "portal_cloud_api_list_environments",
    "GET /api/v1/environments/{name}": "portal_cloud_api_get_environment",
    "GET /api/v1/environments/{name}/drift": "portal_cloud_api_get_drift",
    "GET /api/v1/environments/{name}/rollback": "deployments_api_rollback_status",
    "GET /api/v1/health/checks": "portal_health_api_list_checks",
    "GET /api/v1/health/checks/{slug}": "portal_health_api_get_check",
    "GET /api/v1/health/slos": "portal_health_api_list_slos",
    "GET /api/v1/silences": "portal_incidents_api_list_silences",
    "POST /api/v1/silences": "portal_incidents_api_create_silence",
    "DELETE /api/v1/silences/{silence_id}": "portal_incidents_api_delete_silence",
    # Maintenance windows (issue 20)
    "GET /api/v1/maintenance-windows": "portal_incidents_api_list_maintenance_windows",
    "POST /api/v1/maintenance-windows": "portal_incidents_api_create_maintenance_window",
    "DELETE /api/v1/maintenance-windows/{window_id}": "portal_incidents_api_delete_maintenance_window",
    "GET /api/v1/incidents": "portal_incidents_api_list_incidents",
    "GET /api/v1/incidents/{incident_id}": "portal_incidents_api_get_incident",
    "GET /api/v1/phases/current": "portal_phases_api_current",
    "GET /api/v1/runbooks": "runbooks_api_list_runbooks",
    "GET /api/v1/runbooks/runs/{run_id}": "runbooks_api_get_run",
    "GET /api/v1/runbooks/{slug}": "runbooks_api_get_runbook",
    "POST /api/v1/alerts/alertmanager": "portal_incidents_api_alertmanager_webhook",
    "POST /api/v1/alerts/sns": "portal_incidents_api_sns_webhook",
    "POST /api/v1/inbound/twilio/sms": "portal_inbound_api_twilio_twilio_sms",
    "POST /api/v1/inbound/twilio/voice": "portal_inbound_api_twilio_twilio_voice",
    "POST /api/v1/inbound/slack/interactions": "portal_inbound_api_slack_slack_interactions",
    "POST /api/v1/checklist/{slug}/revoke": "portal_checklist_api_revoke",
    "POST /api/v1/checklist/{slug}/sign-off": "portal_checklist_api_sign_off",
    "POST /api/v1/checklist/{slug}/verify": "portal_checklist_api_verify",
    "POST /api/v1/checklist/{slug}/load-test": "portal_checklist_api_load_test",
    "POST /api/v1/deployments": "deployments_api_create_deployment",
    "POST /api/v1/deployments/{deployment_id}/abort": "deployments_api_abort",
    "POST /api/v1/deployments/{deployment_id}/pause": "deployments_api_pause",
    "POST /api/v1/deployments/{deployment_id}/promote": "deployments_api_promote",
    "POST /api/v1/deployments/{deployment_id}/resume": "deployments_api_resume",
    "POST /api/v1/environments/{name}/rollback": "deployments_api_rollback",
    "POST /api/v1/environments/{name}/scale": "deployments_api_scale",
    # Strategies, analysis templates and their replay (issue 19)
    "GET /api/v1/strategies": "deployments_api_strategies_list_strategies",
    "POST /api/v1/strategies": "deployments_api_strategies_save_strategy",
    "GET /api/v1/analysis-templates": "deployments_api_strategies_list_templates",
    "POST /api/v1/analysis-templates": "deployments_api_strategies_save_template",
    "GET /api/v1/analysis-templates/{slug}/replay": "deployments_api_strategies_replay_template",
    # Freezes and DORA (issue 19)
    "GET /api/v1/environments/{name}/freezes": "deployments_api_release_ops_list_freezes",
    "POST /api/v1/environments/{name}/freezes": "deployments_api_release_ops_create_freeze",
    "DELETE /api/v1/environments/{name}/freezes/{freeze_id}": "deployments_api_release_ops_lift_freeze",
    "GET /api/v1/environments/{name}/dora": "deployments_api_release_ops_get_dora",
    "POST /api/v1/health/checks/{slug}/run": "portal_health_api_run_check_now",
    "POST /api/v1/incidents/bulk": "portal_incidents_api_bulk_action",
    "POST /api/v1/incidents/{incident_id}/acknowledge": "portal_incidents_api_acknowledge",
    "POST /api/v1/incidents/{incident_id}/notes": "portal_incidents_api_add_note",
    "POST /api/v1/incidents/{incident_id}/resolve": "portal_incidents_api_resolve",
    "POST /api/v1/runbooks/runs/{run_id}/steps/{step_id}": "runbooks_api_record_step",
    "POST /api/v1/runbooks/{slug}/runs": "runbooks_api_start_run",
    # On call (issue 16)
    "GET /api/v1/oncall": "portal_oncall_api_oncall",
    "GET /api/v1/schedules": "portal_oncall_api_schedules",
    "POST /api/v1/schedules": "portal_oncall_api_schedule_create",
    "PUT /api/v1/schedules/{slug}": "portal_oncall_api_schedule_update",
    "POST /api/v1/schedules/{slug}/overrides": "portal_oncall_api_override_create",
    "DELETE /api/v1/schedules/{slug}/overrides/{override_id}": "portal_oncall_api_override_delete",
    # Thresholds (issue 20)
    "GET /api/v1/thresholds": "portal_health_api_threshold_list",
    "PUT /api/v1/thresholds/{metric}/{severity}": "portal_health_api_threshold_put",
    # Heartbeats (issue 20)
    "GET /api/v1/heartbeats": "portal_heartbeats_api_list_heartbeats",
    "POST /api/v1/heartbeats": "portal_heartbeats_api_create_heartbeat",
    "POST /api/v1/heartbeats/{slug}/ping": "portal_heartbeats_api_ping",
    "POST /api/v1/heartbeats/{slug}/ping/{token}": "portal_heartbeats_api_ping_with_token",
    "GET /api/v1/heartbeats/{slug}/ping/{token}": "portal_heartbeats_api_ping_with_token_get",
    "POST /api/v1/incidents": "portal_command_api_declare_incident",
    "GET /api/v1/incidents/{incident_id}/updates": "portal_command_api_list_updates",
    "POST /api/v1/incidents/{incident_id}/updates": "portal_command_api_post_update",
    "GET /api/v1/incidents/{incident_id}/roles": "portal_command_api_list_roles",
    "POST /api/v1/incidents/{incident_id}/roles": "portal_command_api_take_role",
    "GET /api/v1/incidents/{incident_id}/actions": "portal_command_api_list_actions",
    "POST /api/v1/incidents/{incident_id}/actions": "portal_command_api_add_action",
    "GET /api/v1/action-items": "portal_command_api_open_action_items",
    "POST /api/v1/inbound/slack/commands": "portal_command_api_slack_declare",
}


def test_openapi_paths_and_operation_ids_are_unchanged():
    from portal.api import api

    schema = api.get_openapi_schema()
    ops = {f"{method.upper()} {path}": op.get("operationId") for path, methods in schema["paths"].items() for method, op in methods.items()}
    assert ops == OPERATIONS


def _import_graph() -> dict[str, set[str]]:
    """Module -> repo modules it imports, at the top or inside functions (a local import is still an arrow)."""
    modules = dict((name, path) for path, name in _modules())
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(name, node, is_package)
                targets = [f"{base}.{a.name}" for a in node.names] or [base]
            for target in targets:
                if not _is_repo(target):
                    continue
                found = resolve(target)
                # A package's own __init__ (an empty face) is not an arrow back into the package.
                if found and found != name and not (modules[found].name == "__init__.py" and name.startswith(found + ".")):
                    graph[name].add(found)
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_circle_finder_finds_a_circle():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles_among_product_modules():
    circles = _circles(_import_graph())
    assert not circles, "import circles (counting imports inside functions): " + "; ".join(" <-> ".join(c) for c in circles)
