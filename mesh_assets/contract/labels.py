"""Labels: current-state attributes of an entity (a customer's value tier, whether it is at risk), declared on a
gold table and materialized into one current-state table per entity.

A gold table declares them in its ODCS ``customProperties``::

    - property: labels
      value:
        - name: value_tier                 # snake_case, unique within the table
          description: Tier by total revenue.
          entity: [c_custkey]              # key column(s) of this table; default: its primary key
          query: |                         # one row per entity; default: SELECT * FROM gold.<table>
            SELECT c.c_custkey, sum(o.revenue) AS total_revenue
            FROM gold.customer_profile AS c LEFT JOIN sales.order_lines_wide AS o ON o.o_custkey = c.c_custkey
            GROUP BY c.c_custkey
          rule:                            # the first {value, when} that holds; a last {value} is the default
            - {value: high, when: total_revenue >= 3000000}
            - {value: low}
        - name: at_risk
          description: No order in the last year of the data.
          rule: last_order IS NULL OR last_order < data_end - INTERVAL 365 DAY   # or one SQL expression

The query reads, like any transform, the domain's own tables (``gold.<t>``, …) and the output ports of other
domains its domain may read (``<domain>.<t>``, public or granted; mesh_assets.governance.access): the generated SQL goes
through the same input discovery and access checks at load and at run time.

They become the gold table ``<table>__labels`` of the same product (asset ``[domain, gold, <table>__labels]``):
the entity key column(s) with the table's types, ``label`` (VARCHAR), ``value`` (VARCHAR: the rule's value as
text, booleans ``true``/``false``) and ``since`` (TIMESTAMP WITH TIME ZONE). Each run replaces the values; an
entity whose rule yields NULL (no condition holds, no default) has no row for that label. ``since`` is the time
of the run that first produced the current value: the SQL compares with the port's published snapshot
(``previous.<table>__labels``, which every step registers for its own table), so an unchanged value keeps its
``since``, a changed one gets the run's time (DuckDB ``now()``).
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from mesh_assets.contract.metrics import DeclarationError, declarations, parse_expression, required_rules
from mesh_assets.contract.model import Column, Condition, Label, Table
from mesh_assets.contract.rules import primary_key_rule
from mesh_assets.sql.inputs import PREVIOUS, SqlInputError, parse_select

LABEL_FIELDS = ("name", "description", "entity", "query", "rule")
LABELS_SUFFIX = "__labels"
RESERVED = ("label", "value", "since")


def value_sql(label: Label) -> str:
    """The value of ``label`` per row of its query, as a DuckDB expression of type VARCHAR: its expression, or a
    ``CASE`` over its conditions (the first that holds; the default last, else NULL)."""
    if label.expression is not None:
        return f"CAST(({label.expression}) AS VARCHAR)"
    whens = " ".join(f"WHEN ({c.when}) THEN {_literal(c.value)}" for c in label.conditions if c.when is not None)
    default = next((_literal(c.value) for c in label.conditions if c.when is None), "NULL")
    return f"CAST(CASE {whens} ELSE {default} END AS VARCHAR)" if whens else f"CAST({default} AS VARCHAR)"


def parse_labels(value: Any, table: str, columns: dict[str, str], primary_key: list[str]) -> list[Label]:
    """The labels declared by one ``customProperties`` ``labels`` entry of the gold table ``table``.

    ``columns`` maps the table's column names to their ODCS logical types; ``primary_key`` is the default entity.

    Raises:
        DeclarationError: the first problem found, located inside the entry's ``value``: not a list, a missing
            or unknown field, a duplicate or non-snake_case name, an entity that is not columns of the table or
            differs between labels (one labels table per entity), a query that is not one SELECT or does not
            return the entity columns, a rule that does not parse or names a column the query does not return.
    """
    labels: list[Label] = []
    for i, item, name in declarations(value, "label", LABEL_FIELDS, "value_tier"):
        if not isinstance(item.get("description"), str) or not item["description"].strip():
            raise DeclarationError([i, "description"], f"label '{name}' needs a description")
        entity = item.get("entity", primary_key)
        entity = [entity] if isinstance(entity, str) else entity
        if not isinstance(entity, list) or not entity or any(c not in columns for c in entity):
            raise DeclarationError([i, "entity"], f"entity {entity!r} of label '{name}' must be key column(s) of "
                                                  f"{table} (columns: {', '.join(columns)})")
        if any(c in RESERVED for c in entity):
            raise DeclarationError([i, "entity"], f"an entity column may not be named {', '.join(RESERVED)}")
        if labels and tuple(entity) != labels[0].entity:
            raise DeclarationError([i, "entity"], f"label '{name}' is about ({', '.join(entity)}) but "
                                                  f"'{labels[0].name}' about ({', '.join(labels[0].entity)}); one "
                                                  "table's labels describe one entity")
        query = item.get("query") or f"SELECT * FROM gold.{table}"
        outputs = _query_columns(query, [i, "query"], name)
        missing = [c for c in entity if outputs is not None and c not in outputs]
        if missing:
            raise DeclarationError([i, "query"], f"the query of label '{name}' returns no column {missing[0]}; "
                                                 "return the entity key column(s)")
        expression, conditions = _rule(item.get("rule"), [i, "rule"], name, outputs)
        labels.append(Label(name, item["description"].strip(), tuple(entity), query.strip().rstrip(";"),
                            expression, conditions))
    return labels


def _query_columns(query: Any, location: list[str | int], name: str) -> set[str] | None:
    """The columns ``query`` returns; ``None`` when it selects ``*`` (known only at run time)."""
    if not isinstance(query, str):
        raise DeclarationError(location, f"the query of label '{name}' must be one SELECT (DuckDB SQL)")
    try:
        tree = parse_select(query)
    except SqlInputError as exc:
        raise DeclarationError(location, f"the query of label '{name}' is not usable: {exc}") from None
    selects = tree.named_selects
    return None if "*" in selects or any(isinstance(s, exp.Star) for s in tree.selects) else set(selects)


def _rule(rule: Any, location: list[str | int], name: str, outputs: set[str] | None
          ) -> tuple[str | None, tuple[Condition, ...]]:
    def check(text: Any, where: list[str | int], what: str) -> str:
        parsed = parse_expression(text, where, what)
        for column in parsed.find_all(exp.Column):
            if outputs is not None and not column.table and column.name not in outputs:
                raise DeclarationError(where, f"{what} reads {column.name!r}, which the query does not return "
                                              f"({', '.join(sorted(outputs))})")
        return str(text).strip()

    if isinstance(rule, str):
        return check(rule, location, f"rule of label '{name}'"), ()
    if not isinstance(rule, list) or not rule:
        raise DeclarationError(location, f"label '{name}' needs a rule: a SQL expression, or a list of "
                                         "{value, when} (a last {value} without when is the default)")
    conditions = []
    for j, item in enumerate(rule):
        if not isinstance(item, dict) or "value" not in item or set(item) - {"value", "when"}:
            raise DeclarationError([*location, j], "each rule entry is {value: <label value>, when: <SQL "
                                                   "condition>} (when omitted: the default, last)")
        when = item.get("when")
        if when is None and j != len(rule) - 1:
            raise DeclarationError([*location, j], "only the last entry may omit 'when' (the default value)")
        if when is not None:
            when = check(when if not isinstance(when, bool) else str(when).lower(), [*location, j, "when"],
                         f"condition of label '{name}'")
        conditions.append(Condition(_text(item["value"]), when))
    return None, tuple(conditions)


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def labels_sql(table: str, labels: tuple[Label, ...] | list[Label], entity: dict[str, str]) -> str:
    """The SELECT of the labels table of ``table``: one row per entity and label whose value is not NULL.

    ``entity`` maps the key columns to their DuckDB types. ``since`` is kept from ``previous.<labels table>``
    (the currently published labels, which the step registers) when the value did not change, else now."""
    keys = list(entity)
    branches = "\n    UNION ALL\n".join(
        "    SELECT " + ", ".join(f"CAST(q.{_quote(k)} AS {t}) AS {_quote(k)}" for k, t in entity.items())
        + f", {_literal(lb.name)} AS label, {value_sql(lb)} AS value\n    FROM ({lb.query}) AS q" for lb in labels)
    join = " AND ".join(f"p.{_quote(k)} = c.{_quote(k)}" for k in keys)
    return (f"/* labels of gold.{table}, generated from its contract */\n"
            f"WITH label_values AS (\n{branches}\n)\n"
            f"SELECT {', '.join(f'c.{_quote(k)}' for k in keys)}, c.label, c.value,\n"
            "       CAST(CASE WHEN p.value = c.value THEN p.since ELSE now() END AS TIMESTAMP WITH TIME ZONE)"
            " AS since\n"
            f"FROM label_values AS c\nLEFT JOIN {PREVIOUS}.{_quote(table + LABELS_SUFFIX)} AS p ON {join} "
            "AND p.label = c.label\nWHERE c.value IS NOT NULL")


def labels_table(table: Table) -> Table:
    """The gold table ``<table>__labels`` holding the current value of each of ``table.labels`` per entity:
    same product, visibility and SLAs as ``table``; checks ``primary_key`` (entity, label) and required."""
    entity = table.labels[0].entity
    by_name = {c.name: c for c in table.columns}
    names = ", ".join(lb.name for lb in table.labels)
    columns = (
        *(Column(k, by_name[k].logical_type, by_name[k].physical_type, by_name[k].description, True, False, i + 1,
                 by_name[k].classification)  # an entity column keeps its classification (docs/governance.md)
          for i, k in enumerate(entity)),
        Column("label", "string", "VARCHAR", f"Label name, one of {names} (see the labels metadata of "
                                             f"{table.name}).", True, False, len(entity) + 1),
        Column("value", "string", "VARCHAR", "Current value of the label for the entity, as text.", True),
        Column("since", "timestamp", "TIMESTAMP WITH TIME ZONE", "Time of the run that first produced the current "
                                                                 "value (unchanged values keep it).", True),
    )
    name = f"{table.name}{LABELS_SUFFIX}"
    rules = (primary_key_rule([*entity, "label"]), *required_rules(columns))
    description = (f"Current labels ({names}) of each {', '.join(entity)} of {table.domain}.{table.name}: one row "
                   "per entity and label, replaced at every run.")
    sql = labels_sql(table.name, table.labels, {k: by_name[k].physical_type for k in entity})
    return Table(table.domain, table.product, name, "gold", description, columns, rules, table.visibility, None,
                 None, table.slas, table.contract_path, sql=sql)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
