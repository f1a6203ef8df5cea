"""The corpus of bad inputs (tests/fixtures/bad_inputs): each case's exact outcome. Bad input never loses
data (every record is accepted or rejected, the previous snapshot stays current) and never crashes without a
clear message."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from mesh_assets.contract.mesh import Mesh, load_mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.orchestration.runner import RunSummary, run_mesh

CORPUS = Path(__file__).parent / "fixtures" / "bad_inputs"
ORDERS = "shop/bronze/raw_orders"


def _run(mesh: Mesh, root: Path, instance: dg.DagsterInstance, case: str, target: str = "orders.csv"):
    shutil.copyfile(CORPUS / case, root / ".mesh" / "landing" / "shop" / target)
    summary = run_mesh(mesh, instance)
    checks = {}
    for entry in instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        data = entry.dagster_event.event_specific_data
        checks[f"{data.asset_key.to_user_string()}:{data.check_name}"] = (
            data.passed, {k: v.value for k, v in data.metadata.items()})
    return summary, checks


def _status(summary: RunSummary) -> dict[str, tuple[str, int | None]]:
    return {a.key: (a.status, a.rows) for a in summary.assets}


def _rejects(mesh: Mesh, table: str = "raw_orders") -> list[tuple]:
    port = PortStorage(root=mesh.settings.storage_url).port(("shop", "bronze", f"{table}__rejects"))
    return duckdb.sql(f"SELECT line_number, error_types, trim(raw_line) FROM "
                      f"read_parquet('{port.current_snapshot().glob}') ORDER BY 1").fetchall()


def _conservation(checks, table: str = ORDERS) -> dict:
    passed, metadata = checks[f"{table}:row_conservation"]
    assert passed
    return metadata


@pytest.fixture
def env(tiny_mesh: Mesh, tiny_root: Path, instance: dg.DagsterInstance):
    return tiny_mesh, tiny_root, instance


def test_truncated_file_rejects_the_cut_record(env) -> None:
    summary, checks = _run(*env, "truncated.csv")
    assert _status(summary)[ORDERS] == ("materialized", 1)
    assert _conservation(checks) == {"rows_read": 2, "rows_accepted": 1, "rows_rejected": 1}
    assert _rejects(env[0]) == [(3, "UNQUOTED VALUE", '2,"bo')]


def test_empty_file_is_drift_and_publishes_nothing(env) -> None:
    summary, checks = _run(*env, "empty.csv")
    assert not summary.success and _status(summary)[ORDERS][0] == "failed"
    passed, metadata = checks[f"{ORDERS}:schema_drift"]
    assert not passed and metadata["problems"] == ["orders.csv is empty: no header line"]
    assert PortStorage(root=env[0].settings.storage_url).port(("shop", "bronze", "raw_orders")).snapshot_ids() == []


def test_header_only_publishes_no_rows_and_silver_rowcount_blocks(env) -> None:
    summary, checks = _run(*env, "header_only.csv")
    assert _status(summary)[ORDERS] == ("materialized", 0)
    assert _conservation(checks) == {"rows_read": 0, "rows_accepted": 0, "rows_rejected": 0}
    passed, metadata = checks["shop/silver/orders:has_rows"]
    assert not passed and metadata["observed_value"] == 0
    assert _status(summary)["shop/silver/orders"][0] == "failed"


@pytest.mark.parametrize(("case", "problems"), [
    ("extra_column.csv", ["orders.csv: column(s) added channel"]),
    ("missing_column.csv", ["orders.csv: column(s) removed amount"]),
    ("renamed_column.csv", ["orders.csv: column(s) renamed customer → client"]),
    ("wrong_delimiter.csv", ["orders.csv: column(s) renamed order_id → order_id;customer;amount",
                             "orders.csv: column(s) removed customer, amount",
                             "orders.csv: the header looks delimited by ';'; set source.delimiter to ';'"]),
    ("retyped_column.csv", ["orders.csv: column amount retyped: 3 of the first 3 values are not "
                            "DECIMAL(10,2)"]),
])
def test_schema_drift_is_named_and_blocks_before_writing(env, case: str, problems: list[str]) -> None:
    summary, checks = _run(*env, case)
    assert not summary.success and _status(summary)[ORDERS][0] == "failed"
    passed, metadata = checks[f"{ORDERS}:schema_drift"]
    assert not passed and metadata["problems"] == problems
    assert PortStorage(root=env[0].settings.storage_url).port(("shop", "bronze", "raw_orders")).snapshot_ids() == []


def test_schema_drift_tolerated_when_mesh_yaml_says_warn(env) -> None:
    mesh, root, instance = env
    (root / "mesh.yaml").write_text((root / "mesh.yaml").read_text() + "schema_drift:\n  bronze: warn\n")
    mesh = load_mesh(root)
    summary, checks = _run(mesh, root, instance, "extra_column.csv")
    assert _status(summary)[ORDERS] == ("materialized", 1)
    passed, metadata = checks[f"{ORDERS}:schema_drift"]
    assert not passed and metadata["problems"] == ["orders.csv: column(s) added channel"]
    summary, checks = _run(mesh, root, instance, "missing_column.csv")
    assert _status(summary)[ORDERS] == ("materialized", 1)
    port = PortStorage(root=mesh.settings.storage_url).port(("shop", "bronze", "raw_orders"))
    assert duckdb.sql(f"SELECT order_id, customer, amount FROM read_parquet('{port.current_snapshot().glob}')"
                      ).fetchall() == [(1, "ann", None)]


def test_non_utf8_record_is_rejected(env) -> None:
    summary, checks = _run(*env, "non_utf8.csv")
    assert _status(summary)[ORDERS] == ("materialized", 2)
    assert _conservation(checks) == {"rows_read": 3, "rows_accepted": 2, "rows_rejected": 1}
    assert [(line, kind) for line, kind, _ in _rejects(env[0])] == [(3, "INVALID ENCODING")]


def test_quoted_newline_is_one_record(env) -> None:
    summary, checks = _run(*env, "quoted_newline.csv")
    assert _status(summary)[ORDERS] == ("materialized", 3)
    assert _conservation(checks) == {"rows_read": 3, "rows_accepted": 3, "rows_rejected": 0}
    passed, metadata = checks["shop/silver/orders:customer_references_raw_customers"]
    assert not passed and metadata["sample"] == [{"customer": "bob\nsmith", "rows": 1}]


def test_duplicate_primary_key_blocks_bronze(env) -> None:
    summary, checks = _run(*env, "duplicate_keys.csv")
    passed, metadata = checks[f"{ORDERS}:primary_key"]
    assert not passed and metadata["failing_rows"] == 1 and metadata["sample"] == [{"order_id": 1, "rows": 2}]
    assert _status(summary)[ORDERS][0] == "failed" and _status(summary)["shop/silver/orders"][0] == "skipped"


def test_null_in_required_column_blocks_bronze(env) -> None:
    summary, checks = _run(*env, "null_required.csv")
    passed, metadata = checks[f"{ORDERS}:customer_required"]
    assert not passed and metadata["failing_rows"] == 1 and metadata["sample"] == [{"order_id": 2, "customer": None}]
    assert _status(summary)[ORDERS][0] == "failed"


def test_out_of_range_value_blocks_silver(env) -> None:
    summary, checks = _run(*env, "out_of_range.csv")
    passed, metadata = checks["shop/silver/orders:amount_minimum"]
    assert not passed and metadata["sample"] == [{"order_id": 2, "amount": "-20.00"}]
    assert _status(summary)["shop/silver/orders"][0] == "failed"


def test_too_many_columns_in_a_record_is_rejected(env) -> None:
    summary, checks = _run(*env, "too_many_columns.csv")
    assert _conservation(checks) == {"rows_read": 2, "rows_accepted": 1, "rows_rejected": 1}
    assert _rejects(env[0]) == [(3, "TOO MANY COLUMNS", "2,bob,20.00,web")]


def test_orphan_foreign_key_blocks_silver(env) -> None:
    summary, checks = _run(*env, "orphan_key.csv")
    passed, metadata = checks["shop/silver/orders:customer_references_raw_customers"]
    assert not passed and metadata["failing_rows"] == 1 and metadata["distinct_orphan_keys"] == 1
    assert _status(summary)["shop/silver/orders"][0] == "failed"


def test_dates_in_a_wrong_format_are_rejected(env) -> None:
    # 2 bad dates of 5: rejects (when most values of a column do not parse, it is schema drift instead)
    summary, checks = _run(*env, "bad_date.csv", target="customers.csv")
    table = "shop/bronze/raw_customers"
    assert _status(summary)[table] == ("materialized", 3)
    assert _conservation(checks, table) == {"rows_read": 5, "rows_accepted": 3, "rows_rejected": 2}
    assert [(line, kind) for line, kind, _ in _rejects(env[0], "raw_customers")] == [(3, "CAST"), (4, "CAST")]
