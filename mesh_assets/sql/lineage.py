"""Column lineage of a SQL transform with ``sqlglot.lineage``: which input columns feed each output column.

Recorded as ``dagster/column_lineage`` on the materialization (:func:`column_lineage`), and read by ``mesh
validate`` to make classification follow the data (:func:`column_sources`, mesh_assets.governance.classification).
"""

from __future__ import annotations

import dagster as dg
import sqlglot
from sqlglot import exp
from sqlglot.lineage import lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import build_scope

from mesh_assets.sql.inputs import InputRef

# (schema, table, column) as the SQL names them, e.g. ("customers", "customer_profile", "c_name")
ColumnRef = tuple[str, str, str]


def column_sources(sql: str, input_columns: dict[tuple[str, str], dict[str, str]]
                   ) -> dict[str, set[ColumnRef]] | None:
    """Every output column of ``sql`` → the input columns whose values its expression is computed from.

    ``input_columns`` maps ``(schema, table)`` as written in the SQL to ``{column: DuckDB type}``. A column
    feeds an output when it appears in the output's expression, through CTEs, subqueries, set operations and
    ``SELECT *``, including inside an aggregate (``count(DISTINCT c_name)``), a window's ``PARTITION BY`` or an
    aggregate's ``FILTER``; columns read only by ``WHERE``, ``JOIN … ON`` or ``GROUP BY`` do not. Columns
    computed from constants (``count(*)``, ``1``) map to an empty set. Returns ``None`` when sqlglot cannot
    trace the query.
    """
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for (db, table), columns in input_columns.items():
        schema.setdefault(db, {})[table] = columns
    try:
        tree = qualify(sqlglot.parse_one(sql, dialect="duckdb"), schema=schema, dialect="duckdb")
        scope = build_scope(tree)
        out: dict[str, set[ColumnRef]] = {}
        for select in tree.selects:
            name = select.alias_or_name
            found = out.setdefault(name, set())
            for node in lineage(name, tree, schema=schema, dialect="duckdb", scope=scope).walk():
                if node.downstream or not isinstance(node.source, exp.Table):
                    continue
                found.add((node.source.db, node.source.name, node.name.split(".")[-1].strip('"')))
    except (sqlglot.errors.SqlglotError, KeyError, ValueError, RecursionError):
        return None
    return out


def column_lineage(sql: str, inputs: list[InputRef], input_columns: dict[tuple[str, str], dict[str, str]]
                   ) -> dg.TableColumnLineage | None:
    """Map every output column of ``sql`` to the input port columns it is computed from (:func:`column_sources`).

    ``input_columns`` maps ``(schema, table)`` as written in the SQL to ``{column: DuckDB type}``. Returns
    ``None`` when sqlglot cannot trace the query (lineage is then simply not recorded); columns computed from
    constants only have no entry.
    """
    keys = {(ref.schema, ref.table): dg.AssetKey(list(ref.key)) for ref in inputs}
    sources = column_sources(sql, input_columns)
    if sources is None:
        return None
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for name, refs in sources.items():
        found = {}
        for db, table, column in sorted(refs):
            key = keys.get((db, table))
            if key is not None:
                found[(key.to_user_string(), column)] = dg.TableColumnDep(asset_key=key, column_name=column)
        if found:
            deps[name] = list(found.values())
    return dg.TableColumnLineage(deps_by_column=deps)


def columns_read(sql: str, input_columns: dict[tuple[str, str], dict[str, str]]) -> set[ColumnRef] | None:
    """Every input column ``sql`` reads anywhere — in its output, ``WHERE``, ``JOIN … ON``, ``GROUP BY``, ``ORDER
    BY``, through CTEs and subqueries, ``SELECT *`` expanded — as ``(schema, table, column)`` as the SQL names
    the table. ``input_columns`` as for :func:`column_sources`. Returns ``None`` when sqlglot cannot resolve the
    query's columns (a consumer then relies on every column of its inputs)."""
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for (db, table), columns in input_columns.items():
        schema.setdefault(db, {})[table] = columns
    found: set[ColumnRef] = set()
    try:
        tree = qualify(sqlglot.parse_one(sql, dialect="duckdb"), schema=schema, dialect="duckdb")
        root = build_scope(tree)
        for scope in root.traverse() if root is not None else []:
            for column in scope.columns:
                source = scope.sources.get(column.table)
                if isinstance(source, exp.Table):
                    found.add((source.db, source.name, column.name))
    except (sqlglot.errors.SqlglotError, KeyError, ValueError, RecursionError):
        return None
    return found
