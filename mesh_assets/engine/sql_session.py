"""One SQL interface over both engines, so checks and profiles are written once (docs/architecture.md).

SQL in the mesh is written in DuckDB's dialect: transforms, contract ``sql`` rules and the framework's own
queries. A :class:`DuckDBSession` runs it as it is; a :class:`SparkSqlSession` translates it with sqlglot
(``duckdb`` → ``spark``) and names every ``<schema>.<table>`` as the temporary view ``<schema>__<table>``, since
Spark's temporary views have one-part names. Types are reported in DuckDB's spelling on both engines
(``DECIMAL(15,2)``, ``TIMESTAMP WITH TIME ZONE``), so a schema compares the same way wherever it was built.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import duckdb
import ibis
import ibis.expr.types as ir
import sqlglot
from sqlglot import exp

from mesh_assets.sql.functions import FunctionNotAllowed, check_functions

# DuckDB type → Spark type where sqlglot's spelling is not exact (Spark's TIMESTAMP follows
# spark.sql.timestampType, which the engine sets to TIMESTAMP_NTZ like DuckDB's TIMESTAMP).
_SPARK_TYPES = {"TIMESTAMP": "TIMESTAMP_NTZ", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP_LTZ", "HUGEINT": "DECIMAL(38,0)",
                "BLOB": "BINARY", "VARCHAR": "STRING"}
# Spark's simpleString → DuckDB's DESCRIBE spelling (decimals are handled apart)
_DUCKDB_TYPES = {"string": "VARCHAR", "int": "INTEGER", "bigint": "BIGINT", "smallint": "SMALLINT",
                 "tinyint": "TINYINT", "double": "DOUBLE", "float": "FLOAT", "boolean": "BOOLEAN", "date": "DATE",
                 "timestamp": "TIMESTAMP WITH TIME ZONE", "timestamp_ntz": "TIMESTAMP", "binary": "BLOB",
                 "void": '"NULL"'}
# DuckDBPyType.id of each DuckDB spelling above (what profiles key on)
_TYPE_IDS = {"VARCHAR": "varchar", "INTEGER": "integer", "BIGINT": "bigint", "SMALLINT": "smallint",
             "TINYINT": "tinyint", "DOUBLE": "double", "FLOAT": "float", "BOOLEAN": "boolean", "DATE": "date",
             "TIMESTAMP WITH TIME ZONE": "timestamp with time zone", "TIMESTAMP": "timestamp", "BLOB": "blob"}
_FAMILIES = {"numeric": ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                         "UBIGINT", "FLOAT", "DOUBLE", "DECIMAL"),
             "timestamp": ("TIMESTAMP",)}


class QueryError(Exception):
    """A query failed on its engine; the message is the engine's, on one line."""


class SqlSession(Protocol):
    """What checks and profiles need of an engine. Relations are named ``<schema>.<table>``."""

    engine: str

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (DuckDB dialect). Raises :class:`QueryError`."""

    def table(self, relation: str) -> ir.Table:
        """The relation as an Ibis table on this engine."""

    def columns(self, relation: str) -> list[tuple[str, str, str]]:
        """``(name, DuckDB type id, DuckDB type)`` of each column of the relation, in order."""


class DuckDBSession:
    """A :class:`SqlSession` on a DuckDB connection."""

    engine = "duckdb"

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self.con = con

    @functools.cached_property
    def _ibis(self) -> Any:
        return ibis.duckdb.from_connection(self.con)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        try:
            return self.con.execute(sql).fetchall()
        except duckdb.Error as exc:
            raise QueryError(" ".join(str(exc).split())) from None

    def table(self, relation: str) -> ir.Table:
        schema, name = relation.split(".", 1)
        return self._ibis.table(name, database=schema)

    def columns(self, relation: str) -> list[tuple[str, str, str]]:
        rel = self.con.sql(f"SELECT * FROM {relation}")  # binds only
        return [(name, dtype.id, str(dtype)) for name, dtype in zip(rel.columns, rel.dtypes, strict=True)]


class SparkSqlSession:
    """A :class:`SqlSession` on a ``pyspark.sql.SparkSession`` whose relations are temporary views named by
    :func:`view_name`."""

    engine = "spark"

    def __init__(self, spark: Any):
        self.spark = spark

    @functools.cached_property
    def _ibis(self) -> Any:
        return ibis.pyspark.connect(self.spark)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        from pyspark.errors import PySparkException

        try:
            return [tuple(row) for row in self.spark.sql(to_spark(sql)).collect()]
        except (PySparkException, sqlglot.errors.SqlglotError, FunctionNotAllowed) as exc:
            raise QueryError(spark_message(exc)) from None

    def table(self, relation: str) -> ir.Table:
        return self._ibis.table(view_name(*relation.split(".", 1)))

    def columns(self, relation: str) -> list[tuple[str, str, str]]:
        schema = self.spark.table(view_name(*relation.split(".", 1))).schema
        return [(f.name, type_id(duckdb_type(f.dataType)), duckdb_type(f.dataType)) for f in schema.fields]


def view_name(schema: str, table: str) -> str:
    """The Spark temporary view standing for ``<schema>.<table>``: ``<schema>__<table>``."""
    return f"{schema}__{table}"


@functools.lru_cache(maxsize=1024)
def to_spark(sql: str) -> str:
    """``sql`` (one DuckDB query) in Spark's dialect, each ``<schema>.<table>`` named by :func:`view_name`.
    Spark SQL has no file or host sandbox of its own (``reflect`` calls any JVM method), so the query is
    refused before translation unless it calls only the functions of mesh_assets.sql.functions.

    Raises:
        sqlglot.errors.SqlglotError: sqlglot cannot parse or translate ``sql``.
        FunctionNotAllowed: ``sql`` calls a function not on the allow-list (``reflect``, ``java_method``…).
    """
    tree = sqlglot.parse_one(sql, dialect="duckdb")
    check_functions(tree)
    for table in tree.find_all(exp.Table):
        if table.db and isinstance(table.this, exp.Identifier):
            table.set("this", exp.to_identifier(view_name(table.db, table.name)))
            table.set("db", None)
    tree = tree.transform(_json_object).transform(_avg_as_double)
    return tree.sql(dialect="spark", unsupported_level=sqlglot.ErrorLevel.RAISE)


def _avg_as_double(node: exp.Expression) -> exp.Expression:
    """DuckDB's ``avg`` is a DOUBLE for every numeric input; Spark's avg of a ``DECIMAL(p,s)`` is a
    ``DECIMAL(p+4,s+4)``, rounded to 4 more places. Averaging the input as DOUBLE keeps DuckDB's value."""
    if isinstance(node, exp.Avg) and not isinstance(node.this, exp.Distinct):
        return exp.Avg(this=exp.cast(node.this, exp.DataType.Type.DOUBLE))
    return node


