"""Data profiles (mesh_assets.engine.profile) on small real DuckDB tables: exact aggregates, quoting, types,
the query budget, the Dagster metadata value and the JSON file."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import fsspec
import pytest

from mesh_assets.engine.profile import profile_metadata, profile_relation, write_profile


@pytest.fixture
def con(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    """``silver.orders``: a view over Parquet, like a port, with nulls, decimals, dates and a status column."""
    connection = duckdb.connect()
    connection.execute(f"""
        COPY (SELECT * FROM (VALUES
            (1, 1.50::DECIMAL(10,2), DATE '2024-03-01', 'F', true,  TIMESTAMP '2024-01-01 10:00:00'),
            (2, 2.25,                DATE '2024-01-31', 'O', false, NULL),
            (3, NULL,                DATE '2024-12-01', 'F', NULL,  TIMESTAMP '2024-06-30 23:59:59'),
            (4, 10.00,               NULL,              'P', true,  NULL),
            (5, NULL,                DATE '2024-02-29', 'O', true,  NULL),
            (6, 3.00,                NULL,              'F', NULL,  NULL),
            (7, 4.00,                DATE '2024-05-05', NULL, false, NULL),
            (8, 5.00,                DATE '2024-06-06', 'F', true,  NULL)
        ) AS t(order_id, amount, order_date, status, paid, shipped_at))
        TO '{tmp_path / "orders.parquet"}' (FORMAT parquet)""")
    connection.execute("CREATE SCHEMA silver")
    connection.execute(f"CREATE VIEW silver.orders AS SELECT * FROM read_parquet('{tmp_path / 'orders.parquet'}')")
    return connection


def by_column(profile: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["column"]: c for c in profile}


def test_one_dict_per_column_in_order_with_duckdb_types(con):
    profile = profile_relation(con, "silver.orders")
    assert [(c["column"], c["type"]) for c in profile] == [
        ("order_id", "INTEGER"), ("amount", "DECIMAL(10,2)"), ("order_date", "DATE"), ("status", "VARCHAR"),
        ("paid", "BOOLEAN"), ("shipped_at", "TIMESTAMP")]
    assert all(c["rows"] == 8 for c in profile)


def test_exact_null_counts_and_percent(con):
    p = by_column(profile_relation(con, "silver.orders"))
    assert {name: (c["nulls"], c["null_percent"]) for name, c in p.items()} == {
        "order_id": (0, 0.0), "amount": (2, 25.0), "order_date": (2, 25.0), "status": (1, 12.5),
        "paid": (2, 25.0), "shipped_at": (6, 75.0)}


def test_null_percent_is_rounded_to_four_places():
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1), (NULL), (3)) v(x)")
    [column] = profile_relation(con, "t")
    assert (column["nulls"], column["null_percent"]) == (1, 33.3333)


def test_min_max_mean_on_decimals_dates_booleans_timestamps(con):
    p = by_column(profile_relation(con, "silver.orders"))
    amount = p["amount"]
    assert (amount["min"], amount["max"]) == ("1.50", "10.00")
    assert amount["mean"] == pytest.approx((1.50 + 2.25 + 10.00 + 3.00 + 4.00 + 5.00) / 6, abs=1e-12)
    assert (p["order_date"]["min"], p["order_date"]["max"], p["order_date"]["mean"]) == (
        "2024-01-31", "2024-12-01", None)  # ordered as dates: 2024-01-31 < 2024-02-29 < … < 2024-12-01
    assert (p["order_id"]["min"], p["order_id"]["max"], p["order_id"]["mean"]) == ("1", "8", 4.5)
    assert (p["paid"]["min"], p["paid"]["max"], p["paid"]["mean"]) == ("false", "true", None)
    assert (p["shipped_at"]["min"], p["shipped_at"]["max"]) == ("2024-01-01 10:00:00", "2024-06-30 23:59:59")
    assert (p["status"]["min"], p["status"]["max"], p["status"]["mean"]) == ("F", "P", None)


def test_all_null_column_has_no_min_max_mean():
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT CAST(NULL AS DECIMAL(9,3)) AS x FROM range(4)")
    [x] = profile_relation(con, "t")
    assert (x["nulls"], x["null_percent"], x["approx_distinct"], x["min"], x["max"], x["mean"], x["top_values"]) \
        == (4, 100.0, 0, None, None, None, [])


def test_top_values_most_frequent_first_ties_by_value_nulls_left_out(con):
    p = by_column(profile_relation(con, "silver.orders"))
    assert p["status"]["approx_distinct"] == 3
    assert p["status"]["top_values"] == [
        {"value": "F", "rows": 4}, {"value": "O", "rows": 2}, {"value": "P", "rows": 1}]
    assert p["paid"]["top_values"] == [{"value": "true", "rows": 4}, {"value": "false", "rows": 2}]
    # order_date: six dates once each → a tie, broken by the date itself
    assert [t["value"] for t in p["order_date"]["top_values"]] == [
        "2024-01-31", "2024-02-29", "2024-03-01", "2024-05-05", "2024-06-06"]


def test_top_value_ties_are_broken_by_value_not_by_hash_order():
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT 'v' || ((i * 7919) % 1000) AS s FROM range(100000) r(i)")  # 100 each
    [s] = profile_relation(con, "t", top_values=5, low_cardinality=10_000)
    assert s["top_values"] == [{"value": v, "rows": 100} for v in ("v0", "v1", "v10", "v100", "v101")]


def test_top_values_limit(con):
    p = by_column(profile_relation(con, "silver.orders", top_values=2))
    assert p["status"]["top_values"] == [{"value": "F", "rows": 4}, {"value": "O", "rows": 2}]
    assert all(c["top_values"] == [] for c in profile_relation(con, "silver.orders", top_values=0))


def test_low_cardinality_cut_off():
    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT i % 10 AS ten, i % 3 AS three FROM range(30) r(i)")
    p = by_column(profile_relation(con, "t", top_values=3, low_cardinality=9))
    assert (p["ten"]["approx_distinct"], p["three"]["approx_distinct"]) == (10, 3)
    assert p["ten"]["top_values"] == []  # 10 > 9
    assert p["three"]["top_values"] == [{"value": "0", "rows": 10}, {"value": "1", "rows": 10},
                                        {"value": "2", "rows": 10}]
    at_limit = by_column(profile_relation(con, "t", top_values=3, low_cardinality=10))
    assert at_limit["ten"]["top_values"] == [{"value": "0", "rows": 3}, {"value": "1", "rows": 3},
                                             {"value": "2", "rows": 3}]


def test_one_scan_plus_one_grouping_sets_query_for_the_top_values(con):
    """The performance contract: every per-column aggregate in ONE query, then every listed column's top values
    in one more (a grouping set per column)."""
    executed: list[tuple[str, str]] = []

    class Recording:
        def __getattr__(self, name):
            return getattr(con, name)

        def execute(self, query, *args):
            executed.append(("execute", query))
            return con.execute(query, *args)

        def sql(self, query, *args):
            executed.append(("sql", query))
            return con.sql(query, *args)

    profile = profile_relation(Recording(), "silver.orders", low_cardinality=2)  # type: ignore[arg-type]
    listed = [c["column"] for c in profile if c["top_values"]]
    assert listed == ["paid", "shipped_at"]  # 2 distinct each; status has 3
    assert [kind for kind, _ in executed] == ["sql", "execute", "execute"]  # sql: a lazy bind
    scan, tops = executed[1][1], executed[2][1]
    assert "GROUP BY" not in scan and scan.count("approx_count_distinct(") == 6
    assert "GROUPING SETS ((\"paid\"), (\"shipped_at\"))" in tops


def test_top_values_of_many_columns_equal_one_group_by_each(con):
    """The grouping-sets query lists exactly what a GROUP BY per column lists: counts, ties by value in the
    column's own order (numbers as numbers, dates as dates), nulls left out, whatever the other columns hold."""
    con.execute("CREATE TABLE many AS SELECT CASE WHEN i % 7 = 0 THEN NULL ELSE i % 4 END AS small, "
                "(i % 11) * 1.5 AS dec, DATE '2024-01-01' + (i % 3)::INTEGER AS day, i % 2 = 0 AS flag, "
                "CASE WHEN i % 5 = 0 THEN NULL ELSE chr(CAST(65 + i % 6 AS INTEGER)) END AS letter, 'only' AS const, "
                "CAST(NULL AS VARCHAR) AS empty FROM range(100) t(i)")
    profile = by_column(profile_relation(con, "many", top_values=3, low_cardinality=20))
    for column in ("small", "dec", "day", "flag", "letter", "const", "empty"):
        expected = con.execute(f'SELECT CAST("{column}" AS VARCHAR), count(*) FROM many WHERE "{column}" IS NOT '
                               f'NULL GROUP BY "{column}" ORDER BY count(*) DESC, "{column}" LIMIT 3').fetchall()
        assert profile[column]["top_values"] == [{"value": v, "rows": n} for v, n in expected], column


