"""A partitioned step's SQL reads only its window of each partitioned input (docs/partitions.md).

Each reference to a filtered input (``silver.orders``, ``silver.orders AS o``) becomes a subquery with the
window's predicate on the input's partition column, under the same name, so the rest of the query is unchanged::

    FROM silver.orders AS o   →   FROM (SELECT * FROM silver.orders
                                        WHERE "order_date" >= CAST('1992-03-01' AS DATE)
                                          AND "order_date" < CAST('1992-04-01' AS DATE)) AS o

The query is parsed and rewritten with sqlglot; the dates are literals built by sqlglot, never pasted text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlglot import exp

from mesh_assets.sql.inputs import parse_select


def window_predicate(column: str, start: dt.date, end: dt.date) -> exp.Expression:
    """``"<column>" >= CAST('<start>' AS DATE) AND "<column>" < CAST('<end>' AS DATE)``, as a sqlglot tree."""
    col = exp.column(column, quoted=True)
    return exp.and_(exp.GTE(this=col.copy(), expression=exp.cast(exp.Literal.string(start.isoformat()), "DATE")),
                    exp.LT(this=col, expression=exp.cast(exp.Literal.string(end.isoformat()), "DATE")))


def filter_inputs(sql: str, columns: Mapping[tuple[str, str], str], start: dt.date, end: dt.date) -> str:
    """``sql`` (one query, DuckDB's dialect) with every read of an input in ``columns`` (``(schema, table)`` →
    its partition column) restricted to the rows whose partition column is in ``[start, end)``; DuckDB SQL.
    ``sql`` itself when it reads none of them.

    Raises:
        mesh_assets.sql.inputs.SqlInputError: ``sql`` is not one query.
    """
    tree = parse_select(sql)
    changed = False
    for table in list(tree.find_all(exp.Table)):
        column = columns.get((table.db, table.name))
        if column is None or not table.db:
            continue
        alias = table.alias or table.name
        inner = exp.select("*").from_(exp.table_(table.name, db=table.db, quoted=True)).where(
            window_predicate(column, start, end))
        table.replace(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True))))
        changed = True
    return tree.sql(dialect="duckdb") if changed else sql
