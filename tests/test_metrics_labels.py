"""Metrics and labels: declarations in contracts, their ports on the reference mesh at SF 0.01 (values equal to
plain DuckDB SQL over the raw TPC-H files), contract errors, ``since`` of labels and ``mesh metrics``."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from conftest import ReferenceRun, restored
from typer.testing import CliRunner

from mesh_assets import connect, load_mesh
from mesh_assets.cli.main import app
from mesh_assets.contract.labels import labels_sql
from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.model import Condition, Label
from mesh_assets.errors import ContractError
from mesh_assets.governance.access import AccessError
from mesh_assets.orchestration.assets import domain_assets
from mesh_assets.orchestration.runner import run_mesh

REPO = Path(__file__).parent.parent
DIMENSIONS = ("customer_nation", "c_mktsegment")
# The reference metrics recomputed from the raw files: (metric, period, nation, segment, value).
RAW_METRICS = """
WITH lines AS (
    SELECT l.l_orderkey, l.l_discount, l.l_receiptdate > l.l_commitdate AS late,
           l.l_extendedprice * (1 - l.l_discount) AS revenue, o.o_orderdate, n.n_name AS nation,
           c.c_mktsegment AS segment
    FROM lineitem AS l
    JOIN orders AS o ON o.o_orderkey = l.l_orderkey
    JOIN customer AS c ON c.c_custkey = o.o_custkey
    JOIN nation AS n ON n.n_nationkey = c.c_nationkey
)
SELECT 'revenue', CAST(date_trunc('month', o_orderdate) AS DATE), nation, segment, CAST(sum(revenue) AS DOUBLE)
FROM lines GROUP BY ALL
UNION ALL
SELECT 'order_count', CAST(date_trunc('month', o_orderdate) AS DATE), nation, segment, count(DISTINCT l_orderkey)
FROM lines GROUP BY ALL
UNION ALL
SELECT 'average_discount', CAST(date_trunc('month', o_orderdate) AS DATE), nation, segment,
       avg(CAST(l_discount AS DOUBLE))
FROM lines GROUP BY ALL
UNION ALL
SELECT 'late_shipment_rate', CAST(date_trunc('month', o_orderdate) AS DATE), nation, segment,
       avg(CASE WHEN late THEN 1 ELSE 0 END)
FROM lines GROUP BY ALL
"""
# The reference labels recomputed from the raw files: (c_custkey, label, value).
RAW_LABELS = """
WITH totals AS (
    SELECT c.c_custkey, coalesce(sum(l.l_extendedprice * (1 - l.l_discount)), 0) AS total, max(o.o_orderdate) AS last
    FROM customer AS c
    LEFT JOIN orders AS o ON o.o_custkey = c.c_custkey
    LEFT JOIN lineitem AS l ON l.l_orderkey = o.o_orderkey
    GROUP BY c.c_custkey
), data_end AS (SELECT max(o_orderdate) AS day FROM orders)
SELECT c_custkey, 'value_tier',
       CASE WHEN total >= 3000000 THEN 'high' WHEN total >= 1000000 THEN 'medium' ELSE 'low' END
FROM totals
UNION ALL
SELECT c_custkey, 'at_risk', CASE WHEN last IS NULL OR last <= day - 365 THEN 'true' ELSE 'false' END
FROM totals, data_end
"""


@pytest.fixture(scope="module")
def reader(reference_run: ReferenceRun) -> duckdb.DuckDBPyConnection:
    """The shared reference run read as a reader outside the domains."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in reference_run.env().items():
            mp.setenv(name, value)
        return connect(REPO)


@pytest.mark.slow  # the reference mesh on TPC-H
def test_metrics_and_labels_ports_materialize_with_their_checks(reference_run: ReferenceRun) -> None:
    summary = reference_run.summary
    assets = {a.key: a for a in summary.assets}
    assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
    for key in ("sales/gold/order_lines_wide__metrics", "customers/gold/customer_profile__labels"):
        assert assets[key].status == "materialized" and not assets[key].warnings + assets[key].blocking
        assert assets[key].checks_passed >= 4  # schema, primary_key, *_required


