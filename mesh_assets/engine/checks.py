"""Run a table's contract rules on a snapshot where it lies, as SQL on its engine, DuckDB or Spark
(docs/architecture.md).

Row-level rules are Pandera checks on Pandera's ibis backend (``in_range``, ``str_length``,
``str_contains``, ``isin``, …): each yields the boolean "row is valid" expression Pandera builds, and all of a
table's row-level rules are counted in ONE aggregate query. Failing rows are then sampled with a ``LIMIT``, so
a failing check costs about what a passing one does (Pandera's own ``validate`` collects every failure case:
898 s on 5.5 M failing rows of lineitem here, against 1.6 s when valid).

On Spark the same Ibis expressions compile to Spark SQL through Ibis's pyspark backend, so a check has the
same name, rule and metadata on both engines. Pandera's own pyspark backend is not used: its built-in checks
return one boolean per check (``filter(~cond).limit(1).count() == 0``, one Spark job each), with no count of
failing rows (pandera/backends/pyspark/builtin_checks.py, Pandera 0.35).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
from collections.abc import Collection
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir
import pandera.ibis as pa
from pandera.api.ibis.types import IbisData
from pandera.backends.ibis.register import register_ibis_backends

from mesh_assets.contract.model import Rule, Table
from mesh_assets.contract.rules import rule_query
from mesh_assets.engine.outcomes import CheckOutcome
from mesh_assets.engine.sql_session import DuckDBSession, QueryError, SqlSession

ROW_LEVEL = ("not_null", "bound", "length", "pattern", "valid_values", "not_missing")
_BOUND_CHECKS = {">=": pa.Check.ge, ">": pa.Check.gt, "<=": pa.Check.le, "<": pa.Check.lt}


def run_rules(con: duckdb.DuckDBPyConnection | SqlSession, relation: str, table: Table, sample_rows: int,
              targets: dict[str, str] | None = None) -> list[CheckOutcome]:
    """Evaluate every rule of ``table`` on the relation named ``relation`` (e.g. ``silver.orders``) of a DuckDB
    connection or an engine's :class:`SqlSession`.

    ``targets`` gives, per ``foreign_key`` rule name, the relation it references (``customers.nations``).
    Cost: one aggregate scan for all row-level rules and the row count, one scan per uniqueness rule, per
    foreign key (an anti-join) and per SQL rule, plus one ``LIMIT sample_rows`` query per failing rule. Each
    query is compiled once; a passing check's ``sql`` is the query that measured it, a failing check's the
    query that lists its failing rows. A foreign key's check also records ``orphan_rows``,
    ``distinct_orphan_keys`` and ``null_keys`` (rows with a null key part, which are not checked). A SQL rule may
    read any relation of the session besides ``relation`` (the step registers the tables it reads); when its
    query fails, its check fails with the engine's error and every other rule is still evaluated.
    """
    register_ibis_backends()
    session = DuckDBSession(con) if isinstance(con, duckdb.DuckDBPyConnection) else con
    t = session.table(relation)
    valid = {r.name: _valid_expr(t, r) for r in table.rules if r.kind in ROW_LEVEL}
    # primary keys: rows with a null key part (failing); foreign keys: rows with a null key part (not checked)
    null_keys = {r.name: _all_not_null(t, r.columns) for r in table.rules if r.kind in ("primary_key", "foreign_key")}
    aggregate = t.aggregate(
        __rows=t.count(),
        **{f"f{i}": ibis.ifelse(expr, 0, 1).sum() for i, expr in enumerate([*valid.values(), *null_keys.values()])},
    )
    aggregate_sql = ibis.to_sql(aggregate)
    counts = list(aggregate.to_pyarrow().to_pylist()[0].values())
    rows = int(counts.pop(0))
    failing = dict(zip([*valid, *(f"{n}__nulls" for n in null_keys)], (int(v or 0) for v in counts)))
    keys = table.primary_key
    outcomes = []
    for rule in table.rules:
        sample_expr: ir.Table | None = None
        measure_sql = aggregate_sql
        extra: dict[str, Any] = {}
        if rule.kind in ROW_LEVEL:
            bad = failing[rule.name]
            sample_expr = t.filter(~valid[rule.name].fill_null(False)).select(*_dedupe([*keys, *rule.columns]))
        elif rule.kind in ("duplicates", "primary_key"):
            distinct = t.select(*rule.columns).distinct().count()
            measure_sql = ibis.to_sql(distinct)
            bad = rows - _scalar(distinct) + failing.get(f"{rule.name}__nulls", 0)
            groups = t.group_by(list(rule.columns)).aggregate(rows=t.count())
            sample_expr = groups.filter(groups.rows > 1)
            if rule.kind == "primary_key":
                sample_expr = sample_expr.union(t.filter(~null_keys[rule.name]).select(*rule.columns)
                                                .mutate(rows=ibis.literal(1, "int64")))
        elif rule.kind == "foreign_key":
            target = session.table((targets or {})[rule.name]).view()
            columns = list(rule.columns)
            orphans = t.filter(_all_not_null(t, rule.columns)).anti_join(
                target, [t[a] == target[b] for a, b in zip(columns, rule.params["columns"])])
            measure_sql = ibis.to_sql(orphans.count())
            bad = _scalar(orphans.count())
            sample_expr = orphans.group_by(columns).aggregate(rows=orphans.count())
            extra["orphan_rows"] = bad
            extra["distinct_orphan_keys"] = int(sample_expr.count().to_pyarrow().as_py()) if bad else 0
            extra["null_keys"] = failing[f"{rule.name}__nulls"]  # rows not checked: a key part is null
        elif rule.kind == "row_count":
            bad = rows
        else:  # sql
            measure_sql = rule_query(rule, relation)
            try:
                result = session.query(measure_sql)
            except QueryError as exc:
                outcomes.append(_query_failed(rule, rows, measure_sql, str(exc), session.engine))
                continue
            bad = result[0][0] if result and result[0] else None
        outcome = _outcome(rule, rows, bad, sample_expr, sample_rows, measure_sql)
        outcome.metadata.update(extra)
        outcomes.append(outcome)
    return outcomes


def _query_failed(rule: Rule, rows: int, sql: str, message: str, engine: str) -> CheckOutcome:
    """A failed check for a ``sql`` rule whose query failed on ``engine``: the error, for people, is in
    ``error`` (values quoted in the engine's message replaced by ``'…'``: a value of the table must not reach
    the check's metadata), ``query_failed`` is true; the rule's severity decides whether it blocks."""
    kind, colon, _ = message.partition(":")
    metadata: dict[str, Any] = {
        "rows_checked": rows, "expectation": rule.expectation, "query_failed": True,
        "error_type": kind.strip() if colon and len(kind) < 40 else "query error",
        "error": f"the rule's query failed on {engine}: {QUOTED_VALUE.sub(chr(39) + '…' + chr(39), message)}. Fix "
                 "the query in the contract ({object} stands for the table, {property} for the column; `mesh "
                 "validate` plans it against the tables it reads)",
        "rule": rule.source, "sql": sql}
    return CheckOutcome(rule.name, False, rule.blocking, rule.severity, rule.description, metadata)


QUOTED_VALUE = re.compile(r"'(?:[^']|'')*'")  # a string literal in an engine's message: possibly a value
REDACTED = "<masked>"  # what a check sample shows instead of a sensitive column's value
WHOLE_RECORD = "raw_line"  # a sample field holding a whole source record (a bronze table's rejects)


def redact_samples(outcomes: list[CheckOutcome], sensitive: Collection[str]) -> list[CheckOutcome]:
    """``outcomes`` with every clear value of a ``sensitive`` column replaced by ``<masked>`` (null stays
    null), in place, and returned: in the failing-row ``sample`` of each check; a whole source record
    (``raw_line`` of rejects) when any column is sensitive, since it may hold them all; a SQL rule's
    non-numeric ``observed_value``, which may be a value of the table; and the engine's message of a SQL rule
    whose query failed (only the kind of error stays, e.g. ``Conversion Error``). Check metadata goes to the
    Dagster event log and OpenLineage, which readers of the port without a PII grant may see
    (docs/governance.md)."""
    if not sensitive:
        return outcomes
    hidden = {*sensitive, WHOLE_RECORD}
    for outcome in outcomes:
        sample = outcome.metadata.get("sample")
        if isinstance(sample, list):
            outcome.metadata["sample"] = [
                {k: REDACTED if k in hidden and v is not None else v for k, v in row.items()}
                if isinstance(row, dict) else REDACTED for row in sample]
        if outcome.metadata.get("query_failed"):  # an engine's message may hold a value, quoted or not
            outcome.metadata["error"] = (f"the rule's query failed ({outcome.metadata['error_type']}; the message "
                                         "is not shown: the table has sensitive columns). Fix the query in the "
                                         "contract")
        elif "error" in outcome.metadata and outcome.metadata.get("observed_value") is not None:  # not a number
            outcome.metadata["observed_value"] = REDACTED
            outcome.metadata["error"] = "the rule's query returned a value that is not a number (not shown: the " \
                                        "table has sensitive columns)"
    return outcomes


def _scalar(expr: ir.Scalar) -> int:
    return int(expr.to_pyarrow().as_py() or 0)


def _outcome(rule: Rule, rows: int, measured: Any, sample_expr: ir.Table | None, sample_rows: int,
             measure_sql: str) -> CheckOutcome:
    counted = rule.kind not in ("row_count", "sql")
    value = measured
    if counted and rule.unit == "percent":
        value = 100.0 * measured / rows if rows else 0.0
    metadata: dict[str, Any] = {"rows_checked": rows, "expectation": rule.expectation}
    try:
        passed = value is not None and rule.passes(value if isinstance(value, (int, float)) else float(value))
    except (TypeError, ValueError):
        passed = False
        metadata["error"] = f"the rule's query returned {value!r}, not a number"
    if counted:
        metadata["failing_rows"] = int(measured)
        metadata["pass_rate"] = round(1 - measured / rows, 6) if rows else 1.0
        if rule.unit == "percent":
            metadata["failing_percent"] = round(float(value), 6)
    else:
        metadata["observed_value"] = _jsonable(value)
    metadata["rule"] = rule.source
    metadata["sql"] = measure_sql
    if counted and measured and sample_expr is not None:
        metadata["sql"] = ibis.to_sql(sample_expr)
        metadata["sample"] = [{k: _jsonable(v) for k, v in row.items()}
                              for row in sample_expr.limit(sample_rows).to_pyarrow().to_pylist()]
    return CheckOutcome(rule.name, passed, rule.blocking, rule.severity, rule.description, metadata)


def _valid_expr(t: ir.Table, rule: Rule) -> ir.BooleanValue:
    """Boolean "row satisfies the rule"; nulls pass every rule except ``not_null`` and ``not_missing``."""
    column = rule.columns[0]
    col = t[column]
    if rule.kind == "not_null":
        return col.notnull()
    if rule.kind == "not_missing":
        values = [v for v in rule.params["values"] if v is not None]
        expr = _pandera(t, column, pa.Check.notin(values, ignore_na=False)) if values else ibis.literal(True)
        return expr.fill_null(True) & col.notnull() if None in rule.params["values"] else expr.fill_null(True)
    if rule.kind == "bound":
        check = _BOUND_CHECKS[rule.params["op"]](_literal_for(col, rule.params["value"]))
    elif rule.kind == "length":
        check = pa.Check.str_length(min_value=rule.params.get("min"), max_value=rule.params.get("max"))
    elif rule.kind == "pattern":
        check = pa.Check.str_contains(rule.params["pattern"])
    else:  # valid_values
        check = pa.Check.isin([_literal_for(col, v) for v in rule.params["values"]])
    return _pandera(t, column, check) | col.isnull()


def _pandera(t: ir.Table, column: str, check: pa.Check) -> ir.BooleanValue:
    """The expression Pandera's ibis backend builds for ``check`` on ``t[column]``, bound to ``t``.

    Pandera returns a one-column projection of ``t``; its value expression is taken so that every rule of a
    table can be summed in one aggregate over ``t``.
    """
    projection = check._check_fn(IbisData(t, column), **check._check_kwargs)
    return projection.op().values[column].to_expr()


def _all_not_null(t: ir.Table, columns: tuple[str, ...]) -> ir.BooleanValue:
    expr = ibis.literal(True)
    for c in columns:
        expr = expr & t[c].notnull()
    return expr


def _literal_for(col: ir.Column, value: Any) -> Any:
    """Contract values arrive as YAML scalars; compare dates as dates and decimals exactly."""
    dtype = col.type()
    if isinstance(value, str) and dtype.is_date():
        return dt.date.fromisoformat(value)
    if isinstance(value, str) and dtype.is_timestamp():
        return dt.datetime.fromisoformat(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and dtype.is_decimal():
        return decimal.Decimal(str(value))
    return value


def _dedupe(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (decimal.Decimal, dt.date, dt.datetime, dt.time, dt.timedelta)):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value
