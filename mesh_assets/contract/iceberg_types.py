"""Contract types as Apache Iceberg types: the one place that says which DuckDB type a port column may have and
what it is in the port's Iceberg table (docs/architecture.md#storage).

Every output port is an Iceberg table (format version 2), so a contract column must have a type Iceberg holds
exactly: a type it cannot hold is refused when the contract loads (``mesh validate``, definitions load) with
the type to use instead, never widened or narrowed silently when the port is written.
"""

from __future__ import annotations

import re

from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    LongType,
    StringType,
    TimestampType,
    TimestamptzType,
    TimeType,
)

# DuckDB's spelling (what DESCRIBE prints and mesh_assets.contract.types keeps) → Iceberg type.
_EXACT: dict[str, IcebergType] = {
    "BOOLEAN": BooleanType(),
    "TINYINT": IntegerType(), "SMALLINT": IntegerType(), "INTEGER": IntegerType(),
    "BIGINT": LongType(),
    "FLOAT": FloatType(), "DOUBLE": DoubleType(),
    "VARCHAR": StringType(),
    "BLOB": BinaryType(),
    "DATE": DateType(),
    "TIME": TimeType(),
    "TIMESTAMP": TimestampType(),
    "TIMESTAMP WITH TIME ZONE": TimestamptzType(),
}
# Other spellings of the same DuckDB types (sqlglot may render a contract's type so).
_ALIASES = {"INT": "INTEGER", "INT4": "INTEGER", "INT2": "SMALLINT", "INT1": "TINYINT", "INT8": "BIGINT",
            "LONG": "BIGINT", "REAL": "FLOAT", "FLOAT4": "FLOAT", "FLOAT8": "DOUBLE", "TEXT": "VARCHAR",
            "STRING": "VARCHAR", "CHAR": "VARCHAR", "BPCHAR": "VARCHAR", "BOOL": "BOOLEAN", "BYTEA": "BLOB",
            "DATETIME": "TIMESTAMP", "TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE", "NUMERIC": "DECIMAL"}
# Types Iceberg (format 2) cannot hold, and what to write instead.
_FIXES = {
    "HUGEINT": "DECIMAL(38,0)", "UHUGEINT": "DECIMAL(38,0)", "UBIGINT": "DECIMAL(20,0)", "UINTEGER": "BIGINT",
    "USMALLINT": "INTEGER", "UTINYINT": "SMALLINT", "TIMESTAMP_NS": "TIMESTAMP (microseconds)",
    "TIMESTAMP_MS": "TIMESTAMP", "TIMESTAMP_S": "TIMESTAMP", "TIME WITH TIME ZONE": "TIME or TIMESTAMP WITH TIME ZONE",
    "INTERVAL": "BIGINT (a number of seconds or microseconds)", "UUID": "VARCHAR", "BIT": "BLOB or VARCHAR",
    "VARINT": "DECIMAL(38,0)",
}
_DECIMAL = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")
MAX_DECIMAL_PRECISION = 38


class NotAnIcebergType(ValueError):
    """A contract type no Iceberg type holds exactly; the message names the type to use instead."""


def iceberg_type(duckdb_type: str) -> IcebergType:
    """The Iceberg type of a column whose DuckDB type is ``duckdb_type`` (DuckDB's spelling, e.g.
    ``DECIMAL(15,2)``, ``TIMESTAMP WITH TIME ZONE``): decimals keep precision and scale; TINYINT, SMALLINT and
    INTEGER are ``int``, BIGINT ``long``, VARCHAR ``string``, BLOB ``binary``, TIMESTAMP ``timestamp`` (micro-
    seconds, no zone), TIMESTAMP WITH TIME ZONE ``timestamptz``.

    Raises:
        NotAnIcebergType: Iceberg has no exact type for it (unsigned and 128-bit integers, nanosecond or second
            timestamps, INTERVAL, TIME WITH TIME ZONE, UUID, BIT, nested types…); the message says what to use.
    """
    text = " ".join(duckdb_type.upper().split())
    head, _, rest = text.partition("(")
    text = _ALIASES.get(head, head) + (f"({rest}" if rest else "")
    if text.startswith("VARCHAR("):  # a length is a check, not a type, in both DuckDB and Iceberg
        text = "VARCHAR"
    if text in _EXACT:
        return _EXACT[text]
    if text == "DECIMAL":  # DuckDB's default precision and scale
        return DecimalType(18, 3)
    decimal = _DECIMAL.fullmatch(text)
    if decimal:
        precision, scale = int(decimal.group(1)), int(decimal.group(2))
        if precision <= MAX_DECIMAL_PRECISION and scale <= precision:
            return DecimalType(precision, scale)
        raise NotAnIcebergType(f"{duckdb_type} does not fit an Iceberg decimal (precision at most "
                               f"{MAX_DECIMAL_PRECISION}); use DECIMAL(38,{min(scale, 38)}) or DOUBLE")
    fix = _FIXES.get(text) or _FIXES.get(text.split("(")[0])
    hint = f"use {fix}" if fix else "use one of BOOLEAN, INTEGER, BIGINT, DOUBLE, DECIMAL(p,s), VARCHAR, DATE, " \
                                    "TIMESTAMP, TIMESTAMP WITH TIME ZONE, TIME, BLOB"
    raise NotAnIcebergType(f"{duckdb_type} cannot be stored in an Iceberg table (output ports are Iceberg tables); "
                           f"{hint}")
