"""Write–audit–publish through Dagster: a failing blocking check keeps the snapshot unpublished, records the
check result, and stops downstream; a failing warning only records."""

from __future__ import annotations

from decimal import Decimal

import dagster as dg

from mesh_assets.contract.mesh import Mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.orchestration.runner import run_mesh

SILVER = dg.AssetKey(["shop", "silver", "orders"])
GOLD = dg.AssetKey(["shop", "gold", "order_totals"])


def _evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, dg.AssetCheckEvaluation]:
    logs = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return {f"{e.dagster_event.event_specific_data.asset_key.to_user_string()}:"
            f"{e.dagster_event.event_specific_data.check_name}": e.dagster_event.event_specific_data for e in logs}


def test_valid_data_publishes_every_layer(tiny_mesh: Mesh, instance: dg.DagsterInstance) -> None:
    summary = run_mesh(tiny_mesh, instance)
    assert summary.success
    assert {a.key: (a.status, a.rows) for a in summary.assets} == {
        "shop/bronze/raw_customers": ("materialized", 5),
        "shop/bronze/raw_customers__rejects": ("materialized", 0),
        "shop/bronze/raw_orders": ("materialized", 3),
        "shop/bronze/raw_orders__rejects": ("materialized", 0),
        "shop/silver/orders": ("materialized", 3),
        "shop/gold/order_totals": ("materialized", 2),
    }
    materialization = instance.get_latest_materialization_event(GOLD).asset_materialization
    assert materialization.metadata["dagster/row_count"].value == 2
    storage = PortStorage(root=tiny_mesh.settings.storage_url)
    current = storage.port(GOLD.path).current()
    assert current["snapshot"] == materialization.metadata["snapshot"].value
    assert materialization.metadata["iceberg_table"].value == "shop.gold__order_totals"
    assert materialization.metadata["iceberg_snapshot_id"].value == current["iceberg_snapshot_id"]
    assert materialization.metadata["commit_seconds"].value > 0
    lineage = materialization.metadata["dagster/column_lineage"].value.deps_by_column
    assert lineage["total"] == [dg.TableColumnDep(asset_key=SILVER, column_name="amount")]
    assert lineage["customer"] == [dg.TableColumnDep(asset_key=SILVER, column_name="customer")]


def test_failing_blocking_check_on_silver(tiny_mesh: Mesh, instance: dg.DagsterInstance, land) -> None:
    assert run_mesh(tiny_mesh, instance).success
    storage = PortStorage(root=tiny_mesh.settings.storage_url)
    silver_before = storage.port(SILVER.path).current()["snapshot"]
    gold_before = instance.get_latest_materialization_event(GOLD)

    land("order_id,customer,amount\n1,ann,10.00\n2,bob,-5.00\n3,cy,20.00\n4,dee,-7.25\n")
    summary = run_mesh(tiny_mesh, instance)

    assert not summary.success
    status = {a.key: a.status for a in summary.assets if not a.key.endswith("__rejects")}
    assert status == {"shop/bronze/raw_customers": "materialized", "shop/bronze/raw_orders": "materialized",
                      "shop/silver/orders": "failed",
                      "shop/gold/order_totals": "skipped"}
    # the check result is recorded, with counts from an aggregate and a bounded sample
    evaluation = _evaluations(instance, summary.run_id)["shop/silver/orders:amount_minimum"]
    assert evaluation.passed is False
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    assert metadata["failing_rows"] == 2 and metadata["rows_checked"] == 4
    assert metadata["pass_rate"] == 0.5
    assert sorted(r["order_id"] for r in metadata["sample"]) == [2, 4]
    assert "amount" in metadata["sql"]
    # the new silver snapshot exists but is not published; gold did not run
    port = storage.port(SILVER.path)
    assert port.current()["snapshot"] == silver_before
    assert len(port.snapshot_ids()) == 2
    assert instance.get_latest_materialization_event(GOLD).run_id == gold_before.run_id
    assert instance.get_latest_materialization_event(SILVER).run_id != summary.run_id


def test_failing_warning_records_but_publishes(tiny_mesh: Mesh, instance: dg.DagsterInstance, land) -> None:
    land("order_id,customer,amount\n1,ann,10.00\n2,bob,3.00\n")
    summary = run_mesh(tiny_mesh, instance)
    assert summary.success
    metadata = instance.get_latest_materialization_event(SILVER).asset_materialization.metadata
    # silver: 7 checks, all error (weight 3) but amount_is_small, a failed warning (weight 2)
    assert metadata["quality_score"].value == round(18 / 20, 4)
    # product `orders`: bronze raw_orders (schema, drift, conservation, primary_key, customer_required: 5 × 3
    # passed; rejected_rows: a passed warning, 2), silver as above, gold (schema, primary_key, total_required)
    gold = instance.get_latest_materialization_event(GOLD).asset_materialization.metadata
    assert gold["product_quality_score"].value == round((15 + 2 + 18 + 9) / (15 + 2 + 20 + 9), 4)
    evaluation = _evaluations(instance, summary.run_id)["shop/silver/orders:amount_is_small"]
    assert evaluation.passed is False
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert {k: v.value for k, v in evaluation.metadata.items()}["failing_rows"] == 1