def test_column_names_needing_quotes_and_a_quoted_relation():
    con = duckdb.connect()
    con.execute('CREATE SCHEMA "Sales Data"')
    con.execute('CREATE TABLE "Sales Data"."Order Lines" AS SELECT * FROM (VALUES '
                "(1, 'a', 2.5, 'x'), (2, 'a', NULL, 'y'), (3, NULL, 4.5, 'x')"
                ') v("order id", "Select", "Amount", "we""ird")')
    profile = profile_relation(con, '"Sales Data"."Order Lines"')
    p = by_column(profile)
    assert [c["column"] for c in profile] == ["order id", "Select", "Amount", 'we"ird']
    assert (p["order id"]["min"], p["order id"]["max"], p["order id"]["mean"]) == ("1", "3", 2.0)
    assert (p["Select"]["nulls"], p["Select"]["top_values"]) == (1, [{"value": "a", "rows": 2}])
    assert (p["Amount"]["nulls"], p["Amount"]["mean"]) == (1, 3.5)
    assert p['we"ird']["top_values"] == [{"value": "x", "rows": 2}, {"value": "y", "rows": 1}]


def test_empty_relation():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (n INTEGER, d DECIMAL(15,2), s VARCHAR, l INTEGER[])")
    profile = profile_relation(con, "t")
    assert [c["column"] for c in profile] == ["n", "d", "s", "l"]
    for c in profile:
        assert (c["rows"], c["nulls"], c["null_percent"], c["approx_distinct"]) == (0, 0, 0.0, 0)
        assert isinstance(c["null_percent"], float)
        assert (c["min"], c["max"], c["mean"], c["top_values"]) == (None, None, None, [])


