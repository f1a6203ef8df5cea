"""Contract rules: every property constraint and ODCS ``quality[]`` entry of a table, as one :class:`Rule` each.

A rule measures one number on a table (failing rows, a row count, or the value of a SQL query) and compares it
with a threshold. Property constraints (``required``, ``unique``, ``primaryKey``, ``logicalTypeOptions``) are
rules whose threshold is "0 failing rows". Sources: ODCS v3.1 "Data quality" (library metrics, operators,
``unit``, ``type: sql``) and "Logical type options"; https://bitol-io.github.io/open-data-contract-standard/.

Every rule has a severity, ``error`` (blocking) by default. ODCS gives ``severity`` to ``quality[]`` rules only;
its JSON Schema refuses it on a property or a relationship ("Unevaluated properties are not allowed"), so the
severity of a constraint or a relationship is the framework's ``customProperties`` entry ``severity`` on the
element that declares the rule (:func:`constraint_severities`, :func:`relationship_rule`; docs/contracts.md).
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from mesh_assets.contract.model import Rule, Table
from mesh_assets.sql.functions import FunctionNotAllowed, check_functions
from mesh_assets.sql.inputs import InputRef, SqlInputError, find_inputs, parse_select

OPERATORS = (
    "mustBe",
    "mustNotBe",
    "mustBeGreaterThan",
    "mustBeGreaterOrEqualTo",
    "mustBeLessThan",
    "mustBeLessOrEqualTo",
    "mustBeBetween",
    "mustNotBeBetween",
)
METRICS = ("nullValues", "missingValues", "invalidValues", "duplicateValues", "rowCount")
SEVERITIES = ("error", "warning", "info")
# JSON Schema `format` values (draft 2020-12 §7.3) we can check, as full-match regular expressions.
FORMATS = {
    "email": r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
    "uuid": r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "uri": r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]*$",
    "ipv4": r"^((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$",
    "date": r"^\d{4}-\d{2}-\d{2}$",
}
# logicalTypeOptions keys (ODCS v3.1) per logical type, and the rule each one becomes.
TYPE_OPTIONS = {
    "string": ("minLength", "maxLength", "pattern", "format"),
    "integer": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format"),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format"),
    "date": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format"),
    "timestamp": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format", "timezone"),
    "time": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "format"),
    "boolean": (),
}
CHECK_NAME = re.compile(r"^[A-Za-z0-9_]+$")
SEVERITY = "severity"  # the customProperties entry that sets a constraint's or a relationship's severity
OBJECT, PROPERTY = "{object}", "{property}"  # what a sql rule's query writes for its table and its column


class RuleError(ValueError):
    """A rule in a contract cannot be checked; ``location`` is its path in the contract."""

    def __init__(self, location: list[str | int], message: str):
        self.location = location
        super().__init__(message)


def _check_query(query: str, location: list[str | int]) -> None:
    """Refuse a ``sql`` rule's query unless it is one query calling only the functions of
    mesh_assets.sql.functions (``{object}`` and ``{property}`` stand for the table and the column)."""
    try:
        check_functions(parse_select(query.replace(OBJECT, "rule_object").replace(PROPERTY, "rule_property")))
    except (SqlInputError, FunctionNotAllowed) as exc:
        raise RuleError(location, f"the sql rule's query: {exc}") from None


def rule_query(rule: Rule, relation: str) -> str:
    """The query of a ``sql`` rule as it runs: ``{object}`` replaced by ``relation`` (``silver.orders``, the
    audited table) and ``{property}`` by the rule's column, quoted (a column-level rule; a table-level rule's
    ``{property}`` was refused when the contract loaded)."""
    query = str(rule.params["query"]).replace(OBJECT, relation)
    return query.replace(PROPERTY, f'"{rule.columns[0]}"') if rule.columns else query


def rule_inputs(rule: Rule, table: Table) -> list[InputRef]:
    """The tables a ``sql`` rule of ``table`` reads besides ``table`` itself, found in its query with sqlglot
    (mesh_assets.sql.inputs: ``<layer>.<table>`` of its domain, ``<domain>.<table>`` for another domain's output
    port); empty for every other kind of rule. ``previous.<table>`` (the table's published snapshot) is no input.

    Raises:
        SqlInputError: the query names a table the rules of mesh_assets.sql.inputs refuse.
    """
    if rule.kind != "sql":
        return []
    refs = find_inputs(rule_query(rule, f"{table.layer}.{table.name}"), table.domain)
    return [ref for ref in refs if ref.key != table.key]


def constraint_severities(column: dict[str, Any], location: list[str | int]) -> dict[str, str]:
    """The severity of each constraint of one property, by ODCS keyword (``required``, ``enum``, ``maximum``, …;
    ``primaryKey`` for the key the property belongs to), from its ``customProperties`` entry ``severity``: a
    severity for every constraint of the property (``value: warning``) or one per keyword (``value: {maximum:
    warning, enum: warning}``). Constraints it does not name are ``error``.

    Raises:
        RuleError: an unknown severity, a keyword that is no constraint of the property, or a malformed value.
    """
    entries = [(k, p) for k, p in enumerate(column.get("customProperties") or [])
               if isinstance(p, dict) and p.get("property") == SEVERITY]
    if not entries:
        return {}
    k, entry = entries[-1]
    where: list[str | int] = [*location, "customProperties", k, "value"]
    declared = [key for key in ("required", "unique", "enum", "primaryKey") if column.get(key)]
    declared += list((column.get("logicalTypeOptions") or {}))
    value = entry.get("value")
    if isinstance(value, str):
        value = dict.fromkeys(declared, value)
    if not isinstance(value, dict) or not value:
        raise RuleError(where, "write the severity of the property's constraints as one severity (value: warning) "
                               "or per constraint (value: {maximum: warning, required: error})")
    for key, severity in value.items():
        if key not in declared:
            raise RuleError([*where, key], f"'{key}' is no constraint of this property; name one of "
                                           f"{', '.join(declared) or '(none: the property has no constraint)'}")
        _severity(severity, [*where, key])
    return {key: str(severity).lower() for key, severity in value.items()}


def _severity(value: Any, where: list[str | int]) -> str:
    severity = str(value or "").lower()
    if severity not in SEVERITIES:
        raise RuleError(where, f"'{value}' is not a severity; use error, warning or info")
    return severity


def constraint_rules(column: dict[str, Any], location: list[str | int]) -> list[Rule]:
    """Rules from one property's constraints: ``required``, ``unique``, ``enum`` and ``logicalTypeOptions``,
    each with the severity :func:`constraint_severities` gives it.

    ``column`` is the property as written in the contract. ``primaryKey`` is a table rule
    (see :func:`primary_key_rule`). Raises :class:`RuleError` for an option the logical type has no meaning for,
    or a severity :func:`constraint_severities` refuses.
    """
    name, logical = column["name"], column.get("logicalType")
    severities = constraint_severities(column, location)
    rules: list[Rule] = []
    if column.get("required"):
        rules.append(Rule(f"{name}_required", "not_null", (name,), description=f"{name} is never null",
                          source={"required": True}, dimension="completeness"))
    if column.get("unique"):
        rules.append(Rule(f"{name}_unique", "duplicates", (name,), description=f"{name} values are unique",
                          source={"unique": True}, dimension="uniqueness"))
    enum = column.get("enum")
    if enum:  # ODCS v3.2 (RFC 0033): the allowed values of the property
        values = [e.get("value") if isinstance(e, dict) else e for e in enum]
        rules.append(Rule(f"{name}_valid_values", "valid_values", (name,), {"values": values},
                          description=f"{name} is one of {', '.join(map(str, values))}", source={"enum": enum},
                          dimension="conformity"))
    options = column.get("logicalTypeOptions") or {}
    allowed = TYPE_OPTIONS.get(logical, ())
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    for key, value in options.items():
        where = [*location, "logicalTypeOptions", key]
        if key not in allowed:
            raise RuleError(where, f"'{key}' is not an option of logicalType '{logical}'; "
                                   f"use one of {', '.join(allowed) or '(none)'}")
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()
        src = {"logicalTypeOptions": {key: value}}
        if key in bounds:
            if isinstance(value, bool):  # ODCS 3.0 wrote exclusiveMinimum: true; 3.1 takes the bound itself
                raise RuleError(where, f"'{key}' must be the bound itself (ODCS v3.1), not a boolean")
            rules.append(Rule(f"{name}_{snake}", "bound", (name,), {"op": bounds[key], "value": value},
                              description=f"{name} {bounds[key]} {value}", source=src, dimension="accuracy"))
        elif key in ("minLength", "maxLength"):
            if not isinstance(value, int) or value < 0:
                raise RuleError(where, f"'{key}' must be a non-negative integer")
            params = {"min": value} if key == "minLength" else {"max": value}
            word = "at least" if key == "minLength" else "at most"
            rules.append(Rule(f"{name}_{snake}", "length", (name,), params,
                              description=f"{name} has {word} {value} characters", source=src,
                              dimension="conformity"))
        elif key == "pattern":
            _check_regex(value, where)
            rules.append(Rule(f"{name}_pattern", "pattern", (name,), {"pattern": value},
                              description=f"{name} matches /{value}/", source=src, dimension="conformity"))
        elif key == "format":
            if logical != "string":
                continue  # date/number formats describe rendering, not content of a typed column
            if value not in FORMATS:
                raise RuleError(where, f"format '{value}' cannot be checked; use one of {', '.join(FORMATS)}")
            rules.append(Rule(f"{name}_format", "pattern", (name,), {"pattern": FORMATS[value]},
                              description=f"{name} is a valid {value}", source=src, dimension="conformity"))
    return [replace(rule, severity=severities.get(next(iter(_keyword(rule.source))), "error")) for rule in rules]


def _keyword(source: dict[str, Any]) -> dict[str, Any]:
    """The constraint's ODCS keyword as the only key: ``{"maximum": 5}`` for ``logicalTypeOptions``."""
    return source.get("logicalTypeOptions") or source


def primary_key_severity(props: list[tuple[dict[str, Any], list[str | int]]], location: list[str | int]) -> str:
    """The severity of a table's primary key: what its key columns' ``severity`` entries give ``primaryKey``
    (:func:`constraint_severities`), ``error`` when none does. ``props`` are the table's properties (inherited
    ones included), each with where the contract declares it; ``location`` is the table's ``properties``.

    Raises:
        RuleError: two key columns give it different severities (a malformed entry is reported with the
            property's constraints, by :func:`constraint_rules`, and ignored here).
    """
    given: dict[str, str] = {}
    for prop, where in props:
        if isinstance(prop, dict) and prop.get("primaryKey"):
            try:
                severity = constraint_severities(prop, where).get("primaryKey")
            except RuleError:
                continue
            if severity is not None:
                given[str(prop.get("name"))] = severity
    if len(set(given.values())) > 1:
        raise RuleError(location, "the key columns give the primary key different severities "
                                  f"({', '.join(f'{c}: {s}' for c, s in given.items())}); give them one")
    return next(iter(given.values()), "error")


def primary_key_rule(columns: list[str], severity: str = "error") -> Rule:
    """The ``primary_key`` rule: no duplicate and no null key, over ``columns`` in ``primaryKeyPosition`` order,
    of ``severity`` (:func:`primary_key_severity`)."""
    return Rule("primary_key", "primary_key", tuple(columns), severity=severity,
                description=f"({', '.join(columns)}) is unique and never null",
                source={"primaryKey": list(columns)}, dimension="uniqueness")


def quality_rule(rule: dict[str, Any], column: str | None, columns: list[str],
                 location: list[str | int]) -> Rule:
    """A :class:`Rule` from one ODCS ``quality[]`` entry on ``column`` (``None`` for a table-level rule).

    Raises :class:`RuleError` for a type, metric, operator or argument this mesh cannot check.
    """
    rtype = rule.get("type", "library")
    metric = rule.get("metric") or rule.get("rule")
    severity = _severity(rule.get("severity") or "error", [*location, "severity"])
    unit = (rule.get("unit") or "rows").lower()
    if unit not in ("rows", "percent"):
        raise RuleError([*location, "unit"], f"unit '{unit}' is not supported; use rows or percent")
    ops = [op for op in OPERATORS if rule.get(op) is not None]
    if len(ops) > 1:
        raise RuleError(location, f"one operator per rule, found {', '.join(ops)}")
    operator = ops[0] if ops else None
    args = rule.get("arguments") or {}
    base = column or "table"
    if rtype == "sql":
        query = rule.get("query")
        if not query:
            raise RuleError([*location, "query"], "a sql rule needs a query returning one number")
        if column is None and PROPERTY in str(query):
            raise RuleError([*location, "query"], "{property} stands for the column of a property's rule; a "
                                                  "table's rule names its columns")
        _check_query(str(query), [*location, "query"])
        kind, cols, params = "sql", ((column,) if column else ()), {"query": query}
        default_name = f"{base}_sql"
    elif rtype == "library" or metric:
        if metric not in METRICS:
            raise RuleError([*location, "metric"], f"metric '{metric}' is unknown; use one of {', '.join(METRICS)}")
        default_name = f"{base}_{re.sub(r'(?<!^)(?=[A-Z])', '_', metric).lower()}"
        if metric == "rowCount":
            if column is not None:
                raise RuleError(location, "rowCount is a table-level metric; move it to the table's quality[]")
            if operator is None:
                raise RuleError(location, "rowCount needs an operator, e.g. mustBeGreaterThan: 0")
            kind, cols, params = "row_count", (), {}
        elif metric == "duplicateValues":
            cols = tuple(args.get("properties") or ([column] if column else []))
            if not cols:
                raise RuleError([*location, "arguments", "properties"],
                                "a table-level duplicateValues rule needs arguments.properties: [columns]")
            kind, params = "duplicates", {}
        else:
            if column is None:
                raise RuleError(location, f"{metric} is a property-level metric; move it under the property")
            cols = (column,)
            if metric == "nullValues":
                kind, params = "not_null", {}
            elif metric == "missingValues":
                missing = args.get("missingValues")
                if not isinstance(missing, list) or not missing:
                    raise RuleError([*location, "arguments", "missingValues"],
                                    "missingValues needs arguments.missingValues: [null, '', ...]")
                kind, params = "not_missing", {"values": missing}
            else:  # invalidValues
                if isinstance(args.get("validValues"), list):
                    kind, params = "valid_values", {"values": args["validValues"]}
                elif isinstance(args.get("pattern"), str):
                    _check_regex(args["pattern"], [*location, "arguments", "pattern"])
                    kind, params = "pattern", {"pattern": args["pattern"]}
                else:
                    raise RuleError([*location, "arguments"],
                                    "invalidValues needs arguments.validValues: [...] or arguments.pattern")
    else:
        raise RuleError([*location, "type"], f"quality type '{rtype}' cannot be checked; use library or sql")
    unknown = [c for c in cols if c not in columns]
    if unknown:
        raise RuleError(location, f"unknown column {', '.join(unknown)}; the table has {', '.join(columns)}")
    name = rule.get("id") or rule.get("name") or default_name
    if not CHECK_NAME.fullmatch(name):
        raise RuleError([*location, "id"], f"'{name}' cannot name a check; use letters, digits and '_'")
    if operator is None:
        operator, threshold = "mustBe", 0
    else:
        threshold = rule[operator]
    return Rule(name, kind, cols, params, operator, threshold, unit, severity,
                rule.get("description") or f"{metric or 'sql'} {operator} {threshold} {unit}",
                {k: v for k, v in rule.items() if v is not None}, rule.get("dimension"), tuple(location))


def _check_regex(pattern: Any, where: list[str | int]) -> None:
    try:
        re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise RuleError(where, f"not a valid regular expression: {exc}") from None


def relationship_rule(rel: dict[str, Any], column: str | None, table: str, columns: list[str],
                      location: list[str | int]) -> Rule:
    """A ``foreign_key`` rule from one ODCS v3.1 ``relationships`` entry (property level when ``column`` is
    given, else schema level with ``from``).

    References use the ODCS shorthand: ``<table>.<column>`` in the same domain, or ``<domain>.<table>.<column>``
    for another domain's gold output port; lists for composite keys. Its severity is its ``customProperties``
    entry ``severity`` (``error`` without one). Raises :class:`RuleError` for fully qualified (``…/id``)
    references, mismatched lengths, several target tables, an unknown own column or an unknown severity.
    """
    def refs(value: Any, field: str) -> list[list[str]]:
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            if not isinstance(item, str) or "/" in item or "#" in item:
                raise RuleError([*location, field], f"{item!r}: write references as <table>.<column> or "
                                                    "<domain>.<table>.<column> (shorthand)")
            out.append(item.split("."))
        return out

    if (rel.get("type") or "foreignKey") != "foreignKey":
        raise RuleError([*location, "type"], "only foreignKey relationships can be checked")
    if column is not None:
        source = [column]
    else:
        source = []
        for parts in refs(rel.get("from"), "from"):
            if len(parts) != 2 or parts[0] != table:
                raise RuleError([*location, "from"], f"'from' names columns of this table: {table}.<column>")
            source.append(parts[1])
    target = refs(rel.get("to"), "to")
    if any(len(p) not in (2, 3) for p in target) or len({tuple(p[:-1]) for p in target}) != 1:
        raise RuleError([*location, "to"], "'to' names columns of one table: <table>.<column> or "
                                           "<domain>.<table>.<column>")
    if len(target) != len(source):
        raise RuleError([*location, "to"], f"{len(source)} column(s) in 'from' but {len(target)} in 'to'")
    unknown = [c for c in source if c not in columns]
    if unknown:
        raise RuleError(location, f"unknown column {', '.join(unknown)}; the table has {', '.join(columns)}")
    domain, target_table = (target[0][0], target[0][1]) if len(target[0]) == 3 else (None, target[0][0])
    target_columns = tuple(p[-1] for p in target)
    name = (rel.get("id") or f"{'_'.join(source)}_references_{target_table}").replace("-", "_")
    if not CHECK_NAME.fullmatch(name):
        raise RuleError([*location, "id"], f"'{name}' cannot name a check; use letters, digits and '_'")
    severity = "error"
    for k, entry in enumerate(rel.get("customProperties") or []):
        if isinstance(entry, dict) and entry.get("property") == SEVERITY:
            severity = _severity(entry.get("value"), [*location, "customProperties", k, "value"])
    where = f"{domain + '.' if domain else ''}{target_table}({', '.join(target_columns)})"
    return Rule(name, "foreign_key", tuple(source),
                {"domain": domain, "table": target_table, "columns": target_columns}, severity=severity,
                description=f"every ({', '.join(source)}) exists in {where}",
                source={k: v for k, v in rel.items() if v is not None}, dimension="consistency",
                location=tuple(location))
