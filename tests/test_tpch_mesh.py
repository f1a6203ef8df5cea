"""End to end on real TPC-H data: the whole reference mesh at a small scale factor, and every finance report
equal to the TPC-H query run directly by DuckDB on the raw generated files."""

from __future__ import annotations

import hashlib
import hmac
import math
import shutil
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import TEST_SALT, ReferenceRun
from domains.tpch import TABLES
from mesh_assets import connect, load_mesh
from mesh_assets.governance.access import sensitive_columns

pytestmark = pytest.mark.slow  # an integration tier: `make test-fast` leaves it out

REPO = Path(__file__).parent.parent
QUERIES = Path(__file__).parent / "tpch_queries"
REPORTS = {
    "q1": "pricing_summary_report",
    "q3": "shipping_priority",
    "q5": "local_supplier_volume",
    "q6": "forecasting_revenue_change",
    "q10": "returned_item_reporting",
}


@pytest.fixture(scope="module")
def finance(reference_run: ReferenceRun) -> duckdb.DuckDBPyConnection:
    """The shared reference run read as finance, the reports' owner (Q10's customer columns are pii, masked for
    other readers)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in reference_run.env().items():
            mp.setenv(name, value)
        return connect(REPO, "finance")


def test_every_asset_materializes_with_every_check_passing(reference_run: ReferenceRun) -> None:
    summary = reference_run.summary
    assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
    tables = [a for a in summary.assets if not a.key.endswith("__rejects")]
    # 24 tables, 2 derived ones (sales metrics, customer labels); every bronze table has a rejects port
    assert len(tables) == 26 and len(summary.assets) == 26 + 8
    assert all(not a.warnings and not a.blocking and a.checks_passed > 0 for a in tables)
    assert all(a.rows == 0 for a in summary.assets if a.key.endswith("__rejects"))


def test_every_row_is_kept(reference_run: ReferenceRun, tpch_raw) -> None:
    rows = {a.key: a.rows for a in reference_run.summary.assets}
    count = {t: tpch_raw.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
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
def test_finance_report_equals_tpch_query_on_raw_files(finance, tpch_raw, query: str) -> None:
    expected = tpch_raw.execute((QUERIES / f"{query}.sql").read_text()).fetchall()
    actual = finance.execute(f"SELECT * FROM finance.{REPORTS[query]}").fetchall()
    assert expected, "the reference query returned nothing: the parameters or data are wrong"
    assert len(actual) == len(expected)
    key = lambda row: tuple(str(v) for v in row)  # noqa: E731 - rows as comparable tuples, order-free
    for got, want in zip(sorted(actual, key=key), sorted(expected, key=key)):
        assert len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want)), (got, want)


def test_cross_domain_column_lineage_is_recorded(reference_run: ReferenceRun) -> None:
    instance = reference_run.instance
    event = instance.get_latest_materialization_event(dg.AssetKey(["sales", "gold", "order_lines_wide"]))
    lineage = event.asset_materialization.metadata["dagster/column_lineage"].value.deps_by_column
    lines = dg.AssetKey(["sales", "silver", "order_lines"])
    assert set(lineage["revenue"]) == {dg.TableColumnDep(asset_key=lines, column_name="l_extendedprice"),
                                       dg.TableColumnDep(asset_key=lines, column_name="l_discount")}
    assert lineage["customer_nation"] == [
        dg.TableColumnDep(asset_key=dg.AssetKey(["customers", "gold", "customer_profile"]), column_name="n_name")]


def _hmac(value: str) -> str:
    return hmac.new(TEST_SALT.encode(), value.encode(), hashlib.sha256).hexdigest()


def _read_lake(reference_run: ReferenceRun, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point ``connect`` at the shared run's lake (the autouse fixture isolates each test from it)."""
    monkeypatch.setenv("MESH_STORAGE_ROOT", str(reference_run.lake))


def test_customer_pii_is_masked_for_sales_and_clear_for_the_granted_finance(reference_run, monkeypatch) -> None:
    _read_lake(reference_run, monkeypatch)
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


