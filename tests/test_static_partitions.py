"""Static partitions and multi-partitions (docs/partitions.md): a table partitioned by a declared set of values
(TPC-H customers by region), and one partitioned by month and region (orders), on tests/fixtures/regional_mesh:
their contract, Dagster partitions and dependencies, Iceberg partition spec, and runs that read, write and
publish one region, or one (month, region), only."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import FIXTURES, TEST_SALT, mesh_cli, restored
from mesh_assets.catalog.partitions import partition_status
from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.errors import ContractError, MeshError
from mesh_assets.orchestration.definitions import build_mesh_definitions
from mesh_assets.orchestration.runner import run_mesh
from test_partitions import MONTHS, land_month, port_rows

REGIONS = ("AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST")
CUSTOMERS, ORDERS = ("shop", "bronze", "raw_customers"), ("shop", "silver", "orders")
BUILT_SLICES = ("1992-01|ASIA", "1992-01|EUROPE", "1992-02|EUROPE")  # of silver orders, by the fixture


def land_customers(root: Path, tpch: Path, region: str, where: str = "true") -> None:
    """Land TPC-H's customers of ``region`` (``where``: a further SQL filter) as
    ``shop/customers/<region>/customers.csv``: customer_id, region."""
    folder = root / ".mesh" / "landing" / "shop" / "customers" / region
    folder.mkdir(parents=True, exist_ok=True)
    data = tpch / "tpch"
    duckdb.connect().execute(
        f"COPY (SELECT c_custkey AS customer_id, r_name AS region FROM read_csv('{data / 'customer.csv'}') "
        f"JOIN read_csv('{data / 'nation.csv'}') ON c_nationkey = n_nationkey "
        f"JOIN read_csv('{data / 'region.csv'}') ON n_regionkey = r_regionkey "
        f"WHERE r_name = '{region}' AND {where}) TO '{folder / 'customers.csv'}' (HEADER)")


def expected_orders(tpch: Path, month: str, region: str) -> int:
    """The TPC-H orders of ``month`` placed by customers of ``region``, counted on the raw files."""
    data = tpch / "tpch"
    return duckdb.connect().execute(
        f"SELECT count(*) FROM read_csv('{data / 'orders' / month / '*.csv'}') "
        f"JOIN read_csv('{data / 'customer.csv'}') ON o_custkey = c_custkey "
        f"JOIN read_csv('{data / 'nation.csv'}') ON c_nationkey = n_nationkey "
        f"JOIN read_csv('{data / 'region.csv'}') ON n_regionkey = r_regionkey "
        f"WHERE r_name = '{region}' AND strftime(o_orderdate, '%Y-%m') = '{month}'").fetchall()[0][0]


def current_files(root: Path, key: tuple[str, str, str]) -> set[str]:
    return set(PortStorage(root=str(root / ".mesh" / "lake")).port(key).current_snapshot().files)


@pytest.fixture(scope="module")
def regional(tpch_landing: Path, tmp_path_factory: pytest.TempPathFactory):
    """The regional mesh with two months of orders and every region's customers landed, built: the orders' two
    months in one range run, the five regions in one run over the static range AFRICA to MIDDLE EAST, then three
    (month, region) slices of silver orders, one run each: ``(root, instance)``."""
    root = tmp_path_factory.mktemp("regional") / "regional"
    shutil.copytree(FIXTURES / "regional_mesh", root)
    for month in MONTHS[:2]:
        land_month(root, tpch_landing, month)
    for region in REGIONS:
        land_customers(root, tpch_landing, region)
    with dg.instance_for_test() as instance, pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESH_PII_SALT", TEST_SALT)
        for name in ("DAGSTER_HOME", "MESH_STORAGE_ROOT", "MESH_LANDING_ZONE"):
            mp.delenv(name, raising=False)
        mesh = load_mesh(root)
        for partitions in ((MONTHS[0], MONTHS[1]), (REGIONS[0], REGIONS[-1]), *((s, s) for s in BUILT_SLICES)):
            summary = run_mesh(mesh, instance, partitions=partitions)
            assert summary.success, (partitions, [(a.key, a.status, a.blocking) for a in summary.assets])
        yield root, instance


# ---- Dagster and Iceberg ----


def test_static_and_multi_partitions_map_to_dagster_with_one_run_per_partition_backfills() -> None:
    graph = build_mesh_definitions(load_mesh(FIXTURES / "regional_mesh")).resolve_asset_graph()
    customers, orders = graph.get(dg.AssetKey(list(CUSTOMERS))), graph.get(dg.AssetKey(list(ORDERS)))
    assert isinstance(customers.partitions_def, dg.StaticPartitionsDefinition)
    assert customers.partitions_def.get_partition_keys() == list(REGIONS)
    assert isinstance(orders.partitions_def, dg.MultiPartitionsDefinition)
    assert [d.name for d in orders.partitions_def.partitions_defs] == ["order_date", "region"]
    assert orders.partitions_def.get_partition_keys()[:2] == ["1992-01|AFRICA", "1992-01|AMERICA"]
    for node in (customers, orders):
        assert node.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=1)
    assert graph.get(dg.AssetKey(["shop", "bronze", "raw_orders"])).backfill_policy == dg.BackfillPolicy.single_run()
    mapping = {parent[-1]: graph.get_partition_mapping(orders.key, dg.AssetKey(list(parent)))
               for parent in (CUSTOMERS, ("shop", "bronze", "raw_orders"))}
    assert {k: (type(m).__name__, m.partition_dimension_name) for k, m in mapping.items()} == {
        "raw_customers": ("MultiToSingleDimensionPartitionMapping", "region"),
        "raw_orders": ("MultiToSingleDimensionPartitionMapping", "order_date")}
    assert graph.get(dg.AssetKey(["shop", "gold", "region_totals"])).partitions_def is None


def test_the_iceberg_specs_hold_an_identity_field_and_a_month_field(regional) -> None:
    root, _ = regional
    storage = PortStorage(root=str(root / ".mesh" / "lake"))
    fields = {}
    for key in (CUSTOMERS, ORDERS):
        table = storage.port(key).table()
        fields[key[-1]] = [(table.schema().find_field(f.source_id).name, str(f.transform), f.name)
                           for f in table.spec().fields]
    assert fields == {"raw_customers": [("region", "identity", "region")],
                      "orders": [("order_date", "month", "order_date_month"), ("region", "identity", "region")]}


# ---- runs ----


def test_one_run_over_the_regions_builds_each_region_and_its_dependent_by_identity(regional, tpch_landing) -> None:
    root, instance = regional
    assert instance.get_materialized_partitions(dg.AssetKey(list(CUSTOMERS))) == set(REGIONS)
    counts = dict(port_rows(root, ("shop", "gold", "customer_counts")))
    assert set(counts) == set(REGIONS)
    assert counts == dict(port_rows(root, CUSTOMERS, "SELECT region, count(*) FROM t GROUP BY region"))
    table = load_mesh(root).domain("shop").table("bronze", "raw_customers")
    status = partition_status(instance, table)
    assert (len(status.expected), len(status.materialized), status.missing) == (5, 5, ())
    assert status.latest in REGIONS and status.latest_state == "materialized"  # judged on its stalest region


def test_a_region_run_reads_writes_and_publishes_that_region_only(regional, tpch_landing) -> None:
    root, _ = regional
    with restored(root), dg.instance_for_test() as instance:
        before = current_files(root, CUSTOMERS)
        ids = "SELECT customer_id, region FROM t ORDER BY ALL"
        rows_before = port_rows(root, CUSTOMERS, ids)
        land_customers(root, tpch_landing, "EUROPE", "c_custkey % 2 = 0")  # half of Europe's customers leave
        shutil.rmtree(root / ".mesh" / "landing" / "shop" / "customers" / "ASIA")  # not read by a EUROPE run
        summary = run_mesh(load_mesh(root), instance, partitions=("EUROPE", "EUROPE"))
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        assert {a.key for a in summary.assets} == {"shop/bronze/raw_customers", "shop/bronze/raw_customers__rejects",
                                                   "shop/gold/customer_counts"}
        after = current_files(root, CUSTOMERS)
        europe = before - after
        assert europe and before - europe <= after  # the other regions' files are the very same
        rows_after = port_rows(root, CUSTOMERS, ids)
        assert [r for r in rows_after if r[1] != "EUROPE"] == [r for r in rows_before if r[1] != "EUROPE"]
        assert [r for r in rows_after if r[1] == "EUROPE"] == [r for r in rows_before
                                                              if r[1] == "EUROPE" and r[0] % 2 == 0]
        assert instance.get_materialized_partitions(dg.AssetKey(list(CUSTOMERS))) == {"EUROPE"}


def test_a_region_step_reads_only_its_region_files_of_an_input(regional) -> None:
    from mesh_assets.contract.model import PartitionColumns, Window

    root, _ = regional
    port = PortStorage(root=str(root / ".mesh" / "lake")).port(CUSTOMERS)
    names = {f.rsplit("/", 1)[-1].rsplit("-", 1)[0] for f in port.current_snapshot().files}
    assert names == {f"part-{r}" for r in REGIONS}  # one file per region, named after it
    asia = port.current_snapshot(within=(PartitionColumns(static="region"), Window(("ASIA",), values=("ASIA",))))
    assert [f.rsplit("/", 1)[-1].rsplit("-", 1)[0] for f in asia.files] == ["part-ASIA"]  # pruned to the files


def test_a_row_of_another_region_fails_the_partition_window_check_and_publishes_nothing(regional,
                                                                                        tpch_landing) -> None:
    root, _ = regional
    with restored(root), dg.instance_for_test() as instance:
        before = current_files(root, CUSTOMERS)
        with (root / ".mesh" / "landing" / "shop" / "customers" / "EUROPE" / "customers.csv").open("a") as handle:
            handle.write("999999,ASIA\n")  # an Asian customer landed in Europe's folder
        summary = run_mesh(load_mesh(root), instance, partitions=("EUROPE", "EUROPE"))
        assert not summary.success
        (customers,) = [a for a in summary.assets if a.key == "shop/bronze/raw_customers"]
        assert "partition_window" in str(customers.blocking)
        assert current_files(root, CUSTOMERS) == before


def test_a_month_and_region_run_builds_that_slice_only_reading_both_inputs_by_dimension(regional,
                                                                                         tpch_landing) -> None:
    root, instance = regional
    built = port_rows(root, ORDERS, "SELECT strftime(order_date, '%Y-%m') || '|' || region, count(*) FROM t "
                                    "GROUP BY ALL ORDER BY 1")
    assert built == [(s, expected_orders(tpch_landing, *s.split("|"))) for s in BUILT_SLICES]
    assert instance.get_materialized_partitions(dg.AssetKey(list(ORDERS))) == set(BUILT_SLICES)
    totals = dict((r, n) for r, _, n in port_rows(root, ("shop", "gold", "region_totals")))
    assert totals == {"ASIA": built[0][1], "EUROPE": built[1][1] + built[2][1]}  # reads every built slice
    with restored(root), dg.instance_for_test() as fresh:
        before = current_files(root, ORDERS)
        summary = run_mesh(load_mesh(root), fresh, partitions=("1992-02|ASIA", "1992-02|ASIA"))
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        assert {a.key for a in summary.assets} == {"shop/silver/orders", "shop/gold/region_totals"}
        assert before < current_files(root, ORDERS)  # one commit adding the slice, every other file kept
        slices = dict(port_rows(root, ORDERS, "SELECT strftime(order_date, '%Y-%m') || '|' || region, count(*) "
                                              "FROM t GROUP BY ALL"))
        assert slices == {**dict(built), "1992-02|ASIA": expected_orders(tpch_landing, "1992-02", "ASIA")}
        commit = PortStorage(root=str(root / ".mesh" / "lake")).port(ORDERS).table().current_snapshot().summary
        assert commit["mesh.partition"] == "1992-02|ASIA"


def test_status_counts_the_slices_of_a_multi_partitioned_port(regional) -> None:
    root, instance = regional
    status = partition_status(instance, load_mesh(root).domain("shop").table("silver", "orders"))
    assert (len(status.expected), status.materialized) == (6 * 5, BUILT_SLICES)
    assert status.describe().startswith("3/30 materialized")
    assert (status.latest, status.latest_state) == ("1992-06|AFRICA", "missing")  # of the newest month


def test_the_landing_sensor_starts_one_run_per_landed_region(tmp_path: Path, tpch_landing) -> None:
    from mesh_assets.orchestration.definitions import build_domain_definitions

    root = tmp_path / "regional"
    shutil.copytree(FIXTURES / "regional_mesh", root)
    with (root / "mesh.yaml").open("a") as handle:
        handle.write("automation: {landing_settle_seconds: 0}\n")
    for region in ("ASIA", "EUROPE"):
        land_customers(root, tpch_landing, region)
    defs = build_domain_definitions(root / "domains" / "shop")
    sensor = defs.resolve_sensor_def("shop_landing_zone")
    with dg.instance_for_test() as instance:
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert [(r.partition_key, r.tags.get("dagster/asset_partition_range_start"), r.tags["mesh/landing_files"],
             sorted(k.to_user_string() for k in r.asset_selection)) for r in tick.run_requests] == [
        (region, None, f"shop/customers/{region}/customers.csv",
         ["shop/bronze/raw_customers", "shop/bronze/raw_customers__rejects", "shop/gold/customer_counts"])
        for region in ("ASIA", "EUROPE")]  # not one run over the range ASIA...EUROPE (AMERICA lies between)
    # a job's assets share one partitions definition: the region's bronze table has its own ingestion job
    assert {r.job_name for r in tick.run_requests} == {"shop_ingestion_by_region"}
    assert {j.name for j in defs.jobs} == {"shop_ingestion", "shop_ingestion_by_region"}


def test_mesh_run_takes_a_multi_partition_key_as_dagster_writes_it(regional, tpch_landing) -> None:
    root, _ = regional
    with restored(root):  # the run records in <mesh>/.dagster (conftest isolates every test)
        done = mesh_cli(root, "run", "--partition", "1992-02|AMERICA")
        assert done.returncode == 0, done.stdout + done.stderr
        slices = dict(port_rows(root, ORDERS, "SELECT strftime(order_date, '%Y-%m') || '|' || region, count(*) "
                                              "FROM t GROUP BY ALL"))
        assert slices["1992-02|AMERICA"] == expected_orders(tpch_landing, "1992-02", "AMERICA")
        assert set(slices) == {*BUILT_SLICES, "1992-02|AMERICA"}


def test_a_range_of_multi_partitions_is_refused_with_the_fix(regional) -> None:
    root, instance = regional
    with pytest.raises(MeshError, match="built one partition per run; give --partition"):
        run_mesh(load_mesh(root), instance, partitions=("1992-01|AFRICA", "1992-01|ASIA"))
    with pytest.raises(MeshError, match=r"a static partition's its value \(EUROPE\)"):
        run_mesh(load_mesh(root), instance, partitions=("OCEANIA", "OCEANIA"))


# ---- the contract ----

STATIC_CONTRACT = """\
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
      - {{name: region, logicalType: {logical}, physicalType: {physical}, partitioned: true, partitionKeyPosition: 1,
         description: Region.}}
      - {{name: day, logicalType: date, physicalType: DATE, {day}description: Day.}}