@pytest.mark.slow  # the reference mesh on TPC-H
def test_metric_values_equal_plain_duckdb_on_raw_files(reader, tpch_raw) -> None:
    con, raw = reader, tpch_raw
    expected = {(m, p, n, s): v for m, p, n, s, v in raw.execute(RAW_METRICS).fetchall()}
    rows = con.execute("SELECT metric, period, dimensions, value FROM sales.order_lines_wide__metrics").fetchall()
    actual = {}
    for metric, period, dimensions, value in rows:
        dims = json.loads(dimensions)
        assert list(dims) == list(DIMENSIONS)
        actual[(metric, period, dims["customer_nation"], dims["c_mktsegment"])] = value
    assert len(actual) == len(rows) == len(expected) > 4 * 25 * 5
    assert actual.keys() == expected.keys()
    differing = [(k, actual[k], v) for k, v in expected.items() if not math.isclose(actual[k], float(v), rel_tol=1e-9)]
    assert not differing, differing[:5]
    assert all(isinstance(p, dt.date) and p.day == 1 for _, p, _, _ in actual)


@pytest.mark.slow  # the reference mesh on TPC-H
def test_label_values_equal_plain_duckdb_on_raw_files(reader, tpch_raw) -> None:
    con, raw = reader, tpch_raw
    expected = sorted(raw.execute(RAW_LABELS).fetchall())
    actual = sorted(con.execute("SELECT c_custkey, label, value FROM customers.customer_profile__labels").fetchall())
    assert actual == expected
    tiers = {v for _, label, v in actual if label == "value_tier"}
    risks = {v for _, label, v in actual if label == "at_risk"}
    assert tiers == {"high", "medium", "low"} and risks == {"true", "false"}  # the thresholds separate customers


