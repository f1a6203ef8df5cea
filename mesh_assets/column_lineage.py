"""Column lineage of a SQL transform with ``sqlglot.lineage``: which input port columns feed each output
column, recorded as ``dagster/column_lineage`` on the materialization."""

from __future__ import annotations

import dagster as dg
import sqlglot
from sqlglot import exp
from sqlglot.lineage import lineage
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import build_scope

from mesh_assets.sql_inputs import InputRef


def column_lineage(sql: str, inputs: list[InputRef], input_columns: dict[tuple[str, str], dict[str, str]]
                   ) -> dg.TableColumnLineage | None:
    """Map every output column of ``sql`` to the input port columns it is computed from.

    ``input_columns`` maps ``(schema, table)`` as written in the SQL to ``{column: DuckDB type}``. Returns
    ``None`` when sqlglot cannot trace the query (lineage is then simply not recorded); columns computed from
    constants only have no entry.
    """
    keys = {(ref.schema, ref.table): dg.AssetKey(list(ref.key)) for ref in inputs}
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for (db, table), columns in input_columns.items():
        schema.setdefault(db, {})[table] = columns
    try:
        tree = qualify(sqlglot.parse_one(sql, dialect="duckdb"), schema=schema, dialect="duckdb")
        scope = build_scope(tree)
        deps: dict[str, list[dg.TableColumnDep]] = {}
        for select in tree.selects:
            name = select.alias_or_name
            found = {}
            for node in lineage(name, tree, schema=schema, dialect="duckdb", scope=scope).walk():
                if node.downstream or not isinstance(node.source, exp.Table):
                    continue
                key = keys.get((node.source.db, node.source.name))
                if key is not None:
                    column = node.name.split(".")[-1].strip('"')
                    found[(key.to_user_string(), column)] = dg.TableColumnDep(asset_key=key, column_name=column)
            if found:
                deps[name] = list(found.values())
    except (sqlglot.errors.SqlglotError, KeyError, ValueError, RecursionError):
        return None
    return dg.TableColumnLineage(deps_by_column=deps)
