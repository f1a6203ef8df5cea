"""Partitioned, incremental data products (docs/partitions.md): the contract's partitioning, its Dagster partitions
and Iceberg partition spec, a step that reads, writes, audits and publishes one partition (or a range) only, and
`mesh run --partition` / `--from --to`, on TPC-H orders split by month (tests/fixtures/partitioned_mesh)."""

from __future__ import annotations

import shutil
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from typer.testing import CliRunner

from conftest import FIXTURES, REPO, TEST_SALT, restored
from domains.tpch import months, raw_files
from mesh_assets.cli.main import app
from mesh_assets.catalog import build_catalog
from mesh_assets.catalog.partitions import partition_status
from mesh_assets.consumption.status import as_text, port_status
from mesh_assets.contract.dbt_project import parse_project
from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.contract.model import Sla
from mesh_assets.engine import write_audit_publish
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.staleness import stale_inputs
from mesh_assets.errors import ContractError, MeshError
from mesh_assets.orchestration.definitions import build_mesh_definitions
from mesh_assets.orchestration.freshness import layer_default_slas
from mesh_assets.orchestration.runner import (PARTITION_TAG, RANGE_END_TAG, RANGE_START_TAG,
                                           run_mesh)
from mesh_assets.sql.partition_filter import filter_inputs, window_predicate

MONTHS = ("1992-01", "1992-02", "1992-03", "1992-04")
NEW_MONTH = "1992-05"
PARTITIONED = ("shop/bronze/raw_orders", "shop/silver/orders", "shop/gold/monthly_revenue")
ORDERS_SQL = ("SELECT o_orderkey AS order_id, o_custkey AS customer_id, o_totalprice AS total, "
              "o_orderdate AS order_date FROM read_csv('{csv}', header = true) "
              "WHERE strftime(o_orderdate, '%Y-%m') = '{month}'")


def land_month(root: Path, tpch: Path, month: str, extra_rows: str = "") -> Path:
    """Land TPC-H's orders of ``month`` as ``shop/orders/<month>/orders.csv`` (``extra_rows``: CSV lines added)."""
    folder = root / ".mesh" / "landing" / "shop" / "orders" / month
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "orders.csv"
    con = duckdb.connect()
    landed = ORDERS_SQL.format(csv=tpch / "tpch" / "orders" / month / "*.csv", month=month)
    con.execute(f"COPY ({landed}) TO '{target}' (HEADER)")
    if extra_rows:
        with target.open("a") as handle:
            handle.write(extra_rows)
    return target


def expected_totals(tpch: Path, months: tuple[str, ...]) -> list[tuple]:
    """Revenue and orders per segment of TPC-H's orders in ``months``, computed on the raw files."""
    return duckdb.connect().execute(
        "SELECT c_mktsegment, sum(CAST(o_totalprice AS DECIMAL(15,2))), count(*) "
        f"FROM read_csv('{tpch / raw_files('orders')}', files_to_sniff = -1) o "
        f"JOIN read_csv('{tpch / 'tpch' / 'customer.csv'}') c ON c.c_custkey = o.o_custkey "
        f"WHERE strftime(o_orderdate, '%Y-%m') IN ({', '.join(repr(m) for m in months)}) GROUP BY 1 ORDER BY 1"
    ).fetchall()


def make_root(parent: Path, tpch: Path, months: tuple[str, ...] = MONTHS) -> Path:
    root = parent / "partitioned"
    shutil.copytree(FIXTURES / "partitioned_mesh", root)
    shop = root / ".mesh" / "landing" / "shop"
    shop.mkdir(parents=True)
    duckdb.connect().execute(f"COPY (SELECT c_custkey AS customer_id, c_mktsegment AS segment FROM "
                             f"read_csv('{tpch / 'tpch' / 'customer.csv'}')) TO '{shop / 'customers.csv'}' (HEADER)")
    for month in months:
        land_month(root, tpch, month)
    return root


def files_by_month(root: Path, key: tuple[str, str, str]) -> dict[str, set[str]]:
    """The current Iceberg data files of the port ``key``, by the month in their name (``part-<month>-<n>``)."""
    snapshot = PortStorage(root=str(root / ".mesh" / "lake")).port(key).current_snapshot()
    found: dict[str, set[str]] = {}
    for path in snapshot.files:
        found.setdefault(path.rsplit("/", 1)[-1].removeprefix("part-")[:7], set()).add(path)
    return found


def port_rows(root: Path, key: tuple[str, str, str], sql: str = "SELECT * FROM t ORDER BY ALL") -> list[tuple]:
    snapshot = PortStorage(root=str(root / ".mesh" / "lake")).port(key).current_snapshot()
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM {snapshot.read_sql}")
    return con.execute(sql).fetchall()


@pytest.fixture(scope="module")
def built(tpch_landing: Path, tmp_path_factory: pytest.TempPathFactory):
    """The partitioned mesh, its four months built in ONE range run (1992-01 to 1992-04), then the
    unpartitioned tables: ``(root, instance, summary of the range run)``. A range of tables whose inputs are
    all partitioned is built one month at a time whatever its size (``PARTITION_ROWS_MIN`` 0), as at scale."""
    root = make_root(tmp_path_factory.mktemp("partitions"), tpch_landing)
    with dg.instance_for_test() as instance, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESH_PII_SALT", TEST_SALT)
        for name in ("DAGSTER_HOME", "MESH_STORAGE_ROOT", "MESH_LANDING_ZONE"):
            mp.delenv(name, raising=False)
        with pytest.MonkeyPatch.context() as by_partition:
            by_partition.setattr(write_audit_publish, "PARTITION_ROWS_MIN", 0)
            summary = run_mesh(load_mesh(root), instance, partitions=(MONTHS[0], MONTHS[-1]))
        yield root, instance, summary


# ---- the contract ----

CONTRACT = """\
apiVersion: v3.1.0
kind: DataContract
id: shop-x
name: x
version: 1.0.0
status: active
domain: shop
schema:
  - name: events
    physicalType: table
    description: Events.
    customProperties:
      - {{property: layer, value: bronze}}
      - property: source
        value: {{path: "{path}", format: csv}}
{partitioning}    properties:
      - {{name: id, logicalType: integer, physicalType: BIGINT, primaryKey: true, description: Id.}}
      - {{name: day, logicalType: {logical}, physicalType: {physical}, {partitioned}description: Day.}}
"""


def contract(tmp_path: Path, path: str = "shop/events/{month}/*.csv", partitioning: str | None =
             '{granularity: month, start: "2024-01-01"}', physical: str = "DATE",
             partitioned: str = "partitioned: true, partitionKeyPosition: 1, ") -> Path:
    declared = f"      - property: partitioning\n        value: {partitioning}\n" if partitioning else ""
    logical = {"DATE": "date", "BIGINT": "integer"}.get(physical, "timestamp")
    file = tmp_path / "x.yaml"
    file.write_text(CONTRACT.format(path=path, partitioning=declared, physical=physical, logical=logical,
                                    partitioned=partitioned))
    return file


