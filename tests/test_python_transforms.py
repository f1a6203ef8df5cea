"""Python transforms (mesh_assets.engine.python_transforms): a function receives the engine's native frames — DuckDB
relations or Spark DataFrames — and its result is audited and published like a SQL transform's."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.runner import run_mesh

TOTALS = ("shop", "gold", "order_totals")
# Both engines in one function: it branches on the frame it receives (docs/contracts.md).
PYTHON = '''
import duckdb


def transform(inputs, session):
    orders = inputs["silver.orders"]
    assert set(inputs) == {"silver.orders", "previous.order_totals"}
    if isinstance(orders, duckdb.DuckDBPyRelation):
        return orders.aggregate("customer, sum(amount) AS total", "customer")
    from pyspark.sql import functions as F
    return orders.groupBy("customer").agg(F.sum("amount").alias("total"))
'''


def _bind(root: Path, source: str, inputs: str | None = "[silver.orders]") -> None:
    """Make ``shop.order_totals`` a Python transform with ``source``."""
    (root / "domains" / "shop" / "python" / "gold").mkdir(parents=True)
    (root / "domains" / "shop" / "python" / "gold" / "order_totals.py").write_text(source)
    contract = root / "domains" / "shop" / "products" / "orders.yaml"
    declared = f"      - {{property: inputs, value: {inputs}}}\n" if inputs else ""
    contract.write_text(contract.read_text().replace(
        "    description: Total amount per customer.\n    customProperties:\n",
        "    description: Total amount per customer.\n    customProperties:\n"
        "      - {property: transform, value: python/gold/order_totals.py}\n" + declared))


def _totals(root: Path) -> list[tuple]:
    port = PortStorage(root=load_mesh(root).settings.storage_url).port(TOTALS)
    return duckdb.sql(f"SELECT * FROM read_parquet('{port.current_snapshot().glob}') ORDER BY 1").fetchall()


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("spark", marks=pytest.mark.spark)])
def test_python_transform_gets_native_frames_and_publishes_through_the_checks(
        tiny_root: Path, instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    _bind(tiny_root, PYTHON)
    monkeypatch.setenv("MESH_ENGINE", engine)
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
    totals = next(a for a in summary.assets if a.key == "shop/gold/order_totals")
    assert totals.checks_passed >= 2 and not totals.warnings + totals.blocking  # schema, primary key: as for SQL
    assert _totals(tiny_root) == [("ann", Decimal("11.50")), ("bob", Decimal("20.00"))]
    event = instance.get_latest_materialization_event(dg.AssetKey(list(TOTALS)))
    assert "```python\n" in event.asset_materialization.metadata["sql"].value  # the UI shows the function
    assert load_mesh(tiny_root).domain("shop").table("gold", "order_totals").inputs == ("silver.orders",)
    events = [json.loads(line) for line in (tiny_root / ".mesh" / "openlineage" / "events.jsonl").open()]
    complete = next(e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith("order_totals"))
    assert complete["job"]["facets"]["sourceCode"]["language"] == "python"  # lineage tools see the function
    assert [i["name"] for i in complete["inputs"]] == ["shop/silver/orders"]


def test_a_failing_function_names_its_file_and_line(tiny_root: Path, instance: dg.DagsterInstance) -> None:
    _bind(tiny_root, "def transform(inputs, session):\n    x = 1\n    raise ValueError('no totals today')\n")
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert not summary.success
    failure = next(e for e in instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.STEP_FAILURE))
    message = failure.dagster_event.event_specific_data.error.message
    assert "transform() failed on duckdb: ValueError: no totals today (order_totals.py, line 3)" in message


def test_a_function_returning_no_frame_is_refused(tiny_root: Path, instance: dg.DagsterInstance) -> None:
    _bind(tiny_root, "def transform(inputs, session):\n    return [('ann', 1)]\n")
    summary = run_mesh(load_mesh(tiny_root), instance)
    failure = next(e for e in instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.STEP_FAILURE))
    assert "transform() returned list; on duckdb it returns a duckdb.DuckDBPyRelation" in \
        failure.dagster_event.event_specific_data.error.message


def test_a_python_transform_declares_its_inputs(tiny_root: Path) -> None:
    _bind(tiny_root, PYTHON, inputs=None)
    with pytest.raises(MeshError, match="a Python transform declares the tables it reads"):
        load_mesh(tiny_root).domain("shop")


def test_declared_inputs_follow_the_access_rules_of_sql(tiny_root: Path) -> None:
    _bind(tiny_root, PYTHON, inputs="[shop.orders]")
    from mesh_assets.orchestration.definitions import build_mesh_definitions

    with pytest.raises(MeshError, match="is this domain's own table: write gold.orders"):
        build_mesh_definitions(load_mesh(tiny_root))
