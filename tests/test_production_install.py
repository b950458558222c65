"""A production install (`pip install .`, no extras) carries no moto: the sandbox and the test plugin are extras."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_DIRS = ("portal", "runbooks", "deployments")
NOT_PRODUCT = ("portal/sandbox/",)  # the sandbox app: installed with the `sandbox` extra only


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower()


def test_moto_is_only_in_the_optional_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "moto" not in {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert "moto" in {_name(r) for r in extras["sandbox"]}
    assert any(_name(r) == "fairtradeworker-ops-portal" and "sandbox" in r for r in extras["dev"])


def _product_modules() -> list[str]:
    out = []
    for d in PRODUCT_DIRS:
        for path in sorted((ROOT / d).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            parts = path.relative_to(ROOT).parts
            if rel.startswith(NOT_PRODUCT) or "tests" in parts or "migrations" in parts or path.name.startswith("test_"):
                continue
            mod = rel.removesuffix(".py").replace("/", ".").removesuffix(".__init__")
            out.append(mod)
    return out


BLOCKER = r'''
import importlib, importlib.abc, json, os, sys

class NoMoto(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "moto" or name.startswith("moto."):
            raise ImportError(f"moto is not installed in production (imported {name})")
        return None

sys.meta_path.insert(0, NoMoto())
import django
django.setup()
failed = {}
for mod in json.loads(sys.argv[1]):
    try:
        importlib.import_module(mod)
    except Exception as exc:
        failed[mod] = f"{type(exc).__name__}: {exc}"
failed.update({m: "moto was imported" for m in sys.modules if m == "moto" or m.startswith("moto.")})
print(json.dumps(failed))
'''


def test_every_product_module_imports_without_moto():
    modules = _product_modules()
    assert "portal.cloud.aws" in modules and not any(m.startswith("portal.sandbox") for m in modules)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "PORTAL_ENV": "development",
           "PORTAL_SANDBOX": "false"}
    proc = subprocess.run([sys.executable, "-c", BLOCKER, json.dumps(modules)], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    failed = json.loads(proc.stdout.strip().splitlines()[-1])
    needs_moto = {m: why for m, why in failed.items() if "moto" in why}
    assert needs_moto == {}, needs_moto