def test_contract_declares_month_partitions_of_a_date_column(tmp_path: Path) -> None:
    table = load_contract(contract(tmp_path), "shop", "shop-team").tables[0]
    assert table.partitioning is not None
    time = table.partitioning.time
    assert table.partitioning.static is None and (time.column, time.granularity) == ("day", "month")
    assert time.start.isoformat() == "2024-01-01" and time.timezone == "UTC"
    window = table.partitioning.window(["2024-11", "2024-12"])
    assert (window.start.isoformat(), window.end.isoformat(), window.label) == ("2024-11-01", "2025-01-01",
                                                                                 "2024-11...2024-12")
    assert table.source.glob(table.partitioning, "2024-03") == "shop/events/2024-03/*.csv"
    assert table.source.glob(table.partitioning) == "shop/events/*/*.csv"


@pytest.mark.parametrize(("kwargs", "problem"), [
    ({"partitioning": None}, "declare the partitions' granularity and start"),
    ({"partitioned": ""}, "no property is the partition column; mark the DATE or TIMESTAMP column with "
                          "partitioned: true"),
    ({"physical": "BIGINT"}, "partition on a DATE or TIMESTAMP column"),
    ({"physical": "TIMESTAMP WITH TIME ZONE"}, "e.g. CAST(timezone('UTC', day) AS TIMESTAMP)"),
    ({"partitioning": '{granularity: year, start: "2024-01-01"}'}, "granularity 'year' is not supported"),
    ({"partitioning": '{granularity: hour, start: "2024-01-01"}', "path": "shop/events/{hour}/*.csv"},
     "by hour needs a TIMESTAMP partition column; day is DATE"),
    ({"partitioning": '{granularity: hour, start: "2024-01-01", timezone: Europe/Paris}', "physical": "TIMESTAMP",
      "path": "shop/events/{hour}/*.csv"}, "partitioning by hour is in UTC"),
    ({"partitioning": '{granularity: hour, start: "2024-01-01T10:30"}', "physical": "TIMESTAMP",
      "path": "shop/events/{hour}/*.csv"}, "is not the start of an hour in UTC; write it as '2024-01-01T10:00'"),
    ({"partitioning": '{granularity: week, start: "2024-01-01", end: "2024-01-10"}', "path": "shop/events/{week}/*"},
     "not the first day of a week; the weeks start on a Monday"),
    ({"partitioning": '{granularity: week, start: "2024-01-01"}', "path": "shop/events/{week}/{date}.csv"},
     "a week's partition is not named by {date}"),
    ({"partitioning": '{granularity: day, start: "2024-01-01"}', "path": "shop/events/{hour}/*.csv"},
     "names its partition's files with {date}"),
    ({"partitioning": '{granularity: month, start: "2024-01-15"}'}, "not the first day of a month"),
    ({"partitioning": '{granularity: month, start: "2024-03-01", end: "2024-01-01"}'}, "is not after start"),
    ({"partitioning": '{granularity: month, start: "2024-01-01", timezone: Mars/Olympus}'},
     "not an IANA time zone"),
    ({"partitioning": '{granularity: month, start: "2024-01-01", region: eu}'}, "unknown partitioning option"),
    ({"path": "shop/events/*.csv"}, "names its partition's files with {month}"),
    ({"path": "shop/events/{month}/{date}.csv"}, "use {month} only"),
    ({"path": "shop/events/{year}/*.csv"}, "unknown field {year}"),
])
def test_contract_refuses_bad_partitioning_with_the_field_and_the_fix(tmp_path: Path, kwargs, problem) -> None:
    with pytest.raises(ContractError) as caught:
        load_contract(contract(tmp_path, **kwargs), "shop", "shop-team")
    assert problem in str(caught.value) and "x.yaml" in str(caught.value)
    assert "schema[0]" in str(caught.value)


def test_an_unpartitioned_source_path_has_no_partition_field(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="only a partitioned table's path may"):
        load_contract(contract(tmp_path, partitioning=None, partitioned=""), "shop", "shop-team")


def test_partitioned_input_reads_are_rewritten_by_sqlglot_not_pasted() -> None:
    import datetime as dt

    sql = filter_inputs("SELECT o.id FROM silver.orders AS o JOIN bronze.customers c USING (id)",
                        {("silver", "orders"): window_predicate(("order_date", dt.date(1992, 3, 1),
                                                                 dt.date(1992, 4, 1)))})
    assert sql == ('SELECT o.id FROM (SELECT * FROM "silver"."orders" WHERE "order_date" >= '
                   "CAST('1992-03-01' AS DATE) AND \"order_date\" < CAST('1992-04-01' AS DATE)) AS \"o\" "
                   "JOIN bronze.customers AS c USING (id)")


# ---- Dagster and Iceberg ----


def test_partitioned_tables_are_monthly_assets_with_a_single_run_backfill_policy(built) -> None:
    root, _, _ = built
    graph = build_mesh_definitions(load_mesh(root)).resolve_asset_graph()
    for key in PARTITIONED:
        node = graph.get(dg.AssetKey(key.split("/")))
        assert isinstance(node.partitions_def, dg.MonthlyPartitionsDefinition)
        assert node.partitions_def.get_partition_keys() == [*MONTHS, NEW_MONTH, "1992-06"]
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert graph.get(dg.AssetKey(["shop", "gold", "segment_totals"])).partitions_def is None
    assert graph.get(dg.AssetKey(["shop", "bronze", "raw_customers"])).partitions_def is None


def test_the_iceberg_table_is_partitioned_by_month_of_the_partition_column(built) -> None:
    root, _, _ = built
    table = PortStorage(root=str(root / ".mesh" / "lake")).port(("shop", "silver", "orders")).table()
    (spec_field,) = table.spec().fields
    assert (str(spec_field.transform), spec_field.name) == ("month", "order_date_month")
    assert table.schema().find_field(spec_field.source_id).name == "order_date"