"""


def static_contract(tmp_path: Path, partitioning: str | None = "{values: [EUROPE, ASIA]}", physical: str = "VARCHAR",
                    path: str = "shop/events/{region}/*.csv", day: str = "") -> Path:
    file = tmp_path / "x.yaml"
    declared = f"      - property: partitioning\n        value: {partitioning}\n" if partitioning else ""
    file.write_text(STATIC_CONTRACT.format(path=path, partitioning=declared, physical=physical, day=day,
                                           logical="string" if physical == "VARCHAR" else "integer"))
    return file


def test_contract_declares_static_and_multi_partitions(tmp_path: Path) -> None:
    table = load_contract(static_contract(tmp_path), "shop", "shop-team").tables[0]
    assert table.partitioning.time is None and table.partitioning.static.values == ("EUROPE", "ASIA")
    assert table.source.glob(table.partitioning, "ASIA") == "shop/events/ASIA/*.csv"
    assert table.source.partition_of("shop/events/EUROPE/a.csv", table.partitioning) == "EUROPE"
    assert table.source.partition_of("shop/events/OCEANIA/a.csv", table.partitioning) is None
    window = table.partitioning.window(["ASIA", "EUROPE"])
    assert (window.start, window.values, window.label) == (None, ("ASIA", "EUROPE"), "ASIA...EUROPE")
    multi = load_contract(static_contract(tmp_path, '{values: [EUROPE, ASIA], granularity: month, start: '
                                                    '"2024-01-01"}', path="shop/events/{month}/{region}/*.csv",
                                          day="partitioned: true, partitionKeyPosition: 2, "),
                          "shop", "shop-team").tables[0]
    assert (multi.partitioning.time.column, multi.partitioning.static.column) == ("day", "region")
    assert multi.partitioning.key("2024-03", "ASIA") == "2024-03|ASIA"  # Dagster's order: the names sorted
    assert multi.source.glob(multi.partitioning, "2024-03|ASIA") == "shop/events/2024-03/ASIA/*.csv"
    assert multi.source.partition_of("shop/events/2024-03/ASIA/a.csv", multi.partitioning) == "2024-03|ASIA"
    window = multi.partitioning.window(["2024-03|ASIA"])
    assert (str(window.start), str(window.end), window.values) == ("2024-03-01", "2024-04-01", ("ASIA",))


@pytest.mark.parametrize(("kwargs", "field", "problem"), [
    ({"partitioning": "{values: [EUROPE, 'EU|ROPE']}"}, "customProperties", "'EU|ROPE' is not a partition value; "
                                                                           "write values of letters, digits"),
    ({"partitioning": "{values: [../etc]}"}, "customProperties", "'../etc' is not a partition value"),
    ({"partitioning": "{values: ['*']}"}, "customProperties", "'*' is not a partition value"),
    ({"partitioning": "{values: [2024]}"}, "customProperties", "quoted if YAML would read another type"),
    ({"partitioning": "{values: [EUROPE, EUROPE]}"}, "customProperties", "lists EUROPE more than once"),
    ({"partitioning": "{values: []}"}, "customProperties", "values must be a list of the partitions of column "
                                                           "region"),
    ({"partitioning": "{granularity: month, start: '2024-01-01'}"}, "customProperties",
     "partitioning declares granularity, start, which a DATE or TIMESTAMP partition column takes"),
    ({"partitioning": None}, "customProperties", "column region is partitioned: declare the partitions' values"),
    ({"physical": "BIGINT"}, "physicalType", "partition on a DATE or TIMESTAMP column for time"),
    ({"day": "partitioned: true, partitionKeyPosition: 1, "}, "partitionKeyPosition", "give them 1 and 2"),
    ({"path": "shop/events/*.csv"}, "customProperties", "names its partition's files with {region}"),
])
def test_contract_refuses_bad_static_partitions_naming_the_field_and_the_fix(tmp_path: Path, kwargs, field,
                                                                             problem) -> None:
    with pytest.raises(ContractError) as caught:
        load_contract(static_contract(tmp_path, **kwargs), "shop", "shop-team")
    message = str(caught.value)
    assert problem in message and "x.yaml" in message and "schema[0]" in message and field in message


def test_contract_refuses_three_partition_columns(tmp_path: Path) -> None:
    file = static_contract(tmp_path, day="partitioned: true, partitionKeyPosition: 2, ")
    file.write_text(file.read_text() + "      - {name: shop, logicalType: string, physicalType: VARCHAR, "
                                       "partitioned: true, partitionKeyPosition: 3, description: Shop.}\n")
    with pytest.raises(ContractError, match=r"properties\[3\].partitioned.*3 columns are partitioned; a table has "
                                            r"at most two partition columns"):
        load_contract(file, "shop", "shop-team")


def test_a_table_reading_an_input_partitioned_otherwise_is_refused_at_load(tmp_path: Path) -> None:
    root = tmp_path / "regional"
    shutil.copytree(FIXTURES / "regional_mesh", root)
    contract = root / "domains" / "shop" / "products" / "customers.yaml"
    values = 'value: {values: [AFRICA, AMERICA, ASIA, EUROPE, "MIDDLE EAST"]}'
    head, tail = contract.read_text().rsplit(values, 1)  # customer_counts: one region fewer than its input
    contract.write_text(head + "value: {values: [AFRICA, AMERICA, ASIA, EUROPE]}" + tail)
    with pytest.raises(MeshError, match=r"customers.yaml: table customer_counts is partitioned by region \(4 values\) "
                                        r"and reads bronze.raw_customers .* region \(5 values\); .* Partition both "
                                        "alike, or leave the reader unpartitioned"):
        build_mesh_definitions(load_mesh(root))


def test_a_plain_run_plans_each_landed_region_and_slice_as_its_own_run(tmp_path: Path, tpch_landing) -> None:
    from mesh_assets.orchestration.runner import landed_ranges

    root = tmp_path / "regional"
    shutil.copytree(FIXTURES / "regional_mesh", root)
    for month in MONTHS[:2]:
        land_month(root, tpch_landing, month)
    land_customers(root, tpch_landing, "ASIA")
    ranges = landed_ranges(load_mesh(root), None, None)
    assert ranges[:2] == [(MONTHS[0], MONTHS[1]), ("ASIA", "ASIA")]  # one range of months; one run per region
    assert ranges[2:] == [(f"{m}|ASIA",) * 2 for m in MONTHS[:2]]  # the slices landed in both inputs, last


def test_a_foreign_key_to_a_table_partitioned_otherwise_depends_on_all_its_partitions(tmp_path: Path) -> None:
    root = tmp_path / "regional"
    shutil.copytree(FIXTURES / "regional_mesh", root)
    contract = root / "domains" / "shop" / "products" / "orders.yaml"
    key = "physicalType: INTEGER, required: true, "  # raw_orders.customer_id (by month) → raw_customers (by region)
    contract.write_text(contract.read_text().replace(key, f"{key}relationships: [{{to: raw_customers.customer_id}}], "))
    graph = build_mesh_definitions(load_mesh(root)).resolve_asset_graph()
    raw_orders = dg.AssetKey(["shop", "bronze", "raw_orders"])
    assert dg.AssetKey(list(CUSTOMERS)) in graph.get(raw_orders).parent_keys  # the rule reads it whole
    assert isinstance(graph.get_partition_mapping(raw_orders, dg.AssetKey(list(CUSTOMERS))), dg.AllPartitionMapping)


REGIONAL_ORDERS = """\
apiVersion: v3.1.0
kind: DataContract
id: shop-regional-orders
name: regional_orders
version: 1.0.0
status: active
domain: shop
team:
  name: shop-team
