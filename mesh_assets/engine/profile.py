"""Data profile of a table, computed where the data lies (DuckDB or Spark): one aggregate scan, no rows fetched.

A profile is a list with one dict per column, in column order::

    {"column": str, "type": str,            # DuckDB type as DESCRIBE prints it, e.g. DECIMAL(15,2)
     "rows": int, "nulls": int,
     "null_percent": float,                 # 0–100, rounded to 4 places; 0.0 for an empty table
     "approx_distinct": int,                # DuckDB approx_count_distinct (HyperLogLog, a few % off)
     "min": str | None, "max": str | None,  # DuckDB's text form (CAST … AS VARCHAR); None when all null
     "mean": float | None,                  # numeric columns only: avg cast to DOUBLE
     "top_values": [{"value": str, "rows": int}, …],  # most frequent non-null values first
     "sensitive": bool}                     # present and true for a sensitive column (below)

All per-column aggregates come from ONE ``SELECT`` (one scan of the Parquet behind a view); the top values of
every low-cardinality column (only those are worth listing) from one more: a ``GROUP BY GROUPING SETS`` with
one set per column. Nested and other
unorderable types (LIST, ARRAY, STRUCT, MAP, UNION, VARIANT, GEOMETRY, …) get rows, nulls and
approx_distinct only: their min/max/mean are None and they have no top values.

A sensitive column (classified ``pii`` or as ``governance.sensitive_classifications`` says) gets counts only:
rows, nulls, null_percent and approx_distinct. Its min, max, mean and top values are never computed, because a
profile goes where readers without a PII grant look: ``profile.json`` beside the snapshot, the Dagster event
log, the catalog.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection
from typing import Any

import dagster as dg
import duckdb
import fsspec

from mesh_assets.engine.sql_session import DuckDBSession, SparkSqlSession, SqlSession

PROFILE_FILE = "profile.json"  # in a port's staging folder: the profile of its rows

# DuckDBPyType.id of the types whose avg is meaningful.
_NUMERIC = frozenset({
    "tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger", "ubigint",
    "uhugeint", "float", "double", "decimal", "bignum",
})
# … and of every scalar type with a total order, so min/max and top values make sense. An allow list: a
# type DuckDB adds later is profiled as unsupported rather than making the whole profile query fail.
_ORDERABLE = _NUMERIC | frozenset({
    "boolean", "varchar", "blob", "bit", "enum", "uuid", "interval", "date", "time", "time_ns",
    "time with time zone", "timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns",
    "timestamp with time zone",
})
_UI_CHARS = 40  # longest value shown in a cell of the Dagster UI table; the JSON keeps values whole


def profile_relation(con: duckdb.DuckDBPyConnection | SqlSession, relation: str, top_values: int = 5,
                     low_cardinality: int = 50, sensitive: Collection[str] = ()) -> list[dict[str, Any]]:
    """The profile (see the module docstring) of the table or view ``relation``, e.g. ``silver.orders``, of a
    DuckDB connection or an engine's :class:`SqlSession` (on Spark the same queries run translated; types are
    spelled as DuckDB spells them, text forms are Spark's).

    ``relation`` goes into ``FROM`` verbatim, so it may be qualified and quoted (``"my schema".t``); pass
    trusted names only. Top values (at most ``top_values``, ties by value) are listed only for orderable
    columns whose approx_distinct ≤ ``low_cardinality``; other columns get an empty list. Values and min/max
    are strings in DuckDB's text form (``1992-01-02``, ``901.00``, ``true``); NULL is never a top value.
    Columns named in ``sensitive`` get counts only (module docstring).

    Raises:
        ValueError: ``top_values`` or ``low_cardinality`` is negative.
        duckdb.Error: ``relation`` does not exist or cannot be read (e.g. its Parquet is missing) on DuckDB;
            ``QueryError`` on another engine's session.
    """
    if top_values < 0 or low_cardinality < 0:
        raise ValueError(f"top_values ({top_values}) and low_cardinality ({low_cardinality}) must be ≥ 0")
    if isinstance(con, (DuckDBSession, SparkSqlSession)):
        columns, query = con.columns(relation), con.query
    else:  # a connection: DuckDB's own errors, as documented
        columns = DuckDBSession(con).columns(relation)  # only binds, to learn the columns and their types
        query = lambda sql: con.execute(sql).fetchall()  # noqa: E731

    selects = ["count(*)"]
    for name, type_id, _ in columns:
        q = _quote(name)
        selects += [f"count({q})", f"approx_count_distinct({q})"]
        if name in sensitive:
            continue
        if type_id in _ORDERABLE:
            selects += [f"CAST(min({q}) AS VARCHAR)", f"CAST(max({q}) AS VARCHAR)"]
        if type_id in _NUMERIC:
            selects.append(f"CAST(avg({q}) AS DOUBLE)")
    values = iter(query(f"SELECT {', '.join(selects)} FROM {relation}")[0])

    rows = next(values)
    profile = []
    for name, type_id, type_name in columns:
        nulls = rows - next(values)
        approx_distinct = next(values)
        hidden = name in sensitive
        orderable = type_id in _ORDERABLE and not hidden
        minimum, maximum = (next(values), next(values)) if orderable else (None, None)
        profile.append({
            "column": name,
            "type": type_name,
            "rows": rows,
            "nulls": nulls,
            "null_percent": round(100 * nulls / rows, 4) if rows else 0.0,
            "approx_distinct": approx_distinct,
            "min": minimum,
            "max": maximum,
            "mean": next(values) if type_id in _NUMERIC and not hidden else None,
            "top_values": [],
            **({"sensitive": True} if hidden else {}),
        })
    listed = [c["column"] for c, (_, type_id, _) in zip(profile, columns)
              if type_id in _ORDERABLE and c["column"] not in sensitive and 0 < c["approx_distinct"] <= low_cardinality]
    if listed and top_values:
        tops = _top_values(query, relation, listed, top_values)
        for column in profile:
            column["top_values"] = tops.get(column["column"], column["top_values"])
    return profile


def redact_profile(profile: list[dict[str, Any]], sensitive: Collection[str]) -> list[dict[str, Any]]:
    """``profile`` with the columns named in ``sensitive`` reduced to counts (module docstring), for a
    profile stored before its columns were classified, or by an older version; other columns unchanged."""
    return [{**c, "min": None, "max": None, "mean": None, "top_values": [], "sensitive": True}
            if c.get("column") in sensitive else c for c in profile]


def _top_values(query: Callable[[str], list[tuple[Any, ...]]], relation: str, columns: list[str], limit: int
                ) -> dict[str, list[dict[str, Any]]]:
    """The ``limit`` most frequent non-null values of each of ``columns`` (ties by value), by column, from one
    scan: one grouping set per column. In the rows of a column's set the other columns are null, so the set of
    a row is its one non-null column (the set's own null group, all null, is left out), and ordering a set's
    rows by every column in turn orders them by its own."""
    quoted = [_quote(c) for c in columns]
    which = "CASE " + " ".join(f"WHEN {q} IS NOT NULL THEN {i}" for i, q in enumerate(quoted)) + " END"
    value = "coalesce(" + ", ".join(f"CAST({q} AS VARCHAR)" for q in quoted) + ")" if len(quoted) > 1 \
        else f"CAST({quoted[0]} AS VARCHAR)"
    grouped = (f"SELECT {', '.join(quoted)}, count(*) AS n FROM {relation} "
               f"GROUP BY GROUPING SETS ({', '.join(f'({q})' for q in quoted)})")
    ranked = (f"SELECT {which} AS c, {value} AS v, n, row_number() OVER (PARTITION BY {which} ORDER BY n DESC, "
              f"{', '.join(quoted)}) AS r FROM ({grouped}) AS g WHERE {which} IS NOT NULL")
    result = query(f"SELECT c, v, n FROM ({ranked}) AS t WHERE r <= {int(limit)} ORDER BY c, r")
    tops: dict[str, list[dict[str, Any]]] = {}
    for index, text, count in result:
        tops.setdefault(columns[index], []).append({"value": text, "rows": count})
    return tops


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def profile_metadata(profile: list[dict[str, Any]]) -> dg.TableMetadataValue:
    """The profile as a Dagster table (one record per column) for an asset's materialization metadata.

    Record fields: column, type, null_percent (0–100), approx_distinct, min, max, mean, top_values — the
    last rendered as ``F (3), O (2)`` (value, rows), or ``sensitive: counts only``. Strings longer than 40
    characters are cut with ``…`` so the UI table stays readable; ``write_profile`` keeps them whole.
    """
    schema = dg.TableSchema(columns=[
        dg.TableColumn("column", "string"), dg.TableColumn("type", "string"),
        dg.TableColumn("null_percent", "float"), dg.TableColumn("approx_distinct", "int"),
        dg.TableColumn("min", "string"), dg.TableColumn("max", "string"),
        dg.TableColumn("mean", "float"), dg.TableColumn("top_values", "string"),
    ])
    records = [dg.TableRecord({
        "column": c["column"],
        "type": c["type"],
        "null_percent": c["null_percent"],
        "approx_distinct": c["approx_distinct"],
        "min": _short(c["min"]),
        "max": _short(c["max"]),
        "mean": c["mean"],
        "top_values": ("sensitive: counts only" if c.get("sensitive") else
                       ", ".join(f"{_short(t['value'])} ({t['rows']})" for t in c["top_values"])),
    }) for c in profile]
    return dg.MetadataValue.table(records=records, schema=schema)


def _short(value: str | None) -> str | None:
    return value if value is None or len(value) <= _UI_CHARS else value[:_UI_CHARS - 1] + "…"


def write_profile(profile: list[dict[str, Any]], fs: fsspec.AbstractFileSystem, path: str) -> None:
    """Write ``{"columns": profile}`` as strict UTF-8 JSON to ``path`` on ``fs`` (e.g.
    ``<snapshot>/profile.json``). A non-finite mean (NaN or ±inf in a FLOAT/DOUBLE column) is written as
    ``null``, so any JSON parser (a browser's included) reads the file.

    Raises:
        OSError: the file cannot be written (e.g. ``FileNotFoundError`` when the folder does not exist on a
            local file system).
    """
    columns = [{**c, "mean": c["mean"] if c.get("mean") is None or math.isfinite(c["mean"]) else None}
               for c in profile]
    with fs.open(path, "w", encoding="utf-8") as handle:
        json.dump({"columns": columns}, handle, ensure_ascii=False, indent=2, allow_nan=False)