def test_a_range_run_builds_every_month_and_the_unpartitioned_consumer_reads_them_all(built, tpch_landing) -> None:
    root, instance, summary = built
    assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
    ran = {a.key for a in summary.assets}
    assert {"shop/gold/segment_totals", "shop/bronze/raw_customers"} <= ran  # reads them; a first build
    assert sorted(files_by_month(root, ("shop", "silver", "orders"))) == list(MONTHS)  # one file per month
    # built one month at a time, one plain file per month: monthly_revenue, which reads partitioned orders only,
    # silver orders, which also reads the unpartitioned customers (held in memory, read once), and the bronze
    # orders, ingested month by month
    for key in (("shop", "gold", "monthly_revenue"), ("shop", "silver", "orders"), ("shop", "bronze", "raw_orders")):
        names = {path.rsplit("/", 1)[-1] for paths in files_by_month(root, key).values() for path in paths}
        assert names == {f"part-{month}-0.parquet" for month in MONTHS}, key
    key = dg.AssetKey(["shop", "silver", "orders"])
    assert instance.get_materialized_partitions(key) == set(MONTHS)
    assert port_rows(root, ("shop", "gold", "segment_totals")) == expected_totals(tpch_landing, MONTHS)
    materialization = instance.get_latest_materialization_event(key).asset_materialization
    assert materialization.metadata["partition"].value == "1992-01...1992-04"  # one step over the range
    events = [r.event_log_entry.asset_materialization for r in instance.get_records_for_run(
        summary.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records]
    events = {e.partition: e.metadata for e in events if e.asset_key == key}
    assert set(events) == set(MONTHS) and all("dagster/row_count" in m for m in events.values())
    assert [m for m, metadata in events.items() if "sql" in metadata and "profile" in metadata] == [MONTHS[-1]]
    records = instance.get_records_for_run(summary.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    scopes = {(e.event_log_entry.dagster_event.event_specific_data.check_name,
               e.event_log_entry.dagster_event.event_specific_data.metadata["partition"].value,
               e.event_log_entry.dagster_event.event_specific_data.metadata["scope"].value)
              for e in records if e.event_log_entry.dagster_event.event_specific_data.asset_key == key}
    assert {("primary_key", "1992-01...1992-04", "table"), ("segment_required", "1992-01...1992-04", "partition"),
            ("partition_window", "1992-01...1992-04", "partition")} <= scopes


def test_a_range_run_equals_the_sum_of_single_month_runs(built, tpch_landing, tmp_path: Path) -> None:
    ranged, _, _ = built
    single = make_root(tmp_path, tpch_landing)
    with dg.instance_for_test() as instance:
        mesh = load_mesh(single)
        for month in MONTHS:
            assert run_mesh(mesh, instance, partitions=(month, month)).success
    for key in (("shop", "silver", "orders"), ("shop", "gold", "monthly_revenue"), ("shop", "gold", "segment_totals")):
        assert port_rows(single, key) == port_rows(ranged, key), key
    assert len(port_rows(single, ("shop", "silver", "orders"))) == sum(
        n for _, _, n in expected_totals(tpch_landing, MONTHS))


def test_a_small_range_is_written_in_one_partitioned_write(tmp_path: Path, tpch_landing) -> None:
    """Below ``PARTITION_ROWS_MIN`` input rows per month, monthly_revenue's range is one ``PARTITION_BY`` write:
    its files are numbered across the range, not ``-0`` each as when built one month at a time."""
    root = make_root(tmp_path, tpch_landing, months=MONTHS[:2])
    with dg.instance_for_test() as instance:
        assert run_mesh(load_mesh(root), instance, partitions=(MONTHS[0], MONTHS[1])).success
    names = sorted(path.rsplit("/", 1)[-1] for paths in files_by_month(root, ("shop", "gold", "monthly_revenue"))
                   .values() for path in paths)
    assert names == [f"part-{MONTHS[0]}-0.parquet", f"part-{MONTHS[1]}-1.parquet"]


def test_a_range_with_no_rows_publishes_empty_partitions(tmp_path: Path, tpch_landing,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(write_audit_publish, "PARTITION_ROWS_MIN", 0)
    root = make_root(tmp_path, tpch_landing, months=())
    for month in ("1992-02", "1992-03"):  # landed, but a header line only
        folder = root / ".mesh" / "landing" / "shop" / "orders" / month
        folder.mkdir(parents=True)
        (folder / "orders.csv").write_text("order_id,customer_id,total,order_date\n")
    with dg.instance_for_test() as instance:
        summary = run_mesh(load_mesh(root), instance, partitions=("1992-02", "1992-03"))
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        assert instance.get_materialized_partitions(dg.AssetKey(["shop", "gold", "monthly_revenue"])) == {
            "1992-02", "1992-03"}
    assert port_rows(root, ("shop", "gold", "monthly_revenue")) == []  # built by partition: no row, no month's file
    assert len(PortStorage(root=str(root / ".mesh" / "lake")).port(("shop", "gold", "monthly_revenue")
                                                                   ).current_snapshot().files) == 1


def test_a_new_month_materializes_only_that_month(built, tpch_landing) -> None:
    root, _, _ = built
    with restored(root), dg.instance_for_test() as instance:
        before = {k: files_by_month(root, tuple(k.split("/"))) for k in PARTITIONED}
        land_month(root, tpch_landing, NEW_MONTH)
        summary = run_mesh(load_mesh(root), instance, partitions=(NEW_MONTH, NEW_MONTH))
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        assert {a.key for a in summary.assets} == {*PARTITIONED, "shop/bronze/raw_orders__rejects",
                                                   "shop/gold/segment_totals"}  # not the customers
        for key in PARTITIONED:
            after = files_by_month(root, tuple(key.split("/")))
            assert {m: after[m] for m in MONTHS} == before[key], key  # the same Iceberg data files
            assert NEW_MONTH in after
            assert instance.get_materialized_partitions(dg.AssetKey(key.split("/"))) == {NEW_MONTH}
        assert port_rows(root, ("shop", "gold", "segment_totals")) == expected_totals(tpch_landing,
                                                                                      (*MONTHS, NEW_MONTH))
        result = dg.DagsterInstance.get_latest_materialization_event(instance, dg.AssetKey(
            ["shop", "silver", "orders"]))
        metadata = result.asset_materialization.metadata
        assert metadata["partition"].value == NEW_MONTH
        assert metadata["dagster/row_count"].value == sum(n for _, _, n in expected_totals(tpch_landing,
                                                                                              (NEW_MONTH,)))


def test_relanding_a_past_month_rematerializes_it_only(built, tpch_landing) -> None:
    root, _, _ = built
    with restored(root), dg.instance_for_test() as instance:
        before = files_by_month(root, ("shop", "silver", "orders"))
        target = land_month(root, tpch_landing, "1992-02")
        lines = target.read_text().splitlines()
        target.write_text("\n".join(lines[:-10]) + "\n")  # ten orders of February withdrawn
        assert run_mesh(load_mesh(root), instance, partitions=("1992-02", "1992-02")).success
        after = files_by_month(root, ("shop", "silver", "orders"))
        assert after["1992-02"].isdisjoint(before["1992-02"])
        assert {m: after[m] for m in MONTHS if m != "1992-02"} == {m: before[m] for m in MONTHS if m != "1992-02"}
        february = port_rows(root, ("shop", "silver", "orders"),
                             "SELECT count(*) FROM t WHERE strftime(order_date, '%Y-%m') = '1992-02'")[0][0]
        assert february == len(lines) - 1 - 10
        totals = port_rows(root, ("shop", "gold", "segment_totals"), "SELECT sum(orders) FROM t")[0][0]
        assert totals == sum(n for _, _, n in expected_totals(tpch_landing, MONTHS)) - 10


def test_a_key_of_a_new_month_colliding_with_an_old_month_fails_the_primary_key_and_publishes_nothing(
        built, tpch_landing) -> None:
    root, _, _ = built
    with restored(root), dg.instance_for_test() as instance:
        port = PortStorage(root=str(root / ".mesh" / "lake")).port(("shop", "bronze", "raw_orders"))
        january = port_rows(root, ("shop", "bronze", "raw_orders"),
                            "SELECT order_id, customer_id FROM t WHERE order_date < DATE '1992-02-01' LIMIT 1")[0]
        before = port.current()["iceberg_snapshot_id"]
        land_month(root, tpch_landing, NEW_MONTH, extra_rows=f"{january[0]},{january[1]},1.00,1992-05-20\n")
        summary = run_mesh(load_mesh(root), instance, partitions=(NEW_MONTH, NEW_MONTH))
        assert not summary.success
        bronze = next(a for a in summary.assets if a.key == "shop/bronze/raw_orders")
        assert bronze.status == "failed" and any(b.startswith("primary_key") for b in bronze.blocking)
        assert port.current()["iceberg_snapshot_id"] == before  # a failed audit leaves the table untouched


def test_rows_outside_their_partition_fail_the_partition_window_check(built, tpch_landing) -> None:
    root, _, _ = built
    with restored(root), dg.instance_for_test() as instance:
        land_month(root, tpch_landing, NEW_MONTH, extra_rows="999999901,1,1.00,1992-06-02\n")
        summary = run_mesh(load_mesh(root), instance, partitions=(NEW_MONTH, NEW_MONTH))
        bronze = next(a for a in summary.assets if a.key == "shop/bronze/raw_orders")
        assert bronze.status == "failed" and bronze.blocking == ["partition_window (1 row)"]


def test_a_row_landed_in_another_month_of_the_range_fails_the_partition_window_check(tmp_path: Path,
                                                                                      tpch_landing) -> None:
    """A range is ingested month by month: a record of 1992-02 in 1992-01's folder is refused as in a run of
    1992-01 alone, not moved to 1992-02."""
    root = make_root(tmp_path, tpch_landing, months=MONTHS[:2])
    land_month(root, tpch_landing, MONTHS[0], extra_rows=f"999999901,1,1.00,{MONTHS[1]}-02\n")
    with dg.instance_for_test() as instance:
        summary = run_mesh(load_mesh(root), instance, partitions=(MONTHS[0], MONTHS[1]))
    bronze = next(a for a in summary.assets if a.key == "shop/bronze/raw_orders")
    assert bronze.status == "failed" and bronze.blocking == ["partition_window (1 row)"]


def test_run_partition_options_are_checked(built) -> None:
    root, _, _ = built
    result = CliRunner().invoke(app, ["run", "--root", str(root), "--from", "1992-01"])
    assert result.exit_code == 2 and "give --partition P, or both --from A and --to B" in result.output
    with dg.instance_for_test() as instance, pytest.raises(MeshError, match="no selected asset has the partition"):
        run_mesh(load_mesh(root), instance, partitions=("1993-01", "1993-01"))
    with dg.instance_for_test() as instance, pytest.raises(MeshError, match="comes after"):
        run_mesh(load_mesh(root), instance, partitions=("1992-03", "1992-01"))


def test_a_partitioned_table_on_spark_is_refused_at_load(tmp_path: Path, tpch_landing) -> None:
    root = make_root(tmp_path, tpch_landing, ())
    contract_file = root / "domains" / "shop" / "products" / "orders.yaml"
    contract_file.write_text(contract_file.read_text().replace(
        "      - {property: layer, value: silver}\n",
        "      - {property: layer, value: silver}\n      - {property: engine, value: spark}\n"))
    with pytest.raises(MeshError) as caught:
        build_mesh_definitions(load_mesh(root))
    assert "orders.yaml: table orders is partitioned (column order_date)" in str(caught.value)
    assert "remove its engine: spark" in str(caught.value)


PYTHON_ORDERS = """\
def transform(inputs, con):
    orders = inputs["bronze.raw_orders"]
    days = orders.aggregate("count(DISTINCT order_date)").fetchall()[0][0]
    if days > 1:  # the step's window is one day: a month's file of the input must reach it filtered
        raise ValueError(f"read {days} days of orders")
    customers = inputs["bronze.raw_customers"]
    return orders.join(customers, "customer_id").select("order_id, segment, total, order_date")
"""


def test_a_python_transform_builds_a_day_from_its_monthly_input_s_rows_of_that_day(tmp_path: Path,
                                                                                      tpch_landing) -> None:
    """Silver orders by day, built by a Python transform from the bronze orders partitioned by month: the
    transform's frame of the input holds the step's day only, though the day's rows lie in a month's file."""
    root = make_root(tmp_path, tpch_landing, MONTHS[:1])
    contract_file = root / "domains" / "shop" / "products" / "orders.yaml"
    text = contract_file.read_text().replace("      - {property: layer, value: silver}\n", textwrap.indent(
        "- {property: layer, value: silver}\n- {property: transform, value: python/silver/orders.py}\n"
        "- {property: inputs, value: [bronze.raw_orders, bronze.raw_customers]}\n", "      "))
    silver = text.index("  - name: orders\n")
    text = text[:silver] + text[silver:].replace("{granularity: month,", "{granularity: day,", 1)
    contract_file.write_text(text)
    (root / "domains" / "shop" / "sql" / "silver" / "orders.sql").unlink()
    (root / "domains" / "shop" / "python" / "silver").mkdir(parents=True)
    (root / "domains" / "shop" / "python" / "silver" / "orders.py").write_text(PYTHON_ORDERS)
    with dg.instance_for_test() as instance:
        mesh = load_mesh(root)
        assert run_mesh(mesh, instance, selection='key:"shop/bronze/*"', partitions=(MONTHS[0], MONTHS[0])).success
        assert run_mesh(mesh, instance, selection='key:"shop/bronze/raw_customers"').success
        summary = run_mesh(mesh, instance, selection='key:"shop/silver/orders"', partitions=("1992-01-15",) * 2)
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
    orders = tpch_landing / raw_files("orders")
    expected = duckdb.connect().execute(
        f"SELECT count(*), sum(CAST(o_totalprice AS DECIMAL(15,2))) FROM read_csv('{orders}', files_to_sniff = -1) "
        "WHERE o_orderdate = DATE '1992-01-15'").fetchall()
    assert port_rows(root, ("shop", "silver", "orders"), "SELECT count(*), sum(total) FROM t") == expected
    assert expected[0][0] > 0


def test_the_landing_zone_sensor_starts_the_runs_of_the_landed_partitions_only(tmp_path: Path, tpch_landing) -> None:
    from mesh_assets.orchestration.definitions import build_domain_definitions

    root = make_root(tmp_path, tpch_landing, ("1992-01",))
    with (root / "mesh.yaml").open("a") as handle:
        handle.write("automation: {landing_settle_seconds: 0}\n")
    defs = build_domain_definitions(root / "domains" / "shop")
    sensor = defs.resolve_sensor_def("shop_landing_zone")
    with dg.instance_for_test() as instance:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        assert {(r.partition_key, frozenset(k.to_user_string() for k in r.asset_selection))
                for r in first.run_requests} == {
            (None, frozenset({"shop/bronze/raw_customers", "shop/bronze/raw_customers__rejects"})),
            # the landed months of silver and gold too (eager automation would request only the latest month);
            # the unpartitioned segment_totals is left to automation, once the run is done
            ("1992-01", frozenset({"shop/bronze/raw_orders", "shop/bronze/raw_orders__rejects", *PARTITIONED[1:]}))}
        land_month(root, tpch_landing, "1992-03")
        second = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor, definitions=defs))
        assert [(r.partition_key, r.tags["mesh/landing_files"]) for r in second.run_requests] == [
            ("1992-03", "shop/orders/1992-03/orders.csv")]
        for month in ("1992-02", "1992-04", "1992-05", "1992-06", "1992-07"):  # 1992-07: after the declared end
            land_month(root, tpch_landing, month)
        third = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=second.cursor, definitions=defs))
        assert [(r.partition_key, r.tags.get("dagster/asset_partition_range_start"),
                 r.tags.get("dagster/asset_partition_range_end"), r.tags["mesh/landing_files"])
                for r in third.run_requests] == [  # 1992-02 alone, 1992-04 to 1992-06 as one run over the range
            ("1992-02", None, None, "shop/orders/1992-02/orders.csv"),
            (None, "1992-04", "1992-06", "shop/orders/1992-04/orders.csv, shop/orders/1992-05/orders.csv, "
                                         "shop/orders/1992-06/orders.csv")]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MESH_PII_SALT", TEST_SALT)
            for name in ("DAGSTER_HOME", "MESH_STORAGE_ROOT", "MESH_LANDING_ZONE"):
                mp.delenv(name, raising=False)
            for request in (first.run_requests[0], third.run_requests[1]):  # the customers, then the range
                done = defs.resolve_job_def("shop_ingestion").execute_in_process(
                    instance=instance, asset_selection=list(request.asset_selection), tags=request.tags)
                assert done.success
    for key in PARTITIONED:  # the range's months of silver and gold, built by the sensor's run
        assert set(files_by_month(root, tuple(key.split("/")))) == {"1992-04", "1992-05", "1992-06"}, key