@pytest.mark.slow  # the reference mesh on TPC-H
def test_unchanged_labels_keep_since_across_runs(reference_run: ReferenceRun, instance, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    with restored(reference_run.lake) as lake:  # this test runs customers again: the shared lake, restored after
        _labels_keep_since(reference_run, lake, instance, monkeypatch)


def _labels_keep_since(reference_run: ReferenceRun, lake: Path, instance, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in reference_run.env(lake).items():
        monkeypatch.setenv(name, value)
    query = "SELECT c_custkey, label, value, since FROM customers.customer_profile__labels"
    before = sorted(connect(REPO).execute(query).fetchall())
    assert len({since for *_, since in before}) == 1  # one run, one time
    summary = run_mesh(load_mesh(REPO), instance, ["customers"])
    assert summary.success
    after = sorted(connect(REPO).execute(query).fetchall())
    assert after == before


def test_since_changes_only_where_the_value_changed() -> None:
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("CREATE TABLE prev AS SELECT * FROM (VALUES (1, 'tier', 'high', ?::TIMESTAMPTZ), "
                "(2, 'tier', 'low', ?::TIMESTAMPTZ)) AS t(k, label, value, since)", [old, old])
    con.execute("CREATE SCHEMA previous")  # what every step registers: the table's published snapshot
    con.execute("CREATE VIEW previous.accounts__labels AS SELECT * FROM prev")
    con.execute("CREATE SCHEMA gold")
    con.execute("CREATE VIEW gold.accounts AS SELECT * FROM (VALUES (1, 50), (2, 70), (3, 30)) AS t(k, amount)")
    label = Label("tier", "by amount", ("k",), "SELECT * FROM gold.accounts", None,
                  (Condition("high", "amount >= 40"), Condition("low", "amount < 20")))
    rows = con.execute(labels_sql("accounts", [label], {"k": "BIGINT"}) + " ORDER BY k").fetchall()
    assert [(k, v) for k, _, v, _ in rows] == [(1, "high"), (2, "high")]  # 3 matches no condition: no row
    assert rows[0][3] == old and rows[1][3] > old


def test_metrics_are_asset_metadata_and_listed_by_the_cli() -> None:
    mesh = load_mesh(REPO)
    specs = {k: s for a in domain_assets(mesh, mesh.domain("sales")) for k, s in a.specs_by_key.items()}
    declared = specs[dg.AssetKey(["sales", "gold", "order_lines_wide"])].metadata["metrics"].value
    assert [m["name"] for m in declared] == ["revenue", "order_count", "average_discount", "late_shipment_rate"]
    metrics_spec = specs[dg.AssetKey(["sales", "gold", "order_lines_wide__metrics"])]
    assert {d.asset_key for d in metrics_spec.deps} == {dg.AssetKey(["sales", "gold", "order_lines_wide"])}
    result = CliRunner().invoke(app, ["metrics", "--format", "json", "--root", str(REPO)])
    assert result.exit_code == 0, result.output
    listed = {m["name"]: m for m in json.loads(result.stdout)}
    assert listed["late_shipment_rate"] == {
        "product": "sales.order_lines_wide", "table": "order_lines_wide", "name": "late_shipment_rate",
        "description": "Share of order lines received after the date the supplier committed to.",
        "owner": "sales-operations", "expression": "avg(CASE WHEN l_receiptdate > l_commitdate THEN 1 ELSE 0 END)",
        "dimensions": ["customer_nation", "c_mktsegment"], "time": "o_orderdate", "grain": "month", "unit": "ratio"}
    assert listed["revenue"]["unit"] == "USD" and listed["order_count"]["expression"] == "count(DISTINCT l_orderkey)"
    table = CliRunner().invoke(app, ["metrics", "--root", str(REPO)])
    assert table.exit_code == 0 and "late_shipment_rate" in table.stdout and "4 metric(s)" in table.stdout


GOOD_METRIC = """          - name: revenue
            description: Revenue.
            expression: sum(revenue)
            dimensions: [customer_nation]
            time: o_orderdate
            grain: month
            unit: USD
"""


@pytest.fixture
def sales_copy(tmp_path: Path) -> Path:
    """A copy of the sales domain whose contract's metrics are replaced by test declarations."""
    shutil.copytree(REPO / "domains" / "sales", tmp_path / "sales")
    return tmp_path / "sales" / "products" / "order_lines_wide.yaml"


def _with_metrics(contract: Path, declarations: str) -> None:
    text = contract.read_text()
    start = text.index("      - property: metrics")
    end = text.index("    properties:", start)
    contract.write_text(text[:start] + "      - property: metrics\n        value:\n" + declarations + text[end:])


@pytest.mark.parametrize(("declarations", "field", "message"), [
    (GOOD_METRIC.replace("sum(revenue)", "revenue * 2"), "value[0].expression", "aggregates nothing"),
    (GOOD_METRIC.replace("sum(revenue)", "sum(no_such_column)"), "value[0].expression",
     "'no_such_column', which is not a column"),
    (GOOD_METRIC.replace("sum(revenue)", "sum(revenue) OVER ()"), "value[0].expression", "window function"),
    (GOOD_METRIC.replace("sum(revenue)", "sum(revenue"), "value[0].expression", "is not valid DuckDB SQL"),
    (GOOD_METRIC.replace("[customer_nation]", "[customer_nation, nation]"), "value[0].dimensions[1]",
     "dimension 'nation' of metric 'revenue' is not a column"),
    (GOOD_METRIC.replace("grain: month", "grain: fortnight"), "value[0].grain", "use one of day, week, month"),
    (GOOD_METRIC.replace("time: o_orderdate", "time: revenue"), "value[0].time", "date or timestamp column"),
    (GOOD_METRIC + GOOD_METRIC, "value[1].name", "metric 'revenue' is declared twice"),
    (GOOD_METRIC.replace("name: revenue", "name: Revenue"), "value[0].name", "must be snake_case"),
    (GOOD_METRIC.replace("unit: USD", "units: USD"), "value[0].units", "unknown metric field(s) units"),
])
def test_bad_metric_declarations_are_contract_errors(sales_copy: Path, declarations: str, field: str,
                                                     message: str) -> None:
    _with_metrics(sales_copy, declarations)
    with pytest.raises(ContractError) as info:
        load_contract(sales_copy, "sales", "sales-operations")
    text = str(info.value)
    assert str(sales_copy) in text and f"customProperties[2].{field} (line " in text and message in text, text


def test_metrics_only_on_gold_tables(sales_copy: Path) -> None:
    source = '      - property: source\n        value: {path: "tpch/orders/{month}/*.csv"'
    assert source in sales_copy.read_text()
    text = sales_copy.read_text().replace(source, "      - property: metrics\n        value: []\n" + source, 1)
    sales_copy.write_text(text)
    with pytest.raises(ContractError, match="only gold tables declare metrics"):
        load_contract(sales_copy, "sales", "sales-operations")


@pytest.fixture
def customers_copy(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "domains" / "customers", tmp_path / "customers")
    return tmp_path / "customers" / "products" / "customer_profile.yaml"


@pytest.mark.parametrize(("old", "new", "message"), [
    ("entity: [c_custkey]\n            query: |\n              SELECT c.c_custkey, coalesce",
     "entity: [c_id]\n            query: |\n              SELECT c.c_custkey, coalesce", "entity ['c_id'] of label"),
    ("- {value: high, when: total_revenue >= 3000000}", "- {value: high, when: revenue >= 3000000}",
     "reads 'revenue', which the query does not return"),
    ("- {value: high, when: total_revenue >= 3000000}", "- {value: high}", "only the last entry may omit 'when'"),
    ("SELECT c.c_custkey, coalesce", "SELECT c.c_nationkey, coalesce", "returns no column c_custkey"),
    ("rule: last_order IS NULL", "rule: last_order IS NULL IS", "is not valid DuckDB SQL"),
])
def test_bad_label_declarations_are_contract_errors(customers_copy: Path, old: str, new: str, message: str) -> None:
    text = customers_copy.read_text()
    assert text.count(old) == 1
    customers_copy.write_text(text.replace(old, new))
    with pytest.raises(ContractError) as info:
        load_contract(customers_copy, "customers", "customer-success")
    assert message in str(info.value) and "customProperties[2].value[" in str(info.value), str(info.value)


def test_label_queries_follow_the_access_rules(tmp_path: Path) -> None:
    """A label query reading a restricted port its domain holds no grant to fails the load, like any SQL."""
    root = tmp_path / "mesh"
    shutil.copytree(REPO / "domains", root / "domains", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "dbt", root / "dbt")  # customer_profile is built by a dbt model
    shutil.copy(REPO / "mesh.yaml", root / "mesh.yaml")
    contract = root / "domains" / "customers" / "products" / "customer_profile.yaml"
    contract.write_text(contract.read_text().replace(
        "(SELECT max(o_orderdate) FROM sales.order_lines_wide) AS data_end",
        "(SELECT max(s_acctbal) FROM supply.supplier_profile) AS data_end"))
    mesh = load_mesh(root)
    with pytest.raises(AccessError) as info:
        domain_assets(mesh, mesh.domain("customers"))
    assert "supply.supplier_profile is a restricted output port" in str(info.value)
    assert "customer_profile.yaml#customer_profile__labels" in str(info.value)
    assert "mesh access request supply.supplier_profile --for customers" in str(info.value)


@pytest.mark.slow  # the reference mesh on TPC-H
def test_the_catalog_shows_metric_and_label_definitions(reference_run: ReferenceRun, tmp_path: Path,
                                                       monkeypatch) -> None:
    from mesh_assets.catalog import build_catalog

    for name, value in reference_run.env().items():
        monkeypatch.setenv(name, value)
    build_catalog(load_mesh(REPO), tmp_path / "catalog", reference_run.instance)
    sales = (tmp_path / "catalog" / "products" / "sales.order_lines_wide.html").read_text()
    assert "<h3>Metrics" in sales and all(f"<code>{m}</code>" in sales for m in
                                         ("revenue", "order_count", "average_discount", "late_shipment_rate"))
    customers = (tmp_path / "catalog" / "products" / "customers.customer_profile.html").read_text()
    assert "<h3>Labels" in customers and "<code>value_tier</code>" in customers and "<code>at_risk</code>" in customers
