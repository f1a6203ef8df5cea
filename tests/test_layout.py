"""The package layout holds (docs/architecture.md): the framework's layers, no import circle, the contract model at
the ground floor, and no module using another's private names.

The layers and the forbidden imports are import-linter contracts in pyproject.toml; every import counts, wherever
it is written (module level, inside a function, under ``TYPE_CHECKING``).
"""

from __future__ import annotations

import ast
import pkgutil
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mesh_assets"


def test_import_contracts_hold() -> None:
    """`lint-imports` keeps every contract of pyproject.toml: a new upward import or circle fails here."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_the_contract_model_imports_the_standard_library_only() -> None:
    tree = ast.parse((PACKAGE / "contract" / "model.py").read_text(encoding="utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_no_module_imports_a_private_name_of_another() -> None:
    """A leading underscore means "this module only": `from mesh_assets.x import _helper` elsewhere fails."""
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mesh_assets"):
                offences += [f"{path.relative_to(ROOT)}: from {node.module} import {alias.name}"
                             for alias in node.names if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert offences == []


def test_the_public_api_contract_names_every_private_module_of_dagster() -> None:
    """import-linter has no `_*` wildcard, so pyproject.toml lists dagster's private modules by name: a Dagster
    upgrade that adds one fails here until the contract names it."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    forbidden = next(c for c in contracts["contracts"] if c["name"] == "Public Dagster APIs only")["forbidden_modules"]
    private = {f"dagster.{m.name}" for m in pkgutil.iter_modules(dagster.__path__)
               if m.name.startswith("_") and not m.name.startswith("__")}
    assert private and private <= set(forbidden), sorted(private - set(forbidden))