def test_the_sales_landing_runs_build_the_silver_months_and_leave_those_reading_other_domains_to_automation() -> None:
    """order_lines_wide reads customers' and supply's ports, which their own code locations may be rebuilding from
    the same landing: automation runs its months once they are published (docs/partitions.md)."""
    from mesh_assets.orchestration.definitions import build_domain_definitions
    from mesh_assets.orchestration.sensors import partitioned_followers

    graph = build_domain_definitions(REPO / "domains" / "sales").resolve_asset_graph()
    assert {k.to_user_string(): [f.to_user_string() for f in keys]
            for k, keys in partitioned_followers(graph, "sales").items() if not k.path[-1].endswith("__rejects")} == {
        "sales/bronze/orders": ["sales/bronze/orders__rejects", "sales/silver/order_headers",
                                "sales/silver/order_lines"],
        "sales/bronze/lineitem": ["sales/bronze/lineitem__rejects", "sales/silver/order_lines"]}


def test_a_partition_publication_replaces_only_its_files_and_an_empty_partition_empties_it(tmp_path: Path) -> None:
    import datetime as dt

    from mesh_assets.contract.model import Partitioning, TimePartitions
    from mesh_assets.engine.duckdb_engine import DuckDBEngine, DuckDBStep
    from mesh_assets.engine.ports import Port

    port, con = Port(str(tmp_path), ("shop", "gold", "daily")), duckdb.connect()
    step = DuckDBStep(DuckDBEngine(), con)
    by_month = Partitioning(TimePartitions("day", "month", dt.date(2024, 1, 1)))
    rows = "SELECT DATE '2024-01-05' + CAST(i AS INTEGER) AS day, i AS v FROM range(40) AS t(i)"  # Jan 5 – Feb 13
    first = port.new_snapshot("run1")
    assert step.write(rows, first, by_month) == 40
    assert [f.rsplit("/", 1)[-1] for f in port.staged_files(first.id)] == ["part-2024-01-0.parquet",
                                                                            "part-2024-02-1.parquet"]
    assert port.publish(first.id, {"rows": 40}, partitioning=by_month,
                        window=by_month.window(["2024-01", "2024-02"]))["rows"] == 40
    january = [f for f in port.current_snapshot().files if "part-2024-01" in f]
    columns, months = by_month.columns, [by_month.window([m]) for m in ("2024-01", "2024-02", "2024-03")]
    reads = port.partition_snapshots(columns, months)  # one manifest read for the three months
    february = tuple(f.replace("01-0", "02-1") for f in january)
    assert [rows for _, rows in reads] == [27, 13, 0]  # March: no file holds it (a reader gets one for the shape)
    assert [s.files for s, _ in reads[:2]] == [tuple(january), february] and len(reads[2][0].files) == 1
    assert [s for s, _ in reads] == [port.current_snapshot(within=(columns, m)) for m in months]
    second = port.new_snapshot("run2")
    assert step.write(f"SELECT * FROM ({rows}) WHERE false", second, by_month) == 0
    info = port.publish(second.id, {"rows": 0}, partitioning=by_month, window=by_month.window(["2024-02"]))
    assert info["rows"] == 27  # January's 27 days stay, February is empty
    assert [f for f in port.current_snapshot().files if "part-2024-01" in f] == january  # the very same file
    assert con.execute(f"SELECT count(*), max(day) FROM {port.current_snapshot().read_sql}").fetchall() == [
        (27, dt.date(2024, 1, 31))]
    summary = port.table().current_snapshot().summary
    assert (summary["mesh.partition"], summary["mesh.partition-rows"], summary["mesh.rows"]) == ("2024-02", "0", "27")


