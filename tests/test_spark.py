"""The Spark engine (docs/scaling.md): the whole reference mesh on Spark equals the DuckDB run, port by port and
report by report; a mixed mesh (one domain on Spark); the engine choice; rejects and masking on Spark.

Spark runs ``local[*]`` in this process (Java 17); the JVM starts once for the module.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import TEST_SALT, ReferenceRun
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.spark_engine import SparkEngine, executor_python, spark_config
from mesh_assets.engine.spark_ingestion import spark_path
from mesh_assets.engine.sql_session import to_spark
from mesh_assets.errors import ContractError, MeshError
from mesh_assets.orchestration.definitions import build_mesh_definitions
from mesh_assets.orchestration.runner import RunSummary, run_mesh

pytestmark = pytest.mark.spark  # an integration tier: `make test-fast` leaves it out

REPO = Path(__file__).parent.parent
FINANCE = ("forecasting_revenue_change", "local_supplier_volume", "pricing_summary_report",
           "returned_item_reporting", "shipping_priority")
DBT_TABLES = {"customers/gold/customer_profile", "supply/gold/part_catalog"}
# sales's orders and lines, and the wide table's metrics, are partitioned by month: they stay on DuckDB under
# --engine spark (docs/partitions.md)
DUCKDB_TABLES = {*DBT_TABLES, *(f"sales/{t}" for t in ("bronze/orders", "bronze/orders__rejects", "bronze/lineitem",
                                                        "bronze/lineitem__rejects", "silver/order_headers",
                                                        "silver/order_lines", "gold/order_lines_wide",
                                                        "gold/order_lines_wide__metrics"))}


def _copy_mesh(root: Path) -> Path:
    root.mkdir()
    shutil.copy(REPO / "mesh.yaml", root / "mesh.yaml")
    shutil.copytree(REPO / "domains", root / "domains", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "dbt", root / "dbt", ignore=shutil.ignore_patterns("logs"))
    return root


def _run(root: Path, landing: Path, lake: Path, engine: str | None
         ) -> tuple[RunSummary, dict[str, set[str]], dict[tuple[str, str], dict]]:
    """Run the mesh at ``root`` into ``lake``: the summary, each asset's kinds, each check's metadata."""
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("MESH_LANDING_ZONE", str(landing))
        mp.setenv("MESH_STORAGE_ROOT", str(lake))
        mp.setenv("MESH_PII_SALT", TEST_SALT)
        if engine:
            mp.setenv("MESH_ENGINE", engine)
        else:
            mp.delenv("MESH_ENGINE", raising=False)
        mesh = load_mesh(root)
        kinds = {spec.key.to_user_string(): set(spec.kinds) for a in build_mesh_definitions(mesh).assets or []
                 for spec in a.specs}
        summary = run_mesh(mesh, instance)
        checks = {}
        for entry in instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            data = entry.dagster_event.event_specific_data
            checks[(data.asset_key.to_user_string(), data.check_name)] = {k: v.value for k, v in data.metadata.items()}
        return summary, kinds, checks


@pytest.fixture(scope="module")
def landed(tpch_landing: Path) -> Path:
    return tpch_landing


@pytest.fixture(scope="module")
def spark_run(landed: Path, tmp_path_factory: pytest.TempPathFactory):
    lake = tmp_path_factory.mktemp("lake_spark")
    summary, kinds, checks = _run(REPO, landed, lake, "spark")
    return summary, kinds, lake, checks


def _port(lake: Path, key: str) -> str:
    return PortStorage(root=str(lake)).port(tuple(key.split("/"))).current_snapshot().glob  # type: ignore[arg-type]


def _rows(lake: Path, key: str) -> list[tuple]:
    """The port's rows without its timestamps (a run's own time, such as when a label was computed)."""
    relation = duckdb.sql(f"SELECT * FROM read_parquet('{_port(lake, key)}')")
    stable = [f'"{c}"' for c, t in zip(relation.columns, relation.types) if not str(t).startswith("TIMESTAMP")]
    return relation.select(", ".join(stable)).fetchall()


def _same_rows(a: list[tuple], b: list[tuple]) -> bool:
    order = lambda row: tuple(str(v) for v in row)  # noqa: E731 - order-free comparison
    if len(a) != len(b):
        return False
    for x, y in zip(sorted(a, key=order), sorted(b, key=order)):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float) or isinstance(v, float):
                if not math.isclose(float(u), float(v), rel_tol=1e-9):
                    return False
            elif u != v:
                return False
    return True


def test_whole_mesh_on_spark_publishes_every_port_with_every_check_passing(spark_run, reference_run: ReferenceRun
                                                                            ) -> None:
    spark, duck = spark_run[0], reference_run.summary
    assert spark.success, [(a.key, a.status, a.blocking) for a in spark.assets if a.status != "materialized"]
    assert duck.success
    assert len(spark.assets) == len(duck.assets) == 34
    # the same checks ran and passed on both engines, asset by asset
    assert {a.key: (a.checks_passed, a.warnings, a.blocking) for a in spark.assets} == \
           {a.key: (a.checks_passed, a.warnings, a.blocking) for a in duck.assets}


def test_every_port_has_the_duckdb_row_count_and_parquet_types(spark_run, reference_run) -> None:
    spark_rows = {a.key: a.rows for a in spark_run[0].assets}
    assert spark_rows == {a.key: a.rows for a in reference_run.summary.assets}
    assert spark_rows["sales/bronze/lineitem"] > 50_000
    for key in spark_rows:
        types = [duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{_port(lake, key)}')").fetchall()
                 for lake in (spark_run[2], reference_run.lake)]
        assert [(c[0], c[1]) for c in types[0]] == [(c[0], c[1]) for c in types[1]], key


@pytest.mark.parametrize("report", FINANCE)
def test_finance_report_on_spark_equals_the_duckdb_run(spark_run, reference_run, report: str) -> None:
    key = f"finance/gold/{report}"
    expected = _rows(reference_run.lake, key)
    assert expected
    assert _same_rows(_rows(spark_run[2], key), expected)


def test_silver_and_gold_built_on_spark_hold_the_duckdb_rows(spark_run, reference_run) -> None:
    for key in ("supply/gold/supplier_profile", "customers/gold/nations", "supply/silver/part_suppliers",
                "customers/gold/customer_profile__labels"):
        assert _same_rows(_rows(spark_run[2], key), _rows(reference_run.lake, key)), key


def test_kinds_and_ports_name_the_engine_that_really_ran(spark_run) -> None:
    summary, kinds, lake, checks = spark_run
    for key, asset_kinds in kinds.items():
        engine = "duckdb" if key in DUCKDB_TABLES else "spark"  # dbt models run on dbt-duckdb
        assert engine in asset_kinds and ({"spark", "duckdb"} - {engine}).isdisjoint(asset_kinds), key
    storage = PortStorage(root=str(lake))
    assert (storage.port(("supply", "silver", "part_suppliers")).current() or {}).get("engine") == "spark"
    assert (storage.port(("sales", "silver", "order_lines")).current() or {}).get("engine") == "duckdb"
    # what Spark's typing rules changed is cast to the contract's type and said on the schema check
    schema = checks[("finance/gold/pricing_summary_report", "schema")]
    assert schema["cast_by_engine"]["sum_qty"] == "DECIMAL(25,2) → DECIMAL(38,2)"
    assert "cast_by_engine" not in checks[("sales/silver/order_lines", "schema")]


def test_mixed_mesh_one_domain_on_spark(tmp_path: Path, landed: Path, reference_run) -> None:
    root = _copy_mesh(tmp_path / "mesh")
    descriptor = root / "domains" / "supply" / "domain.yaml"
    descriptor.write_text(descriptor.read_text() + "engine: spark\n")
    lake = tmp_path / "lake"
    summary, kinds, _ = _run(root, landed, lake, None)
    assert summary.success, [(a.key, a.status) for a in summary.assets if a.status != "materialized"]
    on_spark = {key for key, k in kinds.items() if "spark" in k}
    assert on_spark == {key for key in kinds if key.startswith("supply/") and key != "supply/gold/part_catalog"}
    assert {a.key: a.rows for a in summary.assets} == {a.key: a.rows for a in reference_run.summary.assets}
    for report in FINANCE:
        assert _same_rows(_rows(lake, f"finance/gold/{report}"), _rows(reference_run.lake, f"finance/gold/{report}"))
    # a DuckDB domain reads the Spark-written port: sales' dbt model joins supply's part catalog, itself built
    # from silver parts written by Spark
    assert _same_rows(_rows(lake, "supply/silver/parts"), _rows(reference_run.lake, "supply/silver/parts"))


def _tiny_on_spark(root: Path, instance, landed: dict[str, str]) -> tuple[RunSummary, dict[str, int | None]]:
    """Land ``landed`` (landing file → bad-input corpus file) in the tiny mesh and run it on Spark."""
    for target, case in landed.items():
        (root / ".mesh" / "landing" / "shop" / target).write_bytes(
            (REPO / "tests" / "fixtures" / "bad_inputs" / case).read_bytes())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MESH_ENGINE", "spark")
        summary = run_mesh(load_mesh(root), instance)
    return summary, {a.key: a.rows for a in summary.assets}


def _rejects(root: Path, columns: str) -> list[tuple]:
    port = PortStorage(root=load_mesh(root).settings.storage_url).port(("shop", "bronze", "raw_orders__rejects"))
    return duckdb.sql(f"SELECT {columns} FROM read_parquet('{port.current_snapshot().glob}')").fetchall()


def test_records_spark_cannot_parse_are_rejected_with_their_raw_line(tiny_root: Path, instance) -> None:
    summary, rows = _tiny_on_spark(tiny_root, instance, {"customers.csv": "bad_date.csv",
                                                         "orders.csv": "too_many_columns.csv"})
    assert rows["shop/bronze/raw_customers"] == 3 and rows["shop/bronze/raw_customers__rejects"] == 2
    assert rows["shop/bronze/raw_orders"] == 1 and rows["shop/bronze/raw_orders__rejects"] == 1
    assert _rejects(tiny_root, "error_types, raw_line, _source_file") == [
        ("TOO MANY COLUMNS", "2,bob,20.00,web", str(tiny_root / ".mesh/landing/shop/orders.csv"))]
    checks = {}
    for entry in instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        data = entry.dagster_event.event_specific_data
        checks[(data.asset_key.to_user_string(), data.check_name)] = data
    conservation = checks[("shop/bronze/raw_customers", "row_conservation")]
    assert conservation.passed and conservation.metadata["rows_read"].value == 5


def test_a_record_that_is_not_utf8_is_rejected_on_spark_as_on_duckdb(tiny_root: Path, instance) -> None:
    _, rows = _tiny_on_spark(tiny_root, instance, {"orders.csv": "non_utf8.csv"})
    assert rows["shop/bronze/raw_orders"] == 2 and rows["shop/bronze/raw_orders__rejects"] == 1
    assert _rejects(tiny_root, "error_types") == [("INVALID ENCODING",)]


def test_masking_on_spark_reads_the_masked_copy_of_the_duckdb_hmac(tiny_root: Path, instance) -> None:
    """A port Spark wrote gets its masked copy from the shared publishing code, and a consumer on Spark reads
    that copy: the same HMAC-SHA256 digests as on DuckDB, with no masking function in the Spark session."""
    from mesh_assets import connect
    from test_access import classify_customer_pii, masked
    from test_governance import add_consumer

    add_consumer(tiny_root)
    classify_customer_pii(tiny_root)
    summary, rows = _tiny_on_spark(tiny_root, instance, {})
    assert summary.success and rows["billing/gold/invoices"] == 2
    invoices = connect(tiny_root, "billing").sql("SELECT customer FROM billing.invoices").fetchall()
    assert sorted(r[0] for r in invoices) == sorted(masked(c) for c in ("ann", "bob"))
    port = PortStorage(root=load_mesh(tiny_root).settings.storage_url).port(("shop", "gold", "order_totals"))
    assert port.masked_columns(port.current_snapshot().id) == ("customer",)


def test_sql_on_spark_cannot_read_a_path() -> None:
    from pyspark.errors import AnalysisException

    from mesh_assets.engine.sql_session import QueryError, SparkSqlSession

    session = SparkSqlSession(SparkEngine(spark_config=spark_config("local[2]", {})).session())
    with pytest.raises(AnalysisException, match="TABLE_OR_VIEW_NOT_FOUND"):  # spark.sql.runSQLOnFiles=false
        session.spark.sql("SELECT * FROM csv.`/etc/passwd`").collect()
    with pytest.raises(QueryError, match="TABLE_OR_VIEW_NOT_FOUND"):
        session.query("SELECT * FROM parquet.\"/etc\"")


def test_engine_choice_most_specific_wins(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def kinds() -> dict[str, str]:
        defs = build_mesh_definitions(load_mesh(tiny_root))
        return {s.key.to_user_string(): ({"spark", "duckdb"} & set(s.kinds)).pop() for a in defs.assets or []
                for s in a.specs}

    assert set(kinds().values()) == {"duckdb"}
    mesh_yaml = tiny_root / "mesh.yaml"
    mesh_yaml.write_text(mesh_yaml.read_text() + "\nengine: spark\n")
    assert set(kinds().values()) == {"spark"}
    domain_yaml = tiny_root / "domains" / "shop" / "domain.yaml"
    domain_yaml.write_text(domain_yaml.read_text() + "engine: duckdb\n")
    assert set(kinds().values()) == {"duckdb"}
    contract = tiny_root / "domains" / "shop" / "products" / "orders.yaml"
    text = contract.read_text()
    contract.write_text(text + "customProperties:\n  - {property: engine, value: spark}\n")
    chosen = kinds()
    assert chosen["shop/bronze/raw_orders"] == chosen["shop/gold/order_totals"] == "spark"
    assert chosen["shop/bronze/raw_customers"] == "duckdb"  # another product of the domain
    contract.write_text(text.replace("      - property: layer\n        value: gold\n",
                                     "      - property: layer\n        value: gold\n"
                                     "      - {property: engine, value: duckdb}\n")
                        + "customProperties:\n  - {property: engine, value: spark}\n")
    chosen = kinds()
    assert chosen["shop/gold/order_totals"] == "duckdb" and chosen["shop/silver/orders"] == "spark"
    monkeypatch.setenv("MESH_ENGINE", "duckdb")
    assert set(kinds().values()) == {"duckdb"}


def test_unknown_engines_are_refused_with_the_fix(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    contract = tiny_root / "domains" / "shop" / "products" / "orders.yaml"
    contract.write_text(contract.read_text() + "customProperties:\n  - {property: engine, value: flink}\n")
    with pytest.raises(MeshError, match="engine 'flink' is unknown; use one of duckdb, spark"):
        load_mesh(tiny_root).domain("shop")
    monkeypatch.setenv("MESH_ENGINE", "polars")
    with pytest.raises(MeshError, match="MESH_ENGINE='polars' is not an engine"):
        from mesh_assets.engine.choice import engine_override
        engine_override()


def test_a_dbt_model_cannot_be_put_on_spark(tmp_path: Path) -> None:
    root = _copy_mesh(tmp_path / "mesh")
    contract = root / "domains" / "supply" / "products" / "part_catalog.yaml"
    text = contract.read_text()
    assert "value: dbt:part_catalog" in text
    contract.write_text(text.replace("value: dbt:part_catalog", "value: dbt:part_catalog\n"
                                     "      - {property: engine, value: spark}", 1))
    with pytest.raises((MeshError, ContractError), match="runs on dbt-duckdb; remove the engine property"):
        load_mesh(root).domain("supply")


def test_sql_is_translated_from_duckdb_to_spark() -> None:
    sql = ("SELECT o.id, json_object('k', o.v) AS j, DATE '1994-01-01' + INTERVAL '1' YEAR AS d, avg(o.v) AS a "
           "FROM silver.orders AS o JOIN customers.customer_profile AS c ON c.id = o.id")
    spark = to_spark(sql)
    assert "FROM silver__orders AS o JOIN customers__customer_profile AS c" in spark
    assert "TO_JSON(NAMED_STRUCT('k', o.v), MAP('ignoreNullFields', 'false'))" in spark
    assert "CAST('1994-01-01' AS DATE) + INTERVAL '1' YEAR" in spark
    assert "AVG(CAST(o.v AS DOUBLE)) AS a" in spark  # DuckDB's avg is a DOUBLE, Spark's avg of a DECIMAL is not


def test_spark_configuration_comes_from_mesh_yaml_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = spark_config("local[*]", {"spark.executor.memory": "2g", "spark.sql.shuffle.partitions": 64})
    assert conf["spark.master"] == "local[*]" and conf["spark.sql.shuffle.partitions"] == "64"
    monkeypatch.setenv("MESH_SPARK_MASTER", "spark://head:7077")
    monkeypatch.setenv("MESH_SPARK_CONF", '{"spark.executor.memory": "8g", "spark.sql.runSQLOnFiles": true}')
    conf = spark_config("local[*]", {"spark.executor.memory": "2g"})
    assert conf["spark.master"] == "spark://head:7077" and conf["spark.executor.memory"] == "8g"
    assert conf["spark.sql.runSQLOnFiles"] == "false"  # what the mesh needs is not configurable
    monkeypatch.setenv("MESH_SPARK_CONF", "spark.executor.memory=8g")
    with pytest.raises(ValueError, match="MESH_SPARK_CONF is not JSON"):
        spark_config("local[*]", {})
    assert spark_path("s3://bucket/mesh") == "s3a://bucket/mesh"


def test_executors_run_the_driver_s_python_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spark's default, ``python3`` on a worker's PATH, is often a Python without pandas (tests/test_spark_cluster.py
    runs a pandas_udf on such a worker)."""
    import sys

    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    assert executor_python({}) == sys.executable
    monkeypatch.setenv("PYSPARK_PYTHON", "/opt/py/bin/python3")
    assert executor_python({}) == "/opt/py/bin/python3"
    assert executor_python({"spark.pyspark.python": "/srv/venv/bin/python"}) == "/srv/venv/bin/python"
