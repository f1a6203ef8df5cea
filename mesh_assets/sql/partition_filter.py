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

import datetime as dt
from collections.abc import Mapping, Sequence

from sqlglot import exp

from mesh_assets.sql.inputs import parse_select


def window_predicate(time: tuple[str, dt.date, dt.date] | None = None,
                     static: tuple[str, Sequence[str]] | None = None) -> exp.Expression:
    """The rows of a window, as a sqlglot tree: for ``time`` (a DATE or TIMESTAMP column, the window's start and
    the start of the period after it, dates or datetimes) ``"<column>" >= CAST('<start>' AS DATE) AND "<column>"
    < CAST('<end>' AS DATE)`` (``TIMESTAMP`` for datetimes), for ``static`` (a column and the window's values)
    ``"<column>" IN ('<value>', …)``, both when both are given; ``TRUE`` for neither."""
    parts: list[exp.Expression] = []
    if time is not None:
        column, start, end = time
        col = exp.column(column, quoted=True)
        parts += [exp.GTE(this=col.copy(), expression=_moment(start)), exp.LT(this=col, expression=_moment(end))]
    if static is not None:
        column, values = static
        parts.append(exp.column(column, quoted=True).isin(*[exp.Literal.string(v) for v in values]))
    return exp.and_(*parts) if parts else exp.true()


def _moment(moment: dt.date) -> exp.Expression:
    if isinstance(moment, dt.datetime):
        return exp.cast(exp.Literal.string(moment.isoformat(sep=" ")), "TIMESTAMP")
    return exp.cast(exp.Literal.string(moment.isoformat()), "DATE")


def partition_key(value: str, key_format: str, week_start: int | None = None) -> str:
    """DuckDB SQL: the partition key of the DATE or TIMESTAMP ``value`` (a SQL expression), ``strftime`` in
    ``key_format`` of its period's start; for weekly partitions (``week_start``, the weeks' first weekday,
    1 = Monday .. 7 = Sunday, as ISO 8601 and DuckDB's ``isodow`` number them) the day of that weekday on or
    before ``value``'s day."""
    if week_start is not None:
        value = f"(CAST({value} AS DATE) - CAST((isodow({value}) + 7 - {int(week_start)}) % 7 AS INTEGER))"
    return f"strftime({value}, {exp.Literal.string(key_format).sql(dialect='duckdb')})"


def filter_inputs(sql: str, predicates: Mapping[tuple[str, str], exp.Expression]) -> str:
    """``sql`` (one query, DuckDB's dialect) with every read of an input in ``predicates`` (``(schema, table)``
    → the rows of the window in it, :func:`window_predicate`) restricted to those rows; DuckDB SQL. ``sql``
    itself when it reads none of them.

    Raises:
        mesh_assets.sql.inputs.SqlInputError: ``sql`` is not one query.
    """
    tree = parse_select(sql)
    changed = False
    for table in list(tree.find_all(exp.Table)):
        predicate = predicates.get((table.db, table.name))
        if predicate is None or not table.db:
            continue
        alias = table.alias or table.name
        inner = exp.select("*").from_(exp.table_(table.name, db=table.db, quoted=True)).where(predicate.copy())
        table.replace(exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True))))
        changed = True
    return tree.sql(dialect="duckdb") if changed else sql