def test_restricted_supplier_profile_is_visible_to_its_grantee_only(reference_run, monkeypatch) -> None:
    _read_lake(reference_run, monkeypatch)
    with pytest.raises(duckdb.CatalogException):
        connect(REPO).sql("SELECT count(*) FROM supply.supplier_profile")
    with pytest.raises(duckdb.CatalogException):
        connect(REPO, "finance").sql("SELECT count(*) FROM supply.supplier_profile")
    assert connect(REPO, "sales").sql("SELECT count(*) FROM supply.supplier_profile").fetchall()[0][0] == 100


def _sorted(rows: list[tuple]) -> list[tuple]:
    return sorted(rows, key=repr)


def test_every_gold_port_reads_the_same_with_plain_pyiceberg(reference_run: ReferenceRun,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer outside the mesh: plain pyiceberg on the mesh's catalog, no mesh code, reads every gold port by
    its identifier and gets exactly the rows `mesh sql` (connect()) shows: in clear as the owner, and the masked
    copy's table as a reader without a PII grant."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("mesh", uri=f"sqlite:///{reference_run.lake}/catalog.db")
    for name, value in reference_run.env().items():
        monkeypatch.setenv(name, value)
    mesh = load_mesh(REPO)
    public = connect(REPO)
    compared = masked_compared = 0
    for domain in mesh.domains():
        owner = connect(REPO, domain.name)
        for table in domain.tables:
            if table.layer != "gold":
                continue
            outside = catalog.load_table(f"{domain.name}.gold__{table.name}").scan().to_arrow()
            mesh_rows = owner.execute(f'SELECT {", ".join(outside.column_names)} FROM '
                                      f'{domain.name}."{table.name}"').fetchall()
            assert _sorted([tuple(r.values()) for r in outside.to_pylist()]) == _sorted(mesh_rows), table.key
            compared += 1
            sensitive = sensitive_columns(table, mesh.settings.governance)
            if sensitive and table.visibility == "public":
                copy = catalog.load_table(f"{domain.name}.gold__{table.name}__masked").scan().to_arrow()
                shown = public.execute(f'SELECT {", ".join(copy.column_names)} FROM {domain.name}."{table.name}"')
                assert _sorted([tuple(r.values()) for r in copy.to_pylist()]) == _sorted(shown.fetchall())
                masked_compared += 1
    assert compared >= 8 and masked_compared >= 1


def test_a_month_run_again_replaces_that_month_only_and_finance_still_equals_tpch(reference_run: ReferenceRun,
                                                                                   tpch_raw, tmp_path: Path) -> None:
    """The reference mesh partitioned by month (docs/partitions.md): one month's orders and lines landed again
    and run alone replace that month's partitions of sales, keep every other month's files, rebuild the finance
    reports from every month, and the reports still equal the TPC-H queries on the raw files."""
    from conftest import restored
    from domains.tpch import copy_months
    from mesh_assets.engine.port_storage import PortStorage
    from mesh_assets.orchestration.runner import run_mesh

    month, key = "1995-05", ("sales", "gold", "order_lines_wide")
    landing = tmp_path / "landing"
    shutil.copytree(reference_run.landing, landing)
    copy_months(reference_run.landing, landing, [month])  # the month landed again: new files, same rows
    with restored(reference_run.lake) as lake, dg.instance_for_test() as instance, \
            pytest.MonkeyPatch.context() as mp:
        for name, value in {**reference_run.env(lake), "MESH_LANDING_ZONE": str(landing)}.items():
            mp.setenv(name, value)
        port = PortStorage(root=str(lake)).port(key)
        before = set(port.current_snapshot().files)
        summary = run_mesh(load_mesh(REPO), instance, partitions=(month, month))
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        assert {a.key for a in summary.assets if a.key.startswith(("customers/", "supply/"))} == {
            "customers/gold/customer_profile__labels"}  # reads sales; the dimensions are not rebuilt
        after = set(port.current_snapshot().files)
        assert len(before - after) == len(after - before) == 1  # the month's one file, replaced
        finance = connect(REPO, "finance")
        for query, report in REPORTS.items():
            expected = tpch_raw.execute((QUERIES / f"{query}.sql").read_text()).fetchall()
            actual = finance.execute(f"SELECT * FROM finance.{report}").fetchall()
            order = lambda row: tuple(str(v) for v in row)  # noqa: E731
            assert len(actual) == len(expected), report
            for got, want in zip(sorted(actual, key=order), sorted(expected, key=order)):
                assert all(_same(g, w) for g, w in zip(got, want)), (report, got, want)
