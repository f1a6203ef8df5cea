"""The ``properties[]`` section of a table: :class:`Column` values and the rules their constraints and
``quality[]`` entries declare (mesh_assets.contract.rules).

A column needs a name of letters, digits and ``_`` (at most 63), unique in the table, and a ``logicalType``; its
``physicalType`` is parsed by mesh_assets.contract.types. Its ``customProperties`` may give the reason it is
``declassified`` and, for a Python transform, the input columns it is ``derivedFrom``
(mesh_assets.governance.classification). A table's properties arrive with their inherited columns resolved
(mesh_assets.contract.inheritance), each at the location that declares it.
"""

from __future__ import annotations

import re
from typing import Any

from mesh_assets.contract.inheritance import DeclaredProperty
from mesh_assets.contract.model import LINEAGE_COLUMNS, Column, Report, Rule
from mesh_assets.contract.rules import RuleError, constraint_rules, quality_rule
from mesh_assets.contract.types import DEFAULT_PHYSICAL, physical_type

COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# A Python transform's column customProperties derivedFrom: "<schema>.<table>.<column>"
# (mesh_assets.governance.classification).
DERIVED_FROM = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")
MIN_DECLASSIFIED_REASON = 10  # characters: a reason, not "yes" or "true"


def custom_names(prop: dict[str, Any]) -> set[Any]:
    """The names of the ``customProperties`` entries of one contract object (a table or a property)."""
    return {p.get("property") for p in prop.get("customProperties") or [] if isinstance(p, dict)}


def parse_columns(declared: list[DeclaredProperty], loc: list[str | int], layer: str, report: Report
                  ) -> tuple[list[Column], list[Rule]]:
    """The columns of one table (``declared`` its properties, inherited ones resolved; ``loc`` the table's
    ``properties``, in the layer ``layer``) and the rules of their constraints and ``quality[]`` entries, in that
    order. Each problem is reported at the entry that declares the column. A column that cannot be used (no
    name, a duplicate, no ``logicalType``) is reported and left out; every other problem is reported too."""
    if not declared:
        report(loc, "a table needs its columns in properties[] (or inherits them: customProperties "
                    "[{property: inheritColumns, value: <table>}])")
    columns: list[Column] = []
    rules: list[Rule] = []
    for entry in declared:
        prop, where = entry.prop, list(entry.location)
        name = prop.get("name")
        if not isinstance(name, str) or not COLUMN_NAME.fullmatch(name):
            report([*where, "name"], "every column needs a name of letters, digits and '_' (at most 63)")
            continue
        if name in {c.name for c in columns}:
            report([*where, "name"], f"column '{name}' appears twice")
            continue
        if layer == "bronze" and name in LINEAGE_COLUMNS:
            report([*where, "name"], f"'{name}' is a lineage column bronze ingestion adds; rename the column")
        logical = prop.get("logicalType")
        if logical not in DEFAULT_PHYSICAL:
            report([*where, "logicalType"], f"set a logicalType, one of {', '.join(DEFAULT_PHYSICAL)}"
                                            f"{' (nested types are not supported yet)' if logical else ''}")
            continue
        try:
            physical = physical_type(prop.get("physicalType"), logical)
        except ValueError as exc:
            report([*where, "physicalType"], str(exc))
            physical = DEFAULT_PHYSICAL[logical]
        position = prop.get("primaryKeyPosition")
        if prop.get("primaryKey"):
            position = position if isinstance(position, int) and position > 0 else len(columns) + 1
        else:
            position = None
        declassified, derived_from = _lineage_properties(prop, [*where, "customProperties"], layer, report)
        columns.append(Column(name, logical, physical, str(prop.get("description") or ""),
                              bool(prop.get("required") or prop.get("primaryKey")), bool(prop.get("unique")),
                              position, prop.get("classification"), declassified, derived_from,
                              entry.location))
        try:
            rules.extend(constraint_rules(prop, where))
        except RuleError as exc:
            report(exc.location, str(exc))
    names = [c.name for c in columns]
    for entry in declared:
        for k, rule in enumerate(entry.prop.get("quality") or []):
            try:
                rules.append(quality_rule(rule, entry.prop.get("name"), names, [*entry.location, "quality", k]))
            except RuleError as exc:
                report(exc.location, str(exc))
    return columns, rules


def _lineage_properties(prop: dict[str, Any], loc: list[str | int], layer: str, report: Report
                        ) -> tuple[str | None, tuple[str, ...] | None]:
    """A column's ``declassified`` reason and ``derivedFrom`` names (mesh_assets.governance.classification)."""
    custom = {p.get("property"): p.get("value") for p in prop.get("customProperties") or []}
    reason, derived = custom.get("declassified"), custom.get("derivedFrom")
    if "declassified" in custom:
        if layer == "bronze":
            report(loc, "a bronze column's classification is what its contract declares; remove "
                        "declassified (or the column's classification)")
            reason = None
        elif not isinstance(reason, str) or len(reason.strip()) < MIN_DECLASSIFIED_REASON:
            report(loc, f"declassified needs the reason in words (at least {MIN_DECLASSIFIED_REASON} "
                        "characters) why the values no longer identify anyone, e.g. {property: "
                        "declassified, value: 'count of distinct customers per nation, an aggregate'}")
            reason = None
        elif prop.get("classification") is not None:
            report(loc, f"the column is both classified {prop['classification']!r} and declassified; keep "
                        "one of them")
            reason = None
        else:
            reason = reason.strip()
    if derived is None:
        return reason, None
    names = derived if isinstance(derived, list) else [derived]
    bad = [n for n in names if not isinstance(n, str) or not DERIVED_FROM.fullmatch(n)]
    if bad:
        report(loc, f"derivedFrom {bad!r}: name each input column <schema>.<table>.<column>, e.g. "
                    "[silver.orders.o_totalprice] ([] when no input column feeds it)")
        return reason, None
    return reason, tuple(names)