def test_status_counts_partitions_and_judges_the_port_by_its_latest(built, tmp_path: Path) -> None:
    """The range run built four of the six declared months: the two after them are missing, and the port is as
    fresh as its latest month — missing is FAIL, whatever the four months' materializations say."""
    root, instance, _ = built
    mesh = load_mesh(root)
    table = mesh.output_port("shop", "monthly_revenue")
    assert not table.slas and not layer_default_slas(mesh.settings, table.layer)  # the test mesh promises none
    slas = [Sla("latency", 86400)]  # a day, as the reference mesh's ports
    now = datetime.now(UTC)
    status = partition_status(instance, table, now)
    assert status is not None and status.expected == (*MONTHS, "1992-05", "1992-06")
    assert (status.materialized, status.missing, status.failed) == (MONTHS, ("1992-05", "1992-06"), ())
    assert (status.latest, status.latest_state, status.latest_at) == ("1992-06", "missing", None)
    assert status.freshness(slas, now) == "FAIL"
    assert status.describe() == "4/6 materialized; missing 1992-05, 1992-06; latest 1992-06 missing"
    in_may = datetime(1992, 5, 15, tzinfo=UTC)  # April is then the last complete month, and it was built
    april = partition_status(instance, table, in_may)
    assert april is not None and (april.latest, april.latest_state, april.missing) == ("1992-04", "materialized", ())
    assert april.latest_at is not None and april.freshness(slas, in_may) == "PASS"
    assert partition_status(instance, mesh.output_port("shop", "segment_totals")) is None  # unpartitioned
    [row] = [r for r in port_status(mesh, instance) if r["port"] == "shop.monthly_revenue"]
    assert row["partitions"]["materialized"] == 4 and row["partitions"]["missing"] == ["1992-05", "1992-06"]
    assert as_text(row)["partitions"] == status.describe()
    build_catalog(mesh, tmp_path / "site", instance)
    pages = " ".join(page.read_text() for page in (tmp_path / "site").rglob("*.html"))
    assert "4/6 materialized; missing 1992-05, 1992-06; latest 1992-06 missing" in pages


