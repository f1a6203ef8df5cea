"""``mesh validate --base <ref>``: breaking changes of output ports against a git commit of the tiny mesh.

The tiny mesh's gold table ``shop.order_totals`` (columns ``customer`` primary key, ``total`` required) is public
by default, so it is the port these tests change in the working tree after committing the base.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh_assets.contract.mesh import Mesh, load_domain
from mesh_assets.errors import MeshError
from mesh_assets.governance.changes import breaking_change_findings, compare_products

ORDERS = Path("domains/shop/products/orders.yaml")
Contract = dict[str, Any]


def edit(root: Path, change: Callable[[Contract], None], path: Path = ORDERS) -> None:
    data = yaml.safe_load((root / path).read_text())
    change(data)
    (root / path).write_text(yaml.safe_dump(data, sort_keys=False))


def totals(data: Contract) -> Contract:
    return next(t for t in data["schema"] if t["name"] == "order_totals")


def column(data: Contract, name: str) -> Contract:
    return next(c for c in totals(data)["properties"] if c["name"] == name)


def commit(root: Path) -> None:
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org",
           "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "base"], check=True)


def findings(root: Path, ref: str = "HEAD"):
    current = {p.path: p for p in load_domain(root / "domains" / "shop").products}
    return breaking_change_findings(root, "domains", ref, current)


def errors(root: Path) -> list:
    return [f for f in findings(root) if f.severity == "error"]


@pytest.fixture
def root(tiny_mesh: Mesh) -> Path:
    """The tiny mesh committed as the base (HEAD), for the test to change in its working tree."""
    commit(tiny_mesh.root)
    return tiny_mesh.root


def test_unchanged_mesh_has_no_findings(root: Path) -> None:
    edit(root, lambda d: column(d, "total").update(physicalType="decimal(38, 2)", description="Reworded."))
    assert findings(root) == []


def test_removed_column_is_an_error_naming_port_and_column(root: Path) -> None:
    edit(root, lambda d: totals(d)["properties"].remove(column(d, "total")))
    [error] = errors(root)
    assert error.rule == "change/breaking"
    assert "shop.order_totals" in error.message and "total" in error.message and "removed" in error.message
    assert "2.0.0" in error.fix
    assert error.file == root / ORDERS and error.line is not None


@pytest.mark.parametrize("change, expected", [
    (lambda d: column(d, "total").update(physicalType="DOUBLE"), "type changed"),
    (lambda d: column(d, "total").update(logicalType="string", physicalType="VARCHAR"), "type changed"),
    (lambda d: column(d, "total").update(required=False), "nullable"),
    (lambda d: column(d, "customer").pop("primaryKey"), "no longer part of the primary key"),
    (lambda d: column(d, "total").update(primaryKey=True), "added to the primary key"),
    (lambda d: totals(d)["customProperties"].append({"property": "visibility", "value": "restricted"}),
     "restricted"),
], ids=["physical type", "logical type", "nullable", "key column dropped", "key widened", "restricted"])
def test_breaking_change_without_major_bump_is_an_error(root: Path, change, expected: str) -> None:
    edit(root, change)
    found = errors(root)
    assert found and all(f.rule == "change/breaking" and "shop.order_totals" in f.message for f in found)
    assert any(expected in f.message for f in found)


@pytest.mark.parametrize("change", [
    lambda d: column(d, "total").pop("logicalTypeOptions"),
    lambda d: column(d, "total").update(logicalTypeOptions={"minimum": -100}),
], ids=["removed", "loosened"])
def test_removed_or_loosened_constraint_is_an_error(tiny_mesh: Mesh, change) -> None:
    root = tiny_mesh.root
    edit(root, lambda d: column(d, "total").update(logicalTypeOptions={"minimum": 0}))
    commit(root)
    edit(root, change)
    [error] = errors(root)
    assert "total_minimum" in error.message and "column total" in error.message


def orders_product(root: Path):
    return next(p for p in load_domain(root / "domains" / "shop").products if p.path.name == ORDERS.name)


def test_added_columns_and_constraints_are_compatible(root: Path) -> None:
    def add(d: Contract) -> None:
        totals(d)["properties"] += [
            {"name": "orders", "logicalType": "integer", "physicalType": "BIGINT", "description": "Orders."},
            {"name": "region", "logicalType": "string", "required": True, "description": "Region."}]
        column(d, "total")["logicalTypeOptions"] = {"minimum": 0}

    base = orders_product(root)
    edit(root, add)
    assert findings(root) == []
    changes = compare_products(base, orders_product(root))
    assert {(c.kind, c.column, c.what) for c in changes} == {
        ("compatible", "orders", "column added (optional)"),
        ("compatible", "region", "column added (required)"),
        ("compatible", "total", "constraint total_minimum added (total >= 0)")}


def test_breaking_change_with_major_bump_is_a_warning(root: Path) -> None:
    def bump(d: Contract) -> None:
        totals(d)["properties"].remove(column(d, "total"))
        d["version"] = "2.0.0-rc.1"

    edit(root, bump)
    [warning] = findings(root)
    assert warning.severity == "warning" and "column total" in warning.message


@pytest.mark.parametrize("version, expected", [("0.9.0", "lower"), ("one", "not a semantic version"),
                                               ("1.0", "not a semantic version")])
def test_bad_version_is_an_error(root: Path, version: str, expected: str) -> None:
    edit(root, lambda d: d.update(version=version))
    [error] = errors(root)
    assert error.rule == "change/version" and error.field == "version" and expected in error.message


def test_unreadable_base_version_only_warns(tiny_mesh: Mesh) -> None:
    root = tiny_mesh.root
    edit(root, lambda d: d.update(version="1.0"))
    commit(root)
    edit(root, lambda d: [totals(d)["properties"].remove(column(d, "total")), d.update(version="1.1.0")])
    found = findings(root)
    assert {(f.severity, f.rule) for f in found} == {("warning", "change/version"), ("warning", "change/breaking")}


def test_removed_port_file_is_an_error(root: Path) -> None:
    (root / ORDERS).unlink()
    [error] = errors(root)
    assert "shop.order_totals" in error.message and "removed" in error.message
    assert error.file == root / ORDERS  # where the contract was, not the temporary copy of the base


@pytest.mark.parametrize("change", [
    lambda d: d["schema"].remove(totals(d)),
    lambda d: totals(d)["customProperties"].append({"property": "visibility", "value": "private"}),
], ids=["table removed", "made private"])
def test_removed_port_is_an_error_even_with_major_bump(root: Path, change) -> None:
    def remove(d: Contract) -> None:
        change(d)
        d["version"] = "2.0.0"

    edit(root, remove)
    [error] = errors(root)
    assert "port shop.order_totals" in error.message


def test_contract_that_no_longer_loads_is_not_reported_as_removed(root: Path) -> None:
    # mesh validate reports the broken contract itself; it is left out of ``current``, yet still on disk
    edit(root, lambda d: totals(d)["customProperties"][0].update(value="platinum"))
    assert breaking_change_findings(root, "domains", "HEAD", {}) == []


def test_removal_after_end_of_support_is_allowed(tiny_mesh: Mesh) -> None:
    root = tiny_mesh.root
    edit(root, lambda d: d.update(status="deprecated",
                                  customProperties=[{"property": "endOfSupport", "value": "2000-01-31"}]))
    commit(root)
    (root / ORDERS).unlink()
    assert findings(root) == []


def test_base_domain_that_does_not_load_is_a_warning(tiny_mesh: Mesh) -> None:
    root = tiny_mesh.root
    edit(root, lambda d: totals(d)["customProperties"][0].update(value="platinum"))
    commit(root)
    edit(root, lambda d: totals(d)["customProperties"][0].update(value="gold"))
    [warning] = findings(root)
    assert warning.severity == "warning" and warning.rule == "change/base" and "HEAD" in warning.message


def test_unknown_ref_and_missing_repository_are_mesh_errors(tiny_mesh: Mesh, monkeypatch) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tiny_mesh.root.parent))  # even if the temp dir is in a repo
    with pytest.raises(MeshError, match="not in a git repository"):
        findings(tiny_mesh.root)
    commit(tiny_mesh.root)
    with pytest.raises(MeshError, match=r"unknown git ref 'origin/nope'.*git fetch origin main"):
        findings(tiny_mesh.root, "origin/nope")
