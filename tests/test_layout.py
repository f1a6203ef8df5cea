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
import zipfile
from email.parser import Parser
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


def test_the_wheel_holds_the_framework_only(tmp_path: Path) -> None:
    """`pip install mesh-assets` installs the framework alone: the wheel's only top-level package is `mesh_assets`
    (with its templates and schemas), never the reference mesh `domains` nor `benchmarks`, and the reference mesh's
    tools (tpchgen-cli) are no dependency of it. Built from a copy of the sources, so the checkout stays clean."""
    source = tmp_path / "source"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for name in ("mesh_assets", "domains", "benchmarks"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "--wheel-dir", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout[-4000:] + built.stderr[-4000:]
    [wheel] = (tmp_path / "dist").glob("mesh_assets-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert {n.split("/")[0] for n in names} - {info} == {"mesh_assets"}
    assert {"mesh_assets/catalog/templates/index.html", "mesh_assets/contract/schemas/odcs-v3.1.0.schema.json"
            } <= set(names), sorted(n for n in names if not n.endswith(".py"))
    requires = metadata.get_all("Requires-Dist")
    assert any(r.startswith("dagster==") for r in requires)
    assert [r for r in requires if r.startswith("tpchgen-cli")] == ['tpchgen-cli==4.0.0; extra == "test"']
    assert "mesh = mesh_assets.cli.main:app" in entry_points