# ---- a plain run, a dimension that changes, the reference mesh ----

def test_a_plain_run_builds_every_landed_month_one_range_run_per_contiguous_range(tmp_path: Path, tpch_landing) -> None:
    landed = ("1992-01", "1992-02", "1992-04")  # March missing: two ranges
    root = make_root(tmp_path, tpch_landing, landed)
    with dg.instance_for_test() as instance:
        summary = run_mesh(load_mesh(root), instance)
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        assert sorted(files_by_month(root, ("shop", "silver", "orders"))) == list(landed)
        assert instance.get_materialized_partitions(dg.AssetKey(["shop", "gold", "monthly_revenue"])) == set(landed)
        ranges = sorted((r.tags.get(RANGE_START_TAG, ""), r.tags.get(RANGE_END_TAG, ""), r.tags.get(PARTITION_TAG, ""))
                        for r in instance.get_runs())
        assert ranges == [("", "", "1992-04"), ("1992-01", "1992-02", "")]
        assert port_rows(root, ("shop", "gold", "segment_totals")) == expected_totals(tpch_landing, landed)


def _change_customers(root: Path, instance: dg.DagsterInstance) -> None:
    """Land the customers again with one segment renamed, and build them alone (a new dimension version)."""
    customers = root / ".mesh" / "landing" / "shop" / "customers.csv"
    customers.write_text(customers.read_text().replace("BUILDING", "CONSTRUCTION"))
    assert run_mesh(load_mesh(root), instance, selection='key:"shop/bronze/raw_customers"').success


def test_a_changed_dimension_is_recorded_and_a_partition_run_rebuilds_every_stale_partition(built) -> None:
    root, _, _ = built
    silver = dg.AssetKey(["shop", "silver", "orders"])
    with restored(root), dg.instance_for_test() as instance:
        mesh, storage = load_mesh(root), PortStorage(root=str(root / ".mesh" / "lake"))
        table = mesh.domain("shop").table("silver", "orders")
        built_from = storage.port(("shop", "bronze", "raw_customers")).current()["snapshot"]
        assert storage.port(table.key).partition_inputs() == {m: {"bronze.raw_customers": built_from}
                                                               for m in MONTHS}
        assert stale_inputs(mesh, table, storage) == []
        _change_customers(root, instance)
        (stale,) = stale_inputs(mesh, table, storage)
        assert (stale.input, stale.policy, stale.built_against, stale.partitions) == (
            "bronze.raw_customers", "rebuild", (built_from,), MONTHS)
        assert run_mesh(mesh, instance, partitions=(MONTHS[0], MONTHS[0])).success  # widened: every month
        assert instance.get_materialized_partitions(silver) == set(MONTHS)
        assert stale_inputs(mesh, table, storage) == []
        segments = port_rows(root, ("shop", "silver", "orders"), "SELECT DISTINCT segment FROM t ORDER BY 1")
        assert ("CONSTRUCTION",) in segments and ("BUILDING",) not in segments


def test_a_dimension_kept_leaves_the_partitions_as_built_and_says_so(built) -> None:
    root, _, _ = built
    contract = root / "domains" / "shop" / "products" / "orders.yaml"
    with restored(root), dg.instance_for_test() as instance:
        contract.write_text(contract.read_text().replace(
            '      - {property: layer, value: silver}\n',
            '      - {property: layer, value: silver}\n'
            '      - {property: onInputChange, value: {bronze.raw_customers: keep}}\n'))
        mesh, storage = load_mesh(root), PortStorage(root=str(root / ".mesh" / "lake"))
        _change_customers(root, instance)
        assert run_mesh(mesh, instance, partitions=(MONTHS[0], MONTHS[0])).success  # January only
        assert instance.get_materialized_partitions(dg.AssetKey(["shop", "silver", "orders"])) == {MONTHS[0]}
        (stale,) = stale_inputs(mesh, mesh.domain("shop").table("silver", "orders"), storage)
        assert (stale.policy, stale.partitions) == ("keep", MONTHS[1:])
        assert stale.describe() == ("bronze.raw_customers changed: 3 partition(s) (1992-02…1992-04) built before, "
                                    "keep")


@pytest.mark.parametrize(("where", "value", "problem"), [
    ("silver", "{customers: keep}", "is not an input's <schema>.<table> name"),
    ("silver", "{bronze.raw_customers: later}", "'later' is not a policy; use rebuild or keep"),
    ("gold_totals", "{silver.orders: keep}", "this table is not partitioned: remove it"),
])
def test_contract_refuses_a_bad_input_policy(tmp_path: Path, tpch_landing, where, value, problem) -> None:
    root = make_root(tmp_path, tpch_landing, ())
    contract = root / "domains" / "shop" / "products" / "orders.yaml"
    text = contract.read_text()
    anchor = ("      - {property: layer, value: silver}\n" if where == "silver" else
              "    description: Revenue per segment over every month (unpartitioned, reads every partition).\n"
              "    customProperties:\n      - {property: layer, value: gold}\n")
    contract.write_text(text.replace(anchor, f"{anchor}      - {{property: onInputChange, value: {value}}}\n"))
    with pytest.raises(ContractError, match="onInputChange") as caught:
        load_contract(contract, "shop", "shop-team")
    assert problem in str(caught.value)


def test_an_input_policy_naming_no_unpartitioned_input_is_refused_at_load(tmp_path: Path, tpch_landing) -> None:
    root = make_root(tmp_path, tpch_landing, ())
    contract = root / "domains" / "shop" / "products" / "orders.yaml"
    contract.write_text(contract.read_text().replace(
        "      - {property: layer, value: silver}\n",
        "      - {property: layer, value: silver}\n"
        "      - {property: onInputChange, value: {bronze.raw_orders: keep}}\n"))
    with pytest.raises(MeshError, match="onInputChange names bronze.raw_orders, which is not an unpartitioned input"):
        build_mesh_definitions(load_mesh(root))


@pytest.mark.slow  # the reference mesh on TPC-H
def test_the_reference_sales_port_and_its_masked_copy_hold_the_same_months(reference_run) -> None:
    port = PortStorage(root=str(reference_run.lake)).port(("sales", "gold", "order_lines_wide"))
    clear, masked = port.current_snapshot(), port.current_masked(["c_name"])
    landed = months(reference_run.landing)
    assert len(clear.files) == len(masked.files) == len(landed)  # one file per month in each
    con = duckdb.connect()
    count = "SELECT strftime(o_orderdate, '%Y-%m') AS m, count(*), count(DISTINCT c_name) FROM {} GROUP BY 1 ORDER BY 1"
    assert con.execute(count.format(clear.read_sql)).fetchall() == con.execute(count.format(masked.read_sql)).fetchall()
    assert [r[0] for r in con.execute(count.format(clear.read_sql)).fetchall()] == landed
    assert con.execute(f"SELECT count(*) FROM {clear.read_sql} c JOIN {masked.read_sql} m USING (l_orderkey, "
                       "l_linenumber) WHERE c.c_name = m.c_name").fetchall() == [(0,)]  # every name masked