description:
  purpose: Orders landed by month and region.
schema:
  - name: regional_orders
    physicalType: table
    description: Orders as landed, one folder per month and region.
    customProperties:
      - {property: layer, value: bronze}
      - property: source
        value: {path: "shop/regional_orders/{month}/{region}/*.csv", format: csv}
      - property: partitioning
        value: {granularity: month, start: "1992-01-01", end: "1992-07-01", values: [ASIA, EUROPE]}
    properties:
      - {name: order_id, logicalType: integer, physicalType: BIGINT, primaryKey: true, description: Order key.}
      - {name: region, logicalType: string, physicalType: VARCHAR, required: true, partitioned: true,
         partitionKeyPosition: 2, description: Region.}
      - {name: order_date, logicalType: date, physicalType: DATE, required: true, partitioned: true,
         partitionKeyPosition: 1, description: Order date.}
"""


def test_a_bronze_table_landed_by_month_and_region_ingests_one_slice_s_files(tmp_path: Path, tpch_landing) -> None:
    root = tmp_path / "regional"
    shutil.copytree(FIXTURES / "regional_mesh", root)
    (root / "domains" / "shop" / "products" / "regional_orders.yaml").write_text(REGIONAL_ORDERS)
    data = tpch_landing / "tpch"
    for month in MONTHS[:2]:
        for region in ("ASIA", "EUROPE"):
            folder = root / ".mesh" / "landing" / "shop" / "regional_orders" / month / region
            folder.mkdir(parents=True)
            duckdb.connect().execute(
                f"COPY (SELECT o_orderkey AS order_id, r_name AS region, o_orderdate AS order_date "
                f"FROM read_csv('{data / 'orders' / month / '*.csv'}') "
                f"JOIN read_csv('{data / 'customer.csv'}') ON o_custkey = c_custkey "
                f"JOIN read_csv('{data / 'nation.csv'}') ON c_nationkey = n_nationkey "
                f"JOIN read_csv('{data / 'region.csv'}') ON n_regionkey = r_regionkey "
                f"WHERE r_name = '{region}') TO '{folder / 'orders.csv'}' (HEADER)")
    key = ("shop", "bronze", "regional_orders")
    with dg.instance_for_test() as instance:
        for slice_ in ("1992-01|ASIA", "1992-02|EUROPE"):
            summary = run_mesh(load_mesh(root), instance, partitions=(slice_, slice_),
                               selection='key:"shop/bronze/regional_orders"')  # not silver orders' slice
            assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
            assert {a.key for a in summary.assets} == {"/".join(key), "/".join(key) + "__rejects"}
    rows = dict(port_rows(root, key, "SELECT strftime(order_date, '%Y-%m') || '|' || region, count(*) FROM t "
                                     "GROUP BY ALL"))
    assert rows == {"1992-01|ASIA": expected_orders(tpch_landing, "1992-01", "ASIA"),
                    "1992-02|EUROPE": expected_orders(tpch_landing, "1992-02", "EUROPE")}  # each its own files
