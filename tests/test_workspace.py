"""The workspace: one code location per domain, loadable by Dagster, forming one asset graph across domains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

pytestmark = pytest.mark.slow  # loads the four reference code locations (Dagster's CLI and code servers)

REPO = Path(__file__).parent.parent
DOMAINS = ("customers", "supply", "sales", "finance")


def test_dagster_definitions_validate_passes(tmp_path: Path) -> None:
    dagster = Path(sys.executable).parent / "dagster"
    result = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO,
                            env={**os.environ, "DAGSTER_HOME": str(tmp_path)}, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for domain in DOMAINS:
        assert f"{domain}_domain.definitions" in result.stderr + result.stdout


@pytest.fixture(scope="module")
def workspace():
    with dg.instance_for_test() as instance, WorkspaceProcessContext(
        instance, WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])
    ) as context:
        yield context.create_request_context()


def test_one_code_location_per_domain(workspace) -> None:
    assert sorted(workspace.code_location_names) == sorted(DOMAINS)
    for domain in DOMAINS:
        assert workspace.get_code_location_error(domain) is None


def test_asset_graph_has_cross_domain_edges(workspace) -> None:
    graph = workspace.asset_graph
    parents = lambda *key: {k.to_user_string() for k in graph.get(dg.AssetKey(list(key))).parent_keys}  # noqa: E731
    assert {"customers/gold/customer_profile", "supply/gold/part_catalog",
            "supply/gold/supplier_profile"} <= parents("sales", "gold", "order_lines_wide")
    assert "customers/gold/nations" in parents("supply", "gold", "supplier_profile")
    assert parents("finance", "gold", "pricing_summary_report") == {"sales/gold/order_lines_wide"}
    assert "sales/gold/order_lines_wide" in parents("finance", "gold", "returned_item_reporting")


def test_assets_carry_owner_schema_kinds_tags_checks_and_freshness(workspace) -> None:
    node = workspace.asset_graph.get(dg.AssetKey(["customers", "gold", "customer_profile"]))
    spec = node.resolve_to_singular_repo_scoped_node().asset_node_snap
    assert spec.owners == ["team:customer-success"]
    assert spec.group_name == "customers"
    assert {"dagster/kind/duckdb", "dagster/kind/parquet"} <= set(spec.tags)  # how Dagster stores kinds
    assert spec.tags["mesh/layer"] == "gold" and spec.tags["mesh/visibility"] == "public"
    columns = spec.metadata["dagster/column_schema"].schema.columns
    assert "c_custkey" in [c.name for c in columns] and all(c.description for c in columns)
    assert spec.description and spec.freshness_policy is not None
    assert "all_deps_blocking_checks_passed" in str(node.automation_condition)
    checks = {key.name for key in node.check_keys}
    assert {"schema", "primary_key"} <= checks