@pytest.mark.slow  # the reference mesh on TPC-H
def test_mesh_status_shows_the_sales_months_built_against_an_older_customer_profile(reference_run) -> None:
    from mesh_assets.consumption.status import as_text, port_status

    with restored(reference_run.lake) as lake, dg.instance_for_test() as instance, \
            pytest.MonkeyPatch.context() as mp:
        for name, value in reference_run.env(lake).items():
            mp.setenv(name, value)
        mesh = load_mesh(REPO)
        assert next(r for r in port_status(mesh, None) if r["port"] == "sales.order_lines_wide")[
            "stale_partitions"] == []
        assert run_mesh(mesh, instance, ["customers"]).success  # a new version of customer_profile
        row = next(r for r in port_status(mesh, None) if r["port"] == "sales.order_lines_wide")
        (stale,) = row["stale_partitions"]
        assert (stale["input"], stale["policy"]) == ("customers.customer_profile", "rebuild")
        assert stale["partitions"] == months(reference_run.landing)
        assert as_text(row)["stale_partitions"].startswith(
            f"customers.customer_profile changed: {len(stale['partitions'])} partition(s) (1992-01…1998-08)")
        mp.setenv("DAGSTER_HOME", str(lake / "no-instance"))  # not evaluated: only the ports are read
        result = CliRunner().invoke(app, ["status", "--root", str(REPO)])
        assert result.exit_code == 1 and "sales.order_lines_wide" in result.output.split("need attention")[1]


def test_automation_runs_every_partition_whose_input_updated_not_only_the_latest(tmp_path: Path, tpch_landing) -> None:
    """``AutomationCondition.eager()`` alone would request only the latest month (1992-06, whose orders never
    landed): a new version of a dimension (raw_customers, onInputChange rebuild) requests every month built on it."""
    root = make_root(tmp_path, tpch_landing)
    orders, revenue = (dg.AssetKey(k.split("/")) for k in PARTITIONED[1:])
    with dg.instance_for_test() as instance, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESH_PII_SALT", TEST_SALT)
        for name in ("DAGSTER_HOME", "MESH_STORAGE_ROOT", "MESH_LANDING_ZONE"):
            mp.delenv(name, raising=False)
        mesh = load_mesh(root)
        defs = build_mesh_definitions(mesh)
        assert run_mesh(mesh, instance, partitions=(MONTHS[0], MONTHS[-1])).success
        cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
        assert run_mesh(mesh, instance, selection='key:"shop/bronze/raw_customers"').success  # the dimension changes
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert result.get_requested_partitions(orders) == set(MONTHS)
    assert result.get_requested_partitions(revenue) == set(MONTHS)  # with them: one backfill, one range run


def test_a_cached_input_is_read_from_memory_until_it_is_registered_again(tmp_path: Path) -> None:
    """What a range built one partition at a time does with a dimension (DuckDBStep.cache)."""
    from mesh_assets.engine.duckdb_engine import DuckDBEngine, DuckDBStep
    from mesh_assets.engine.ports import Snapshot

    con = duckdb.connect()
    step = DuckDBStep(DuckDBEngine(), con)
    for name, rows in (("a", 3), ("b", 5)):
        con.execute(f"COPY (SELECT range AS id FROM range({rows})) TO '{tmp_path / name}.parquet'")
    step.register("customers", "profile", Snapshot("a", str(tmp_path), (str(tmp_path / "a.parquet"),)))
    step.cache("customers", "profile")
    (tmp_path / "a.parquet").unlink()  # the cache holds its rows
    assert con.execute("SELECT count(*) FROM customers.profile").fetchall() == [(3,)]
    step.register("customers", "profile", Snapshot("b", str(tmp_path), (str(tmp_path / "b.parquet"),)))
    assert con.execute("SELECT count(*) FROM customers.profile").fetchall() == [(5,)]
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchall() == [(0,)]  # dropped


def test_one_partition_is_written_in_its_fact_table_order_not_a_dimension_order(tmp_path: Path) -> None:
    """A partition of a fact table is smaller than the dimension it joins: DuckDB would build its hash table on the
    partition and write the rows in the dimension's order (which compresses far worse); the partition's write
    keeps the join's sides as written, and the setting is restored after it."""
    from mesh_assets.engine.duckdb_engine import DuckDBEngine, DuckDBStep
    from mesh_assets.engine.ports import Port

    con = duckdb.connect()
    step = DuckDBStep(DuckDBEngine(), con)
    con.execute("CREATE TABLE dimension AS SELECT 5000 - range AS k, 'name ' || range AS name FROM range(5000)")
    con.execute("CREATE TABLE fact AS SELECT range AS id, range * 3 % 5000 AS k FROM range(1000)")
    port = Port(str(tmp_path), ("shop", "gold", "wide"))
    staged = port.new_snapshot("run1")
    assert step.write("SELECT f.id, d.name FROM fact f LEFT JOIN dimension d ON d.k = f.k", staged, key="2024-01") \
        == 1000
    ids = [r[0] for r in con.execute(f"SELECT id FROM {staged.read_sql}").fetchall()]
    assert ids == list(range(1000))
    assert con.execute("SELECT current_setting('disabled_optimizers')").fetchall() == [("",)]


