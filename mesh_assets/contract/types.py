"""Physical types of contract columns: a ``physicalType`` is parsed by sqlglot as exactly one DuckDB type of the
family its ``logicalType`` allows, and kept only as re-rendered from the parse, so no SQL can ride along."""

from __future__ import annotations

import functools

import duckdb
import sqlglot
from sqlglot import exp

from mesh_assets.contract.iceberg_types import iceberg_type

# DuckDB type of each ODCS logicalType when the contract gives no physicalType, and the type families allowed.
DEFAULT_PHYSICAL = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN",
                    "date": "DATE", "timestamp": "TIMESTAMP", "time": "TIME"}
FAMILIES = {
    "string": {exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT, exp.DataType.Type.CHAR, exp.DataType.Type.UUID},
    "integer": exp.DataType.INTEGER_TYPES,
    "number": exp.DataType.INTEGER_TYPES | exp.DataType.REAL_TYPES,
    "boolean": {exp.DataType.Type.BOOLEAN},
    "date": {exp.DataType.Type.DATE},
    "timestamp": exp.DataType.TEMPORAL_TYPES - {exp.DataType.Type.DATE, exp.DataType.Type.TIME},
    "time": {exp.DataType.Type.TIME, exp.DataType.Type.TIMETZ},
}
# sqlglot's DuckDB spelling → DuckDB's own (what DESCRIBE prints), for the types contracts use most; a type
# written either way is stored the same.
_DUCKDB_SPELLING = {exp.DataType.Type.TEXT: "VARCHAR", exp.DataType.Type.INT: "INTEGER",
                    exp.DataType.Type.INT128: "HUGEINT", exp.DataType.Type.TIMESTAMPTZ: "TIMESTAMP WITH TIME ZONE",
                    exp.DataType.Type.TIMETZ: "TIME WITH TIME ZONE"}


def physical_type(physical: object, logical: str) -> str:
    """The DuckDB type of a column whose contract says ``physicalType: physical`` (``None``: not given) and
    ``logicalType: logical`` (a key of :data:`DEFAULT_PHYSICAL`): the canonical text of the parse, or the
    logical type's default.

    Raises:
        ValueError: ``physical`` is not one DuckDB type (see :func:`parse_physical_type`), not of the logical
            type's family, or not a type an Iceberg table holds exactly
            (mesh_assets.contract.iceberg_types.NotAnIcebergType); the message says what to write instead.
    """
    if physical is None:
        return DEFAULT_PHYSICAL[logical]
    canonical, parsed = parse_physical_type(str(physical))
    if parsed.this not in FAMILIES[logical]:
        raise ValueError(f"'{physical}' does not hold logicalType '{logical}'; use e.g. {DEFAULT_PHYSICAL[logical]}")
    iceberg_type(canonical)  # a port is an Iceberg table: refuse what it cannot hold (NotAnIcebergType)
    return canonical


def parse_physical_type(text: str) -> tuple[str, exp.DataType]:
    """A contract's ``physicalType`` parsed as exactly one DuckDB data type (nested ``STRUCT``/``LIST``/``MAP``
    and ``DECIMAL(p,s)`` included), with the canonical text re-rendered from the parse: only that text reaches
    SQL, never what the contract wrote. ``VARCHAR``, ``DECIMAL(15,2)`` and the other common types keep DuckDB's
    spelling.

    Raises:
        ValueError: the text is not one data type (trailing SQL, quotes, a second type, an unknown name) or
            DuckDB does not know it; the message says what to write instead.
    """
    hint = "write one DuckDB type, e.g. VARCHAR, BIGINT, DECIMAL(15,2), DATE, STRUCT(a INTEGER, b VARCHAR)"
    try:
        parsed = sqlglot.parse_one(text, dialect="duckdb", into=exp.DataType, error_level=sqlglot.ErrorLevel.RAISE)
    except (sqlglot.errors.SqlglotError, ValueError, TypeError):
        raise ValueError(f"'{text}' is not a DuckDB type; {hint}") from None
    if not isinstance(parsed, exp.DataType) or parsed.this == exp.DataType.Type.USERDEFINED:
        raise ValueError(f"'{text}' is not a DuckDB type; {hint}")
    if parsed.this in (exp.DataType.Type.DECIMAL, exp.DataType.Type.BIGDECIMAL) and parsed.expressions:
        try:
            canonical = f"DECIMAL({','.join(str(int(p.name)) for p in parsed.expressions)})"
        except ValueError:
            raise ValueError(f"'{text}': DECIMAL takes numbers, e.g. DECIMAL(15,2)") from None
    elif not parsed.expressions and parsed.this in _DUCKDB_SPELLING:
        canonical = _DUCKDB_SPELLING[parsed.this]
    else:
        canonical = parsed.sql(dialect="duckdb")
    if not _duckdb_knows(canonical):
        raise ValueError(f"'{text}' is not a type DuckDB knows; {hint}")
    return canonical, parsed


@functools.lru_cache(maxsize=1024)
def _duckdb_knows(canonical: str) -> bool:
    """Whether DuckDB accepts ``canonical`` (a type re-rendered by sqlglot, so no SQL can ride along)."""
    con = duckdb.connect()
    try:
        con.execute(f"SELECT CAST(NULL AS {canonical})").fetchall()
        return True
    except duckdb.Error:
        return False
    finally:
        con.close()