def _json_object(node: exp.Expression) -> exp.Expression:
    """DuckDB's ``json_object(k, v, …)`` as Spark's ``to_json(named_struct(k, v, …))``, nulls kept as DuckDB
    keeps them (sqlglot 30 writes Spark a ``JSON_OBJECT`` Spark cannot parse)."""
    if not isinstance(node, exp.JSONObject):
        return node
    pairs = [part for kv in node.expressions for part in (kv.this, kv.expression)]
    options = exp.Anonymous(this="map", expressions=[exp.Literal.string("ignoreNullFields"),
                                                     exp.Literal.string("false")])
    return exp.Anonymous(this="to_json", expressions=[exp.Anonymous(this="named_struct", expressions=pairs), options])


def spark_type(duckdb_type_name: str) -> str:
    """A DuckDB type (a contract's ``physicalType`` as DuckDB prints it) as Spark spells it."""
    upper = duckdb_type_name.upper()
    if upper in _SPARK_TYPES:
        return _SPARK_TYPES[upper]
    return exp.DataType.build(duckdb_type_name, dialect="duckdb").sql(dialect="spark")


def duckdb_type(spark_data_type: Any) -> str:
    """A ``pyspark.sql.types.DataType`` in DuckDB's spelling (``decimal(15,2)`` → ``DECIMAL(15,2)``,
    ``timestamp`` → ``TIMESTAMP WITH TIME ZONE``); other types upper-cased as Spark prints them."""
    name = spark_data_type.simpleString()
    if name.startswith("decimal"):
        return name.upper()
    if name.startswith(("varchar", "char")):
        return "VARCHAR"
    return _DUCKDB_TYPES.get(name, name.upper())


def type_id(duckdb_type_name: str) -> str:
    """The ``DuckDBPyType.id`` of a DuckDB type name (``DECIMAL(15,2)`` → ``decimal``)."""
    return "decimal" if duckdb_type_name.startswith("DECIMAL") else _TYPE_IDS.get(duckdb_type_name,
                                                                                 duckdb_type_name.lower())


def same_family(actual: str, expected: str) -> bool:
    """Whether two DuckDB types differ only in width or precision (both numeric, or both timestamps), a
    difference of the engines' typing rules (Spark sums ``DECIMAL(15,2)`` to ``DECIMAL(25,2)``, DuckDB to
    ``DECIMAL(38,2)``) that a cast settles; a string against a number is not."""
    for members in _FAMILIES.values():
        if actual.startswith(members) and expected.startswith(members):
            return True
    return False


def spark_message(exc: BaseException) -> str:
    """Spark's (or sqlglot's) message on one line, without the JVM stack trace; at most 2,000 characters."""
    text = str(exc).split("\n\tat ", 1)[0].split("JVM stacktrace:", 1)[0]
    return " ".join(text.split())[:2000] or type(exc).__name__
