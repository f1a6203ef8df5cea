"""Infer a draft data contract from landed files (``mesh new product --from``), reading a bounded sample.

What is inferred, from at most :data:`SAMPLE_ROWS` records read with DuckDB (never the whole of a large file):

- columns and types: DuckDB's sniffer (``sniff_csv``/``read_csv`` with ``sample_size`` :data:`SNIFF_ROWS`),
  proven on the whole sample, for CSV, the file's own
  types for Parquet and JSON; DuckDB types map to an ODCS ``logicalType`` and the ``physicalType`` bronze
  ingestion reads. A CSV column with a type DuckDB guessed but plain ``CAST`` cannot read (e.g. dates written
  ``15/01/2024``) stays ``VARCHAR``, since ingestion reads with plain casts. Decimal text becomes money,
  ``DECIMAL(18,2)``, only when the column's name says money (:data:`MONEY_NAME`: price, amount, cost, revenue,
  total, …) and no value has more than two decimals; other decimal text stays ``DOUBLE`` (a measurement).
- ``required: true`` for columns without a null in the sample;
- a primary key: the first unique, non-null column (``id``/``*_id``/``*_key``/``*_code`` first), else the
  first unique pair among the first :data:`KEY_PAIR_COLUMNS` columns;
- valid values for text columns with at most :data:`MAX_VALID_VALUES` distinct values and distinct/non-null at
  most :data:`MAX_VALID_RATIO`: the values seen, a warning (a sample never proves a code list closed);
- a range of numeric columns other than the key: the observed minimum and maximum widened by
  :data:`RANGE_MARGIN` of their span on each side (whole numbers), a warning too; a year column
  (:data:`YEAR_NAME`) gets no maximum, so next year's data is not refused;
- ``examples``: up to three distinct values.

Inferred value rules are never blocking: the sample's extremes and code lists describe the data read, not what
the source promises; people promote a rule to blocking once they know it holds. When only a sample was read,
ranges are left out and the contract's description says so.
"""

from __future__ import annotations

import datetime as dt
import decimal
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from mesh_assets.errors import MeshError

# Records read per inference: enough for types and value sets of real files, small enough to stay in tens of
# megabytes (DuckDB's own sniffer default is 20,480 rows; we read ten times that).
SAMPLE_ROWS = 200_000
# A text column is a code list when it has at most this many distinct values …
MAX_VALID_VALUES = 20
# … and they repeat: distinct values / non-null values at most this ratio (a heuristic of this framework).
MAX_VALID_RATIO = 0.2
# Rows DuckDB's sniffer reads for the dialect and types (its own default); the sample then proves the types.
SNIFF_ROWS = 20_480
KEY_PAIR_COLUMNS = 8  # composite keys are searched among the first 8 columns: at most 28 pairs
FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet",
           ".json": "json", ".jsonl": "json", ".ndjson": "json"}
_INTEGER = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
            "UBIGINT"}
_MONEY = r"^\s*-?[0-9]+(\.[0-9]{1,2})?\s*$"
# Column names that say money (whole words of a snake_case name); only these become DECIMAL(18,2).
MONEY_NAME = re.compile(r"(^|_)(price|prices|amount|amt|cost|costs|revenue|total|fee|fees|balance|salary|wage|wages|"
                        r"income|payment|paid|charge|charges|tax|spend|budget|sales|profit|usd|eur|gbp)(_|$)")
# Column names that say year: their range has no maximum (next year's rows are valid).
YEAR_NAME = re.compile(r"(^|_)(year|yr)(_|$)")
# How far an inferred range reaches beyond the values seen: this fraction of their span on each side (a
# heuristic of this framework: wide enough for ordinary growth, narrow enough to flag a unit mix-up).
RANGE_MARGIN = 0.5
_KEY_NAME = re.compile(r"^(id|.+_(id|key|code|no|number))$")


@dataclass
class InferredColumn:
    """One column: ``physical_type`` is a DuckDB type; ``minimum``/``maximum`` (the widened range; ``maximum``
    ``None`` for a year) and ``valid_values`` are set only when they become (warning) rules; ``distinct`` and
    ``nulls`` count the sample's values."""

    name: str
    logical_type: str
    physical_type: str
    nulls: int
    distinct: int
    examples: list[Any] = field(default_factory=list)
    minimum: Any = None
    maximum: Any = None
    valid_values: list[str] | None = None


@dataclass
class Inference:
    """What a sample of the files says: ``rows`` records read (at most :data:`SAMPLE_ROWS`), ``sampled`` True
    when the files hold more; ``delimiter`` of a CSV source."""

    files: list[str]
    format: str
    columns: list[InferredColumn]
    primary_key: list[str]
    rows: int
    sampled: bool
    delimiter: str = ","


