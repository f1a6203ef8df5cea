"""A partitioned step's SQL reads only its window of each partitioned input (docs/partitions.md).

Each reference to a filtered input (``silver.orders``, ``silver.orders AS o``) becomes a subquery with the
window's predicate on the input's partition column(s), under the same name, so the rest of the query is
unchanged::

    FROM silver.orders AS o   →   FROM (SELECT * FROM silver.orders
                                        WHERE "order_date" >= CAST('1992-03-01' AS DATE)
                                          AND "order_date" < CAST('1992-04-01' AS DATE)
                                          AND "region" IN ('EUROPE')) AS o

The query is parsed and rewritten with sqlglot; the dates and values are literals built by sqlglot, never pasted
text.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from mesh_assets.contract.model import PartitionColumns, Window
from mesh_assets.sql.inputs import parse_select


def window_predicate(columns: PartitionColumns, window: Window) -> exp.Expression:
    """The rows of ``window`` in a table whose partition columns are ``columns``, as a sqlglot tree:
    ``"<time>" >= CAST('<start>' AS DATE) AND "<time>" < CAST('<end>' AS DATE)`` for a time column (and a window
    with dates), ``"<static>" IN ('<value>', …)`` for a static one (and a window with values); ``TRUE`` when
    neither applies."""
    parts: list[exp.Expression] = []
    if columns.time is not None and window.start is not None and window.end is not None:
        col = exp.column(columns.time, quoted=True)
        parts += [exp.GTE(this=col.copy(), expression=exp.cast(exp.Literal.string(window.start.isoformat()), "DATE")),
                  exp.LT(this=col, expression=exp.cast(exp.Literal.string(window.end.isoformat()), "DATE"))]
    if columns.static is not None and window.values is not None:
        parts.append(exp.column(columns.static, quoted=True).isin(*[exp.Literal.string(v) for v in window.values]))
    return exp.and_(*parts) if parts else exp.true()


def filter_inputs(sql: str, columns: Mapping[tuple[str, str], PartitionColumns], window: Window) -> str:
    """``sql`` (one query, DuckDB's dialect) with every read of an input in ``columns`` (``(schema, table)`` →
    its partition columns the window restricts) restricted to the rows of ``window``
    (:func:`window_predicate`); DuckDB SQL. ``sql`` itself when it reads none of them.

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
            window_predicate(column, window))
        table.replace(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True))))
        changed = True
    return tree.sql(dialect="duckdb") if changed else sql