def test_schema_mismatch_fails_before_writing(tiny_mesh: Mesh, tiny_root, instance: dg.DagsterInstance) -> None:
    sql = tiny_root / "domains" / "shop" / "sql" / "silver" / "orders.sql"
    sql.write_text("select order_id, customer, amount::double as amount from bronze.raw_orders")
    summary = run_mesh(tiny_mesh, instance)
    assert not summary.success
    evaluation = _evaluations(instance, summary.run_id)["shop/silver/orders:schema"]
    problems = evaluation.metadata["problems"].value
    assert problems == ["column amount is DOUBLE, the contract says DECIMAL(10,2)"]
    assert PortStorage(root=tiny_mesh.settings.storage_url).port(SILVER.path).snapshot_ids() == []


def test_unparsable_record_is_rejected_with_file_line_and_reason(tiny_mesh: Mesh, instance: dg.DagsterInstance,
                                                                 land) -> None:
    land("order_id,customer,amount\n1,ann,10.00\nx,bob,3.00\n")
    summary = run_mesh(tiny_mesh, instance)
    assert summary.success  # rejects are a warning by default: the good rows are published
    rows = {a.key: a.rows for a in summary.assets}
    assert rows["shop/bronze/raw_orders"] == 1 and rows["shop/bronze/raw_orders__rejects"] == 1
    checks = _evaluations(instance, summary.run_id)
    assert checks["shop/bronze/raw_orders:row_conservation"].passed
    assert {k: v.value for k, v in checks["shop/bronze/raw_orders:row_conservation"].metadata.items()} == {
        "rows_read": 2, "rows_accepted": 1, "rows_rejected": 1}
    rejected = checks["shop/bronze/raw_orders:rejected_rows"]
    assert not rejected.passed and rejected.severity == dg.AssetCheckSeverity.WARN
    port = PortStorage(root=tiny_mesh.settings.storage_url).port(("shop", "bronze", "raw_orders__rejects"))
    import duckdb
    record = duckdb.sql(f"SELECT line_number, raw_line, error_types, reason, _source_file "
                        f"FROM read_parquet('{port.current_snapshot().glob}')").fetchall()
    assert len(record) == 1
    line, raw, types, reason, source = record[0]
    assert (line, raw.strip(), types) == (3, "x,bob,3.00", "CAST")
    assert 'Could not convert string "x"' in reason and source.endswith("orders.csv")


def test_orphan_foreign_key_blocks_with_orphan_counts(tiny_mesh: Mesh, instance: dg.DagsterInstance, land) -> None:
    land("order_id,customer,amount\n1,ann,10.00\n2,max,20.00\n3,max,1.50\n4,ivy,2.00\n")
    summary = run_mesh(tiny_mesh, instance)
    assert not summary.success
    evaluation = _evaluations(instance, summary.run_id)["shop/silver/orders:customer_references_raw_customers"]
    metadata = {k: v.value for k, v in evaluation.metadata.items()}
    assert evaluation.passed is False
    assert metadata["failing_rows"] == 3 and metadata["distinct_orphan_keys"] == 2
    assert sorted((r["customer"], r["rows"]) for r in metadata["sample"]) == [("ivy", 1), ("max", 2)]


def test_silver_drift_tolerated_when_mesh_yaml_says_warn(tiny_root, instance: dg.DagsterInstance) -> None:
    from mesh_assets.contract.mesh import load_mesh

    (tiny_root / "mesh.yaml").write_text((tiny_root / "mesh.yaml").read_text() + "schema_drift:\n  silver: warn\n")
    sql = tiny_root / "domains" / "shop" / "sql" / "silver" / "orders.sql"
    sql.write_text("select amount::double as amount, order_id, trim(customer) as customer, 'x' as extra "
                   "from bronze.raw_orders")
    mesh = load_mesh(tiny_root)
    summary = run_mesh(mesh, instance)
    evaluation = _evaluations(instance, summary.run_id)["shop/silver/orders:schema"]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert sorted(evaluation.metadata["problems"].value) == [
        "column amount is DOUBLE, the contract says DECIMAL(10,2)", "column extra is not in the contract"]
    assert summary.success
    port = PortStorage(root=mesh.settings.storage_url).port(SILVER.path)
    import duckdb
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{port.current_snapshot().glob}') ORDER BY order_id")
    assert relation.columns == ["order_id", "customer", "amount"]
    assert [str(t) for t in relation.types] == ["BIGINT", "VARCHAR", "DECIMAL(10,2)"]
    assert relation.fetchall()[0] == (1, "ann", Decimal("10.00"))