def test_nested_columns_get_counts_only():
    con = duckdb.connect()
    con.execute("""CREATE TABLE t AS SELECT * FROM (VALUES
        ([1, 2], {'a': 1}, MAP {'k': 1}, 1),
        ([1, 2], {'a': 1}, MAP {'k': 1}, 2),
        (NULL,   NULL,     NULL,         3),
        ([3],    {'a': 2}, MAP {'k': 2}, 4)
    ) v(tags, point, attrs, n)""")
    p = by_column(profile_relation(con, "t"))
    assert (p["tags"]["type"], p["point"]["type"], p["attrs"]["type"]) == (
        "INTEGER[]", "STRUCT(a INTEGER)", "MAP(VARCHAR, INTEGER)")
    for name in ("tags", "point", "attrs"):
        c = p[name]
        assert (c["rows"], c["nulls"], c["null_percent"], c["approx_distinct"]) == (4, 1, 25.0, 2), name
        assert (c["min"], c["max"], c["mean"], c["top_values"]) == (None, None, None, []), name
    assert (p["n"]["min"], p["n"]["max"], p["n"]["mean"]) == ("1", "4", 2.5)  # the scalar beside them


def test_bad_arguments_and_missing_relation(con):
    with pytest.raises(ValueError, match="top_values"):
        profile_relation(con, "silver.orders", top_values=-1)
    with pytest.raises(duckdb.CatalogException):
        profile_relation(con, "silver.no_such_table")


