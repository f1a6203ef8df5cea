"""End to end on real TPC-H data: the whole reference mesh at a small scale factor, and every finance report
equal to the TPC-H query run directly by DuckDB on the raw generated files."""

from __future__ import annotations

import hashlib
import hmac
import math
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import TEST_SALT
from domains.tpch import TABLES, land_tpch
from mesh_assets import connect, load_mesh
from mesh_assets.runner import run_mesh

pytestmark = pytest.mark.slow  # an integration tier: `make test-fast` leaves it out

REPO = Path(__file__).parent.parent
QUERIES = Path(__file__).parent / "tpch_queries"
SCALE_FACTOR = 0.01
# TPC-H specification §1.4.1 column types (as in dbgen's dss.ddl), so the reference never borrows our contracts.
RAW_DDL = {
    "nation": "n_nationkey INTEGER, n_name VARCHAR, n_regionkey INTEGER, n_comment VARCHAR",
    "region": "r_regionkey INTEGER, r_name VARCHAR, r_comment VARCHAR",
    "part": "p_partkey INTEGER, p_name VARCHAR, p_mfgr VARCHAR, p_brand VARCHAR, p_type VARCHAR, p_size INTEGER, "
            "p_container VARCHAR, p_retailprice DECIMAL(15,2), p_comment VARCHAR",
    "supplier": "s_suppkey INTEGER, s_name VARCHAR, s_address VARCHAR, s_nationkey INTEGER, s_phone VARCHAR, "
                "s_acctbal DECIMAL(15,2), s_comment VARCHAR",
    "partsupp": "ps_partkey INTEGER, ps_suppkey INTEGER, ps_availqty INTEGER, ps_supplycost DECIMAL(15,2), "
                "ps_comment VARCHAR",
    "customer": "c_custkey INTEGER, c_name VARCHAR, c_address VARCHAR, c_nationkey INTEGER, c_phone VARCHAR, "
                "c_acctbal DECIMAL(15,2), c_mktsegment VARCHAR, c_comment VARCHAR",
    "orders": "o_orderkey INTEGER, o_custkey INTEGER, o_orderstatus VARCHAR, o_totalprice DECIMAL(15,2), "
              "o_orderdate DATE, o_orderpriority VARCHAR, o_clerk VARCHAR, o_shippriority INTEGER, o_comment VARCHAR",
    "lineitem": "l_orderkey INTEGER, l_partkey INTEGER, l_suppkey INTEGER, l_linenumber INTEGER, "
                "l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), "
                "l_tax DECIMAL(15,2), l_returnflag VARCHAR, l_linestatus VARCHAR, l_shipdate DATE, "
                "l_commitdate DATE, l_receiptdate DATE, l_shipinstruct VARCHAR, l_shipmode VARCHAR, l_comment VARCHAR",
}
REPORTS = {
    "q1": "pricing_summary_report",
    "q3": "shipping_priority",
    "q5": "local_supplier_volume",
    "q6": "forecasting_revenue_change",
    "q10": "returned_item_reporting",
}


@pytest.fixture(scope="module")
def tpch_run(tmp_path_factory: pytest.TempPathFactory):
    """The reference mesh materialized once at SF 0.01 into temporary storage."""
    base = tmp_path_factory.mktemp("tpch")
    landing, lake = base / "landing", base / "lake"
    land_tpch(landing, SCALE_FACTOR)
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        mp.setenv("MESH_LANDING_ZONE", str(landing))
        mp.setenv("MESH_STORAGE_ROOT", str(lake))
        mp.setenv("MESH_PII_SALT", TEST_SALT)
        summary = run_mesh(load_mesh(REPO), instance)
        # read as finance, the reports' owner: Q10's customer columns are pii, masked for other readers
        yield summary, connect(REPO, "finance"), landing / "tpch", instance


@pytest.fixture(scope="module")
def raw(tpch_run) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in TABLES:
        con.execute(f"CREATE TABLE {table} ({RAW_DDL[table]})")
        con.execute(f"COPY {table} FROM '{tpch_run[2] / f'{table}.csv'}' (HEADER, DELIMITER ',')")
    return con


def test_every_asset_materializes_with_every_check_passing(tpch_run) -> None:
    summary = tpch_run[0]
    assert summary.success, [(a.key, a.status, a.failed_checks) for a in summary.assets]
    tables = [a for a in summary.assets if not a.key.endswith("__rejects")]
    # 24 tables, 2 derived ones (sales metrics, customer labels); every bronze table has a rejects port
    assert len(tables) == 26 and len(summary.assets) == 26 + 8
    assert all(a.checks_failed == 0 and a.checks_passed > 0 for a in tables)
    assert all(a.rows == 0 for a in summary.assets if a.key.endswith("__rejects"))


