"""Metrics (a business's indicators) declared on a gold table, and the metrics port they are materialized into.

A gold table declares them in its ODCS ``customProperties``::

    - property: metrics
      value:
        - name: revenue                  # snake_case, unique within the table
          description: Discounted revenue.
          owner: sales-operations        # team; default: the product's team
          expression: sum(revenue)       # DuckDB SQL over the table's columns, with an aggregate function
          dimensions: [customer_nation]  # columns of the table (optional)
          time: o_orderdate              # a date or timestamp column of the table
          grain: month                   # day | week | month | quarter | year
          unit: USD                      # optional

They become the gold table ``<table>__metrics`` of the same product (asset ``[domain, gold, <table>__metrics]``),
a port like any other, built by the ordinary write–audit–publish step from SQL generated here: one row per
metric × period × combination of dimension values, with columns ``metric`` (VARCHAR), ``period`` (DATE, the
first day of the grain period; weeks start on Monday), ``dimensions`` (VARCHAR: a JSON object of dimension
name → value as text, keys in declared order, ``{}`` without dimensions) and ``value`` (DOUBLE). Rows whose time
column is NULL are left out; each metric is grouped by all its dimensions (no roll-up rows). Checks:
``primary_key`` (metric, period, dimensions) and ``<column>_required`` on every column (``value`` not null).

Of a gold table partitioned by time alone, the metrics table is partitioned the same way on ``period`` when each
metric's periods nest in the table's partitions (:func:`metrics_partitioning`: every metric's ``time`` is the
partition column and its grain one of :data:`NESTED_GRAINS`), so a new partition recomputes its own periods only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import sqlglot
from sqlglot import exp

from mesh_assets.contract.model import Column, Metric, Partitioning, Rule, Table, TimePartitions
from mesh_assets.contract.rules import constraint_rules, primary_key_rule

GRAINS = ("day", "week", "month", "quarter", "year")
DECLARATION_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")  # metric and label names, matched in full
METRIC_FIELDS = ("name", "description", "owner", "expression", "dimensions", "time", "grain", "unit")
METRICS_SUFFIX = "__metrics"
# A partition granularity → the grains whose periods lie within one of its partitions (a month holds its days;
# DuckDB's ``date_trunc('week', …)`` weeks start on Monday, so they nest in weekly partitions starting on Monday
# only; an hour holds no day).
NESTED_GRAINS = {"hour": (), "day": ("day",), "week": ("day", "week"), "month": ("day", "month")}


class DeclarationError(ValueError):
    """A metric or label declaration cannot be used; ``location`` is the field's path inside the declaration
    (appended to the ``customProperties`` entry's path by the contract loader)."""

    def __init__(self, location: list[str | int], message: str):
        self.location = location
        super().__init__(message)


def declarations(value: Any, kind: str, fields: tuple[str, ...], example: str) -> Iterator[tuple[int, dict, str]]:
    """``(index, item, name)`` of each declaration in ``value``, a list of mappings with only ``fields`` and a
    snake_case ``name`` (at most 63 characters) unique in the list.

    Raises:
        DeclarationError: ``value`` is not a non-empty list of such mappings (``kind`` names them).
    """
    if not isinstance(value, list) or not value:
        raise DeclarationError([], f"{kind}s must be a list of {{{', '.join(fields)}}}")
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise DeclarationError([i], f"each {kind} is a mapping: {{{', '.join(fields)}}}")
        unknown = sorted(set(item) - set(fields))
        if unknown:
            raise DeclarationError([i, unknown[0]], f"unknown {kind} field(s) {', '.join(unknown)}; use "
                                                    f"{', '.join(fields)}")
        name = item.get("name")
        if not isinstance(name, str) or not DECLARATION_NAME.fullmatch(name):
            raise DeclarationError([i, "name"], f"{kind} name {name!r} must be snake_case (at most 63 characters), "
                                                f"e.g. {example}")
        if name in seen:
            raise DeclarationError([i, "name"], f"{kind} '{name}' is declared twice; {kind} names are unique per "
                                                "table")
        seen.add(name)
        yield i, item, name


def parse_expression(text: Any, location: list[str | int], what: str) -> exp.Expression:
    """``text`` parsed by sqlglot as one DuckDB expression. Raises :class:`DeclarationError`."""
    if not isinstance(text, str) or not text.strip():
        raise DeclarationError(location, f"set the {what} as a SQL expression")
    try:
        parsed = sqlglot.parse_one(text, dialect="duckdb")
    except sqlglot.errors.ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise DeclarationError(location, f"{what} {text!r} is not valid DuckDB SQL: "
                                         f"{first.get('description', exc)}") from None
    if isinstance(parsed, exp.Query) or parsed.find(exp.Query) is not None:
        raise DeclarationError(location, f"{what} {text!r} may not hold a query; write an expression over the "
                                         "table's columns")
    return parsed


def parse_metrics(value: Any, columns: dict[str, str], team: str) -> list[Metric]:
    """The metrics declared by one ``customProperties`` ``metrics`` entry of a gold table.

    ``columns`` maps the table's column names to their ODCS logical types; ``team`` is the default owner.

    Raises:
        DeclarationError: the first problem found, located inside the entry's ``value`` (e.g. ``[2,
            'expression']``): not a list, a missing or unknown field, a duplicate or non-snake_case name, an
            unknown column, a time column that is no date/timestamp, a bad grain, an expression that does not
            parse, holds a query or window, or aggregates nothing.
    """
    metrics: list[Metric] = []
    for i, item, name in declarations(value, "metric", METRIC_FIELDS, "late_shipment_rate"):
        for field in ("description", "expression", "time", "grain"):
            if not isinstance(item.get(field), str) or not item[field].strip():
                raise DeclarationError([i, field], f"metric '{name}' needs a {field}"
                                                   + (f" ({' | '.join(GRAINS)})" if field == "grain" else ""))
        if item["grain"] not in GRAINS:
            raise DeclarationError([i, "grain"], f"grain {item['grain']!r} of metric '{name}' is unknown; use "
                                                 f"one of {', '.join(GRAINS)}")
        if columns.get(item["time"]) not in ("date", "timestamp"):
            temporal = _of(columns, ("date", "timestamp"))
            raise DeclarationError([i, "time"], f"time {item['time']!r} of metric '{name}' must name a date or "
                                                f"timestamp column of the table ({temporal})")
        dimensions = item.get("dimensions") or []
        if not isinstance(dimensions, list) or len(set(map(str, dimensions))) != len(dimensions):
            raise DeclarationError([i, "dimensions"], f"dimensions of metric '{name}' must be a list of distinct "
                                                      "column names")
        for j, dim in enumerate(dimensions):
            if dim not in columns:
                raise DeclarationError([i, "dimensions", j], f"dimension {dim!r} of metric '{name}' is not a "
                                                             f"column of the table ({_of(columns)})")
        _check_aggregate(item["expression"], columns, [i, "expression"], name)
        metrics.append(Metric(name, item["description"].strip(), str(item.get("owner") or team),
                              item["expression"].strip(), tuple(dimensions), item["time"], item["grain"],
                              str(item.get("unit") or "")))
    return metrics


def _of(columns: dict[str, str], types: tuple[str, ...] | None = None) -> str:
    names = [c for c, t in columns.items() if types is None or t in types]
    return "columns: " + (", ".join(names) if names else "none")


def _check_aggregate(text: str, columns: dict[str, str], location: list[str | int], name: str) -> None:
    parsed = parse_expression(text, location, f"expression of metric '{name}'")
    if parsed.find(exp.Window) is not None:
        raise DeclarationError(location, f"expression {text!r} of metric '{name}' uses a window function; a "
                                         "metric aggregates the rows of each period, e.g. sum(revenue)")
    if parsed.find(exp.AggFunc) is None:
        raise DeclarationError(location, f"expression {text!r} of metric '{name}' aggregates nothing; wrap the "
                                         "column in an aggregate function, e.g. sum(revenue), "
                                         "count(DISTINCT l_orderkey), avg(l_discount)")
    for column in parsed.find_all(exp.Column):
        if column.table or column.name not in columns:
            raise DeclarationError(location, f"expression of metric '{name}' reads {column.sql('duckdb')!r}, "
                                             f"which is not a column of the table ({_of(columns)})")


def metrics_sql(table: str, metrics: list[Metric] | tuple[Metric, ...]) -> str:
    """The SELECT computing every metric of the gold table ``table`` (its own domain's ``gold.<table>``):
    one ``UNION ALL`` branch per metric, grouped by period and dimension values."""
    branches = []
    for m in metrics:
        dims = ", ".join(f"{_literal(d)}, CAST({_quote(d)} AS VARCHAR)" for d in m.dimensions)
        branches.append(
            f"SELECT {_literal(m.name)} AS metric,\n"
            f"       CAST(date_trunc({_literal(m.grain)}, {_quote(m.time)}) AS DATE) AS period,\n"
            f"       CAST(json_object({dims}) AS VARCHAR) AS dimensions,\n"
            f"       CAST({m.expression} AS DOUBLE) AS value\n"
            f"FROM gold.{_quote(table)}\n"
            f"WHERE {_quote(m.time)} IS NOT NULL\n"
            "GROUP BY ALL")
    return f"/* metrics of gold.{table}, generated from its contract */\n" + "\nUNION ALL\n".join(branches)


def metrics_table(table: Table, team: str) -> Table:
    """The gold table ``<table>__metrics`` computing ``table.metrics``: same product, visibility and SLAs as
    ``table``; checks ``primary_key`` (metric, period, dimensions) and ``value_required``."""
    names = ", ".join(m.name for m in table.metrics)
    columns = (
        Column("metric", "string", "VARCHAR", f"Metric name, one of {names} (see the metrics metadata of "
                                              f"{table.name}).", True, False, 1),
        Column("period", "date", "DATE", "First day of the grain period of the metric's time column (weeks start "
                                         "on Monday).", True, False, 2),
        Column("dimensions", "string", "VARCHAR", "JSON object of the metric's dimension columns and their values "
                                                  "as text, in declared order; {} without dimensions.", True, False, 3),
        Column("value", "number", "DOUBLE", "Value of the metric for the period and dimension values, in the "
                                            "metric's unit.", True),
    )
    rules = (primary_key_rule(["metric", "period", "dimensions"]), *required_rules(columns))
    partitioning = metrics_partitioning(table)
    name = f"{table.name}{METRICS_SUFFIX}"
    description = (f"Metrics of {table.domain}.{table.name} ({names}): one row per metric, period and combination "
                   f"of dimension values. Owner: {team}.")
    return Table(table.domain, table.product, name, "gold", description, columns, rules, table.visibility, None,
                 None, table.slas, table.contract_path, sql=metrics_sql(table.name, table.metrics),
                 partitioning=partitioning)


def metrics_partitioning(table: Table) -> Partitioning | None:
    """The partitioning of ``table``'s metrics table: ``table``'s time partitions on the DATE column ``period``
    when ``table`` is partitioned by time alone and every metric's periods nest in its partitions (``time`` the
    partition column, ``grain`` in :data:`NESTED_GRAINS`; a ``week`` grain in weeks starting on Monday); else
    ``None``, and the metrics are recomputed from every partition at each run."""
    time = table.partitioning.time if table.partitioning is not None and table.partitioning.static is None else None
    if time is None:
        return None
    for m in table.metrics:
        if m.time != time.column or m.grain not in NESTED_GRAINS[time.granularity] or (
                m.grain == "week" and time.week_start != 1):
            return None
    return Partitioning(time=TimePartitions("period", time.granularity, time.start, time.end, time.timezone))


def required_rules(columns: tuple[Column, ...]) -> list[Rule]:
    """A ``<column>_required`` rule per required column of a derived table, as the contract loader makes them."""
    return [r for c in columns if c.required for r in constraint_rules({"name": c.name, "required": True}, [])]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
