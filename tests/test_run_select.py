"""`mesh run --select`: a Dagster asset selection string picks the assets to run, in dependency order, whole
steps at a time; a selection that does not parse or picks nothing is an error naming the fix."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from mesh_assets.cli.main import app
from mesh_assets.contract.mesh import Mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.runner import run_mesh

BRONZE = ["shop/bronze/raw_customers", "shop/bronze/raw_customers__rejects", "shop/bronze/raw_orders",
          "shop/bronze/raw_orders__rejects"]


def test_upstream_of_a_key_runs_in_dependency_order_and_nothing_else(tiny_mesh: Mesh,
                                                                    instance: dg.DagsterInstance) -> None:
    # silver orders reads raw_orders and checks its customers against raw_customers: both are its parents
    summary = run_mesh(tiny_mesh, instance, selection='+key:"shop/silver/orders"')
    assert summary.success
    keys = [a.key for a in summary.assets]
    assert sorted(keys) == sorted([*BRONZE, "shop/silver/orders"])  # a bronze step brings its __rejects
    assert keys[-1] == "shop/silver/orders"  # after everything it reads
    assert all(a.status == "materialized" for a in summary.assets)
    gold = PortStorage(root=tiny_mesh.settings.storage_url).port(("shop", "gold", "order_totals"))
    assert gold.current() is None  # not selected: never run
    assert instance.get_latest_materialization_event(dg.AssetKey(["shop", "gold", "order_totals"])) is None


def test_a_tag_selects_a_layer(tiny_mesh: Mesh, instance: dg.DagsterInstance) -> None:
    summary = run_mesh(tiny_mesh, instance, selection="tag:mesh/layer=bronze")
    assert summary.success and sorted(a.key for a in summary.assets) == BRONZE


@pytest.mark.parametrize(("selection", "said"), [
    ("key:((", "is not an asset selection"),
    ('key:"shop/gold/nothing"', "picks no asset"),
])
def test_a_bad_selection_names_the_fix_and_runs_nothing(tiny_mesh: Mesh, instance: dg.DagsterInstance,
                                                        selection: str, said: str) -> None:
    with pytest.raises(MeshError) as raised:
        run_mesh(tiny_mesh, instance, selection=selection)
    assert said in str(raised.value) and "group:shop" in str(raised.value)
    assert instance.get_run_records() == []


def test_mesh_run_select_on_the_command_line(tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    result = CliRunner().invoke(app, ["run", "--root", str(tiny_root), "--select", "tag:mesh/layer=nothing"])
    assert result.exit_code == 2 and "picks no asset" in result.output, result.output