def source_format(files: list[str]) -> str:
    """``csv``, ``parquet`` or ``json`` from the files' extension.

    Raises:
        MeshError: an unknown extension, or files of several formats.
    """
    kinds = {FORMATS.get(Path(f).suffix.lower()) for f in files}
    if None in kinds:
        raise MeshError(f"cannot tell the format of {', '.join(files)}; name files .csv, .parquet or .json")
    if len(kinds) > 1:
        raise MeshError(f"the files mix formats ({', '.join(sorted(map(str, kinds)))}); one product reads one")
    return kinds.pop()  # type: ignore[return-value]


def infer(files: list[str], sample_rows: int = SAMPLE_ROWS,
          progress: Callable[[int, int, str], None] | None = None) -> Inference:
    """Infer columns, types, key and value rules from at most ``sample_rows`` records of ``files`` (all of one
    format and one layout). ``progress(done, total, stage)`` is called before reading the sample, before
    profiling each column, and before searching the primary key (total: the columns plus 2).

    Raises:
        MeshError: the files cannot be read, have no header (CSV), or no column.
    """
    fmt = source_format(files)
    report = progress or (lambda done, total, stage: None)
    report(0, 0, f"reading a sample of {len(files)} file(s)")
    con = duckdb.connect(config={"memory_limit": "256MB", "threads": 1})
    try:
        listed = "[" + ", ".join(_literal(f) for f in files) + "]"
        delimiter = ","
        try:
            if fmt == "csv":
                delimiter, types = _csv_types(con, listed, files[0])
                con.execute(f"CREATE TABLE raw AS SELECT * FROM read_csv({listed}, all_varchar = true, "
                            f"header = true, delim = {_literal(delimiter)}, sample_size = {SNIFF_ROWS}) "
                            f"LIMIT {sample_rows + 1}")
                types = _castable(con, types)
                casts = ", ".join(f'TRY_CAST("{c}" AS {t}) AS "{c}"' for c, t in types.items())
                con.execute(f"CREATE VIEW sample AS SELECT {casts} FROM raw LIMIT {sample_rows}")
            else:
                reader = (f"read_parquet({listed})" if fmt == "parquet"
                          else f"read_json({listed}, sample_size = {sample_rows})")
                con.execute(f"CREATE TABLE raw AS SELECT * FROM {reader} LIMIT {sample_rows + 1}")
                types = {name: ctype for name, ctype, *_ in con.execute("DESCRIBE raw").fetchall()}
                con.execute(f"CREATE VIEW sample AS SELECT * FROM raw LIMIT {sample_rows}")
        except duckdb.Error as exc:
            raise MeshError(f"cannot read {', '.join(files)} as {fmt}: {str(exc).splitlines()[0]}. "
                            "Check the file, or pass another --from") from None
        read = con.execute("SELECT count(*) FROM raw").fetchall()[0][0]
        rows = min(read, sample_rows)
        total = len(types) + 2
        columns = []
        for done, (name, ctype) in enumerate(types.items(), start=1):
            report(done, total, f"column {name}")
            columns.append(_column(con, name, ctype, rows))
        report(total - 1, total, "primary key")
        key = _primary_key(con, columns, rows)
        for col in columns:
            if col.name in key:
                col.minimum = col.maximum = None  # identifiers grow: no range
            if read > sample_rows:  # unread records may break value rules
                col.minimum = col.maximum = None
        return Inference(files, fmt, columns, key, rows, read > sample_rows, delimiter)
    finally:
        con.close()


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _csv_types(con: duckdb.DuckDBPyConnection, listed: str, first: str) -> tuple[str, dict[str, str]]:
    """The delimiter and DuckDB's sniffed column types of the CSV files (from their first SNIFF_ROWS rows)."""
    sniffed = con.execute(f"SELECT Delimiter, HasHeader FROM sniff_csv({_literal(first)}, "
                          f"sample_size = {SNIFF_ROWS})").fetchall()[0]
    if not sniffed[1]:
        raise MeshError(f"{first} has no header line (DuckDB's sniffer found none); add one naming the columns, "
                        "in snake_case")
    described = con.execute(f"DESCRIBE SELECT * FROM read_csv({listed}, header = true, "
                            f"delim = {_literal(sniffed[0])}, sample_size = {SNIFF_ROWS})").fetchall()
    return sniffed[0], {name: ctype for name, ctype, *_ in described}