def test_a_row_moved_to_another_month_of_the_range_fails_partition_window(tmp_path: Path, tpch_landing,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Built one month at a time, a transform that moves a row to another month of the range would file it under
    its input's month: partition_window counts it and nothing is published."""
    monkeypatch.setattr(write_audit_publish, "PARTITION_ROWS_MIN", 0)
    root = make_root(tmp_path, tpch_landing, months=MONTHS[:2])
    sql = root / "domains" / "shop" / "sql" / "gold" / "monthly_revenue.sql"
    sql.write_text(sql.read_text().replace("date_trunc('month', order_date)",
                                           "date_trunc('month', order_date + INTERVAL 1 MONTH)"), encoding="utf-8")
    with dg.instance_for_test() as instance:
        summary = run_mesh(load_mesh(root), instance, partitions=(MONTHS[0], MONTHS[1]))
        revenue = next(a for a in summary.assets if a.key == "shop/gold/monthly_revenue")
        assert [b.split(" (")[0] for b in revenue.blocking] == ["partition_window"], revenue
        evaluation = next(
            e.event_log_entry.dagster_event.event_specific_data for e in instance.get_records_for_run(
                summary.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
            if e.event_log_entry.dagster_event.event_specific_data.check_name == "partition_window"
            and e.event_log_entry.dagster_event.event_specific_data.asset_key.path[-1] == "monthly_revenue")
        assert not evaluation.passed and evaluation.metadata["misfiled_rows"].value > 0  # first month's, in 1992-02


METRICS = """\
      - property: metrics
        value:
          - {name: revenue, description: Revenue., expression: sum(revenue), dimensions: [segment], time: month,
             grain: GRAIN}
"""


@pytest.mark.parametrize("grain", ["month", "quarter"])
def test_metrics_of_a_monthly_table_are_built_by_month_when_their_periods_nest_in_its_months(
        tmp_path: Path, tpch_landing, grain: str) -> None:
    """monthly_revenue's metrics by month are partitioned like it: a new month computes that month's metric rows
    only, the other months' files kept. By quarter, a month's rows change its quarter: recomputed whole."""
    root = make_root(tmp_path, tpch_landing, MONTHS[:2])
    contract_file = root / "domains" / "shop" / "products" / "orders.yaml"
    text = contract_file.read_text()
    gold = text.index("  - name: monthly_revenue")
    anchor = text.index("      - property: partitioning\n", gold)
    contract_file.write_text(text[:anchor] + METRICS.replace("GRAIN", grain) + text[anchor:])
    key = ("shop", "gold", "monthly_revenue__metrics")
    with dg.instance_for_test() as instance:
        mesh = load_mesh(root)
        definition = build_mesh_definitions(mesh).resolve_asset_graph().get(dg.AssetKey(list(key))).partitions_def
        assert run_mesh(mesh, instance).success
        before = files_by_month(root, key)
        land_month(root, tpch_landing, MONTHS[2])
        summary = run_mesh(mesh, instance, partitions=(MONTHS[2], MONTHS[2]))
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        built = instance.get_materialized_partitions(dg.AssetKey(list(key)))
    metrics = port_rows(root, key, "SELECT period, json_extract_string(dimensions, '$.segment'), "
                                   "CAST(value AS DECIMAL(38,2)) FROM t ORDER BY 2, 1")
    if grain == "month":
        assert isinstance(definition, dg.MonthlyPartitionsDefinition) and built == set(MONTHS[:3])
        after = files_by_month(root, key)
        assert {m: after[m] for m in MONTHS[:2]} == before and MONTHS[2] in after  # two months' files kept
        expected = [(datetime.strptime(m, "%Y-%m").date(), s, r) for m in MONTHS[:3]
                    for s, r, _ in expected_totals(tpch_landing, (m,))]
        assert metrics == sorted(expected, key=lambda r: (r[1], r[0]))
    else:
        assert definition is None
        quarter = datetime(1992, 1, 1).date()
        assert metrics == [(quarter, s, r) for s, r, _ in expected_totals(tpch_landing, MONTHS[:3])]


DBT_SOURCES = """\
version: 2
sources:
  - name: shop_silver
    schema: silver
    tables:
      - name: orders
        meta: {dagster: {asset_key: [shop, silver, orders]}}
"""
DBT_MODEL = """\
version: 2
models:
- name: monthly_revenue
  config:
    contract:
      enforced: true
    materialized: mesh_snapshot
  columns:
  - {name: month, data_type: DATE}
  - {name: segment, data_type: VARCHAR}
  - {name: revenue, data_type: "DECIMAL(38,2)"}
  - {name: orders, data_type: BIGINT}
"""


def test_a_dbt_model_builds_a_range_of_months_one_file_each_then_one_month_alone(tmp_path: Path,
                                                                                tpch_landing) -> None:
    """monthly_revenue built by a dbt model: a range run writes one file per month (the mesh_snapshot
    materialization's partitioned write), and a month's run reads only that month of silver orders and
    replaces that month's file only."""
    root = make_root(tmp_path, tpch_landing, MONTHS[:3])
    contract_file = root / "domains" / "shop" / "products" / "orders.yaml"
    contract_file.write_text(contract_file.read_text().replace(
        "      - {property: layer, value: gold}\n      - property: partitioning\n",
        "      - {property: layer, value: gold}\n      - {property: transform, value: 'dbt:monthly_revenue'}\n"
        "      - property: partitioning\n", 1))
    sql = root / "domains" / "shop" / "sql" / "gold" / "monthly_revenue.sql"
    models = root / "dbt" / "models" / "shop"
    models.mkdir(parents=True)
    (models / "monthly_revenue.sql").write_text(sql.read_text().replace(
        "FROM silver.orders", "FROM {{ source('shop_silver', 'orders') }}"))
    sql.unlink()
    (models / "_sources.yml").write_text(DBT_SOURCES)
    (models / "monthly_revenue.yml").write_text(DBT_MODEL)
    for name in ("dbt_project.yml", "profiles.yml"):
        shutil.copy(REPO / "dbt" / name, root / "dbt" / name)
    shutil.copytree(REPO / "dbt" / "macros", root / "dbt" / "macros")
    parse_project(root)
    key = ("shop", "gold", "monthly_revenue")
    with dg.instance_for_test() as instance:
        summary = run_mesh(load_mesh(root), instance, partitions=(MONTHS[0], MONTHS[2]))
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        before = files_by_month(root, key)
        assert sorted(before) == list(MONTHS[:3]) and all(len(files) == 1 for files in before.values())
        summary = run_mesh(load_mesh(root), instance, partitions=(MONTHS[1], MONTHS[1]))
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        after = files_by_month(root, key)
    assert {m: after[m] for m in (MONTHS[0], MONTHS[2])} == {m: before[m] for m in (MONTHS[0], MONTHS[2])}
    assert after[MONTHS[1]] != before[MONTHS[1]]  # the month's own file replaced
    expected = [(datetime.strptime(m, "%Y-%m").date(), s, r, n) for m in MONTHS[:3]
                for s, r, n in expected_totals(tpch_landing, (m,))]
    assert port_rows(root, key) == sorted(expected)


def test_a_dbt_step_s_partitioned_input_is_a_view_of_its_window_rows(tmp_path: Path) -> None:
    """The mesh's dbt-duckdb plugin registers a partitioned input as the rows of the step's window only (a
    month's file read by a day's step), and tells the mesh_snapshot materialization how to partition its write."""
    from mesh_assets.engine.dbt_plugin import STEP_VIEW, Plugin, StepConnection, dbt_step
    from mesh_assets.engine.ports import Snapshot

    folder = tmp_path / "orders"
    folder.mkdir()
    duckdb.connect().execute(f"COPY (SELECT range AS order_id, DATE '1992-01-01' + CAST(range AS INTEGER) AS "
                             f"order_date FROM range(31)) TO '{folder / 'part-1992-01-0.parquet'}'")
    snapshot = Snapshot("s1", str(folder), (str(folder / "part-1992-01-0.parquet"),))
    day = window_predicate(("order_date", datetime(1992, 1, 15).date(), datetime(1992, 1, 16).date()))
    step = StepConnection(inputs=(("silver", "orders", snapshot),), location=str(tmp_path / "out.parquet"),
                          storage_root=str(tmp_path), allowed_directories=(str(tmp_path),), spill=str(tmp_path),
                          windows=(("silver.orders", day.sql(dialect="duckdb")),), partition_by="'x'",
                          partitions=str(tmp_path / "_partitions"))
    con = duckdb.connect()
    with dbt_step(step):
        Plugin(name="dbt_plugin", plugin_config={}).configure_connection(con)
    assert con.execute("SELECT order_id FROM silver.orders").fetchall() == [(14,)]
    assert con.execute(f"SELECT partition_by, partitions FROM main.{STEP_VIEW}").fetchall() == [
        ("'x'", str(tmp_path / "_partitions"))]