def test_metadata_records(con):
    profile = profile_relation(con, "silver.orders", top_values=2)
    value = profile_metadata(profile)
    assert isinstance(value, dg.TableMetadataValue)
    assert [c.name for c in value.schema.columns] == [
        "column", "type", "null_percent", "approx_distinct", "min", "max", "mean", "top_values"]
    records = {r.data["column"]: r.data for r in value.records}
    assert list(records) == ["order_id", "amount", "order_date", "status", "paid", "shipped_at"]
    assert records["status"] == {"column": "status", "type": "VARCHAR", "null_percent": 12.5, "approx_distinct": 3,
                                 "min": "F", "max": "P", "mean": None, "top_values": "F (4), O (2)"}
    assert (records["amount"]["min"], records["amount"]["mean"]) == ("1.50", pytest.approx(25.75 / 6))
    assert records["shipped_at"]["top_values"] == "2024-01-01 10:00:00 (1), 2024-06-30 23:59:59 (1)"
    dg.TableMetadataValue(records=value.records, schema=value.schema)  # Dagster accepts what it shows


def test_metadata_shortens_long_strings_only():
    long = "x" * 100
    column = {"column": "c", "type": "VARCHAR", "rows": 1, "nulls": 0, "null_percent": 0.0, "approx_distinct": 1,
              "min": long, "max": long, "mean": None, "top_values": [{"value": long, "rows": 1}]}
    [record] = profile_metadata([column]).records
    assert record.data["min"] == "x" * 39 + "…" and len(record.data["min"]) == 40
    assert record.data["top_values"] == "x" * 39 + "… (1)"


@pytest.mark.parametrize("protocol", ["file", "memory"])
def test_write_profile_round_trip(con, tmp_path, protocol):
    con.execute("CREATE TABLE silver.cities AS SELECT * FROM (VALUES ('Zürich'), ('Zürich'), ('東京')) v(city)")
    profile = profile_relation(con, "silver.orders") + profile_relation(con, "silver.cities")
    fs = fsspec.filesystem(protocol)
    folder = str(tmp_path) if protocol == "file" else f"/test_profile_{uuid.uuid4().hex}"
    fs.makedirs(folder, exist_ok=True)
    path = f"{folder}/profile.json"
    try:
        write_profile(profile, fs, path)
        raw = fs.cat_file(path)
        assert json.loads(raw.decode("utf-8")) == {"columns": profile}
        assert "Zürich".encode() in raw  # UTF-8, not \u escapes
    finally:
        if protocol == "memory":
            fs.rm(folder, recursive=True)


def test_write_profile_is_strict_json_with_non_finite_means(tmp_path) -> None:
    import fsspec

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1.0::DOUBLE), ('nan'::DOUBLE)) v(x)")
    profile = profile_relation(con, "t")
    assert math.isnan(profile[0]["mean"])
    write_profile(profile, fsspec.filesystem("file"), str(tmp_path / "profile.json"))

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    written = json.loads((tmp_path / "profile.json").read_text(), parse_constant=refuse)
    assert written["columns"][0]["mean"] is None and written["columns"][0]["rows"] == 2


def test_sensitive_columns_get_counts_only_and_their_values_are_never_queried(con):
    """A profile goes where readers without a PII grant look, so sensitive columns keep counts and null rates:
    no min, max, mean or top value is computed, let alone stored or shown."""
    executed: list[str] = []

    class Recording:
        def __getattr__(self, name):
            return getattr(con, name)

        def execute(self, query, *args):
            executed.append(query)
            return con.execute(query, *args)

    p = by_column(profile_relation(Recording(), "silver.orders",  # type: ignore[arg-type]
                                   sensitive=("status", "amount")))
    for name in ("status", "amount"):
        assert (p[name]["rows"], p[name]["nulls"], p[name]["sensitive"]) == (8, {"status": 1, "amount": 2}[name], True)
        assert (p[name]["min"], p[name]["max"], p[name]["mean"], p[name]["top_values"]) == (None, None, None, [])
    assert p["paid"]["top_values"] and "sensitive" not in p["paid"]  # the others as before
    assert not any(q in query for query in executed for q in ('min("status")', 'max("amount")', 'avg("amount")'))
    assert any('min("order_id")' in query for query in executed)
    assert not any('GROUP BY "status"' in query for query in executed)
    records = profile_metadata(list(p.values())).records
    assert next(r for r in records if r.data["column"] == "status").data["top_values"] == "sensitive: counts only"