def test_every_row_is_kept(tpch_run, raw) -> None:
    rows = {a.key: a.rows for a in tpch_run[0].assets}
    count = {t: raw.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
    assert rows["sales/bronze/lineitem"] == rows["sales/gold/order_lines_wide"] == count["lineitem"]
    assert rows["sales/bronze/orders"] == rows["sales/silver/order_headers"] == count["orders"]
    assert rows["customers/gold/customer_profile"] == count["customer"]
    assert rows["supply/gold/part_catalog"] == count["part"]
    assert rows["supply/gold/supplier_profile"] == count["supplier"]


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    if isinstance(a, Decimal) and isinstance(b, Decimal):
        return a == b
    return a == b


@pytest.mark.parametrize("query", sorted(REPORTS))
def test_finance_report_equals_tpch_query_on_raw_files(tpch_run, raw, query: str) -> None:
    expected = raw.execute((QUERIES / f"{query}.sql").read_text()).fetchall()
    actual = tpch_run[1].execute(f"SELECT * FROM finance.{REPORTS[query]}").fetchall()
    assert expected, "the reference query returned nothing: the parameters or data are wrong"
    assert len(actual) == len(expected)
    key = lambda row: tuple(str(v) for v in row)  # noqa: E731 - rows as comparable tuples, order-free
    for got, want in zip(sorted(actual, key=key), sorted(expected, key=key)):
        assert len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want)), (got, want)


def test_cross_domain_column_lineage_is_recorded(tpch_run) -> None:
    instance = tpch_run[3]
    event = instance.get_latest_materialization_event(dg.AssetKey(["sales", "gold", "order_lines_wide"]))
    lineage = event.asset_materialization.metadata["dagster/column_lineage"].value.deps_by_column
    lines = dg.AssetKey(["sales", "silver", "order_lines"])
    assert set(lineage["revenue"]) == {dg.TableColumnDep(asset_key=lines, column_name="l_extendedprice"),
                                       dg.TableColumnDep(asset_key=lines, column_name="l_discount")}
    assert lineage["customer_nation"] == [
        dg.TableColumnDep(asset_key=dg.AssetKey(["customers", "gold", "customer_profile"]), column_name="n_name")]


def _hmac(value: str) -> str:
    return hmac.new(TEST_SALT.encode(), value.encode(), hashlib.sha256).hexdigest()


def _read_lake(tpch_run, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point ``connect`` at the fixture's lake (the autouse fixture isolates each test from it)."""
    monkeypatch.setenv("MESH_STORAGE_ROOT", str(tpch_run[2].parent.parent / "lake"))


def test_customer_pii_is_masked_for_sales_and_clear_for_the_granted_finance(tpch_run, monkeypatch) -> None:
    _read_lake(tpch_run, monkeypatch)
    owner = dict(connect(REPO, "customers").sql("SELECT c_custkey, c_name FROM customers.customer_profile").fetchall())
    sales = connect(REPO, "sales").sql("SELECT DISTINCT o_custkey, c_name FROM sales.order_lines_wide").fetchall()
    assert sales and all(name == _hmac(owner[key]) for key, name in sales)
    finance = connect(REPO, "finance").sql(
        "SELECT c_custkey, c_name, c_phone FROM finance.returned_item_reporting").fetchall()
    assert finance and all(name == owner[key] for key, name, _ in finance)
    public = connect(REPO).sql("SELECT c_custkey, c_name FROM finance.returned_item_reporting").fetchall()
    assert public and all(name == _hmac(owner[key]) for key, name in public)  # republished pii stays masked
    anonymous = connect(REPO).sql("SELECT c_name, c_phone, c_mktsegment FROM customers.customer_profile").fetchall()
    assert all(len(n) == 64 and len(p) == 64 and len(s) < 11 for n, p, s in anonymous)


def test_restricted_supplier_profile_is_visible_to_its_grantee_only(tpch_run, monkeypatch) -> None:
    _read_lake(tpch_run, monkeypatch)
    with pytest.raises(duckdb.CatalogException):
        connect(REPO).sql("SELECT count(*) FROM supply.supplier_profile")
    with pytest.raises(duckdb.CatalogException):
        connect(REPO, "finance").sql("SELECT count(*) FROM supply.supplier_profile")
    assert connect(REPO, "sales").sql("SELECT count(*) FROM supply.supplier_profile").fetchall()[0][0] == 100