def _castable(con: duckdb.DuckDBPyConnection, types: dict[str, str]) -> dict[str, str]:
    """Sniffed types bronze ingestion can read with plain casts; decimal text of a money column (its name,
    :data:`MONEY_NAME`) with ≤ 2 decimals as DECIMAL(18,2)."""
    out = dict(types)
    checks = []
    for name, ctype in types.items():
        if ctype == "VARCHAR":
            continue
        checks.append((name, "cast", (f'count(*) FILTER (WHERE "{name}" IS NOT NULL AND TRY_CAST("{name}" AS '
                                      f'{ctype}) IS NULL)')))
        if ctype in ("DOUBLE", "FLOAT") and MONEY_NAME.search(name.lower()):
            checks.append((name, "money", (f'count(*) FILTER (WHERE "{name}" IS NOT NULL AND NOT '
                                           f"regexp_full_match(\"{name}\", '{_MONEY}')) = 0 AND "
                                           f"count(*) FILTER (WHERE contains(\"{name}\", '.')) > 0")))
    if not checks:
        return out
    values = con.execute("SELECT " + ", ".join(sql for *_, sql in checks) + " FROM raw").fetchall()[0]
    for (name, kind, _), value in zip(checks, values):
        if kind == "cast" and value:
            out[name] = "VARCHAR"
        elif kind == "money" and value and out[name] != "VARCHAR":
            out[name] = "DECIMAL(18,2)"
    return out


def logical_type(ctype: str) -> tuple[str, str]:
    """``(logicalType, physicalType)`` of a DuckDB type; nested and other types are read as text (VARCHAR)."""
    upper = ctype.upper()
    if upper in _INTEGER:
        return "integer", "BIGINT" if upper != "HUGEINT" else "HUGEINT"
    if upper.startswith("DECIMAL"):
        return "number", ctype
    if upper in ("DOUBLE", "FLOAT", "REAL"):
        return "number", "DOUBLE"
    if upper == "BOOLEAN":
        return "boolean", "BOOLEAN"
    if upper == "DATE":
        return "date", "DATE"
    if upper.startswith("TIMESTAMP"):
        return "timestamp", "TIMESTAMP WITH TIME ZONE" if "TIME ZONE" in upper else "TIMESTAMP"
    if upper == "TIME":
        return "time", "TIME"
    return "string", "VARCHAR"


def _column(con: duckdb.DuckDBPyConnection, name: str, ctype: str, rows: int) -> InferredColumn:
    logical, physical = logical_type(ctype)
    q = f'"{name}"'
    value = q if physical == ctype or logical != "string" else f"CAST({q} AS VARCHAR)"
    nulls, distinct = con.execute(f"SELECT count(*) - count({q}), count(DISTINCT {q}) FROM sample").fetchall()[0]
    examples = [_plain(r[0]) for r in con.execute(
        f"SELECT DISTINCT {value} AS v FROM sample WHERE {q} IS NOT NULL ORDER BY v LIMIT 3").fetchall()]
    col = InferredColumn(name, logical, physical, nulls, distinct, examples)
    non_null = rows - nulls
    if logical in ("integer", "number") and non_null:
        low, high = con.execute(f"SELECT min({q}), max({q}) FROM sample").fetchall()[0]
        col.minimum, col.maximum = _widened(float(low), float(high), bool(YEAR_NAME.search(name.lower())))
    if (logical == "string" and non_null and 1 <= distinct <= MAX_VALID_VALUES
            and distinct / non_null <= MAX_VALID_RATIO):
        col.valid_values = [r[0] for r in con.execute(
            f"SELECT DISTINCT {value} AS v FROM sample WHERE {q} IS NOT NULL ORDER BY v").fetchall()]
    return col


def _widened(low: float, high: float, year: bool) -> tuple[int, int | None]:
    """The range a warning rule allows for values seen between ``low`` and ``high``: each side moved out by
    :data:`RANGE_MARGIN` of the span (at least 1, and half the value when all values are equal), to whole
    numbers; no maximum (``None``) for a ``year`` column."""
    margin = max((high - low) * RANGE_MARGIN, abs(high) * RANGE_MARGIN if high == low else 0, 1)
    return math.floor(low - margin), None if year else math.ceil(high + margin)


def _plain(value: Any) -> Any:
    """A value YAML writes plainly: decimals as int or float, dates and times as ISO text."""
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (dt.date, dt.time, dt.datetime)):
        return value.isoformat()
    if isinstance(value, (bytes, list, dict)):
        return str(value)
    return value


def _primary_key(con: duckdb.DuckDBPyConnection, columns: list[InferredColumn], rows: int) -> list[str]:
    """The first unique non-null column (names like ``id``/``*_id`` first), else the first unique pair."""
    if not rows:
        return []
    keyable = [c for c in columns if c.nulls == 0 and c.logical_type in ("integer", "string", "date", "number")
               and c.physical_type != "DOUBLE"]
    singles = [c.name for c in keyable if c.distinct == rows]
    if singles:
        named = [n for n in singles if _KEY_NAME.match(n)]
        return [(named or singles)[0]]
    for a, b in itertools.combinations([c.name for c in keyable[:KEY_PAIR_COLUMNS]], 2):
        if con.execute(f'SELECT count(DISTINCT ("{a}", "{b}")) FROM sample').fetchall()[0][0] == rows:
            return [a, b]
    return []
