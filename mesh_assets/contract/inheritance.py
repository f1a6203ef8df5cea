"""Column inheritance: a table of a contract takes its columns from another table of the same contract, so an
internal bronze or silver table states only what differs (docs/contracts.md, "Short contracts").

A table's ``customProperties`` entry ``inheritColumns`` names the table it inherits from::

    - property: inheritColumns
      value: customers                                      # every column of customers, in its order
    - property: inheritColumns
      value: {from: customer_profile, except: [n_name]}     # all but these
    - property: inheritColumns
      value: {from: order_lines_wide, columns: [o_orderkey, o_custkey]}   # these, in this order
    - property: inheritColumns
      value: {from: lineitem, quality: [receipt_after_ship]}  # and these table-level quality rules, by id

An inherited column is the other table's property as written, with its constraints and column-level rules
(``required``, ``primaryKey``, ``logicalTypeOptions``, ``quality``, ``relationships``). The table's own
``properties[]`` then override: an entry named like an inherited column replaces the keys it writes (``{name:
c_name, logicalType: string, unique: true}`` adds a rule; ``quality: []`` or ``relationships: []`` drops the
inherited ones; ODCS wants the ``logicalType`` of every property); an entry with another name is a column of its
own, appended (or placed where ``columns`` lists it). Table-level ``quality`` rules are inherited only when
``quality`` lists their ids (after the table's own); table-level ``relationships`` never are.

The file stays a valid ODCS v3.1 document (``customProperties`` is ODCS's extension point, and a property needs
only its ``name``); other ODCS tools see the inheriting table's own entries only, which is why output ports
are written out in full. The loaded model (:class:`~mesh_assets.contract.model.Table`) always has every column.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesh_assets.contract.model import Report

PROPERTY = "inheritColumns"
_OPTIONS = ("from", "columns", "except", "quality")


@dataclass(frozen=True)
class DeclaredProperty:
    """One column (or table-level quality rule) of a table as the loader reads it: ``prop`` the property
    mapping (inherited keys merged with the table's own) or the rule, ``location`` where the contract declares
    it — the table's own entry when it writes one, else the inherited table's entry (``["schema", i,
    "properties", j]``, ``["schema", i, "quality", j]``)."""

    prop: dict[str, Any]
    location: tuple[str | int, ...]


def declared_properties(objects: list[Any], index: int, report: Report) -> list[DeclaredProperty]:
    """The properties of ``objects[index]`` (a ``schema[]`` entry) with its inherited columns resolved.

    Problems (an unknown table, a cycle, a column named in ``columns``/``except`` that the other table lacks, a
    malformed value) are reported at the ``inheritColumns`` entry with their fix; the table then has its own
    entries only.
    """
    return _resolve(objects, index, report, ())


def declared_quality(objects: list[Any], index: int, report: Report) -> list[DeclaredProperty]:
    """The table-level ``quality[]`` rules of ``objects[index]``: its own, then those its ``inheritColumns``
    ``quality`` list takes from the table it inherits from (each at the location that declares it; ``prop`` is
    the rule). An id the other table lacks is reported at the ``inheritColumns`` entry."""
    return _quality(objects, index, report, ())


def _quality(objects: list[Any], index: int, report: Report, seen: tuple[int, ...]) -> list[DeclaredProperty]:
    obj = objects[index]
    own = [DeclaredProperty(q, ("schema", index, "quality", j)) for j, q in enumerate(obj.get("quality") or [])
           if isinstance(q, dict)]
    found = _parent(objects, index, report, seen)
    if found is None or not found[1][3]:
        return own
    parent, (_, _, _, ids), where = found
    available = {d.prop.get("id"): d for d in _quality(objects, parent, report, (*seen, index))}
    missing = [i for i in ids if i not in available]
    if missing:
        report([*where, "quality"], f"table '{objects[parent].get('name')}' has no table-level quality rule "
                                    f"{', '.join(missing)}; its rules are {', '.join(map(str, available)) or 'none'}")
    return own + [available[i] for i in ids if i in available]


def _parent(objects: list[Any], index: int, report: Report, seen: tuple[int, ...]
            ) -> tuple[int, tuple[str, list[str] | None, list[str] | None, list[str]], list[str | int]] | None:
    """The index of the table ``objects[index]`` inherits from, its parsed ``inheritColumns`` value and where
    that is written; ``None`` when it inherits nothing or the value is wrong (then reported)."""
    obj = objects[index]
    entries = [(k, p) for k, p in enumerate(obj.get("customProperties") or [])
               if isinstance(p, dict) and p.get("property") == PROPERTY]
    if not entries:
        return None
    k, entry = entries[0]
    where: list[str | int] = ["schema", index, "customProperties", k, "value"]
    spec = _spec(entry.get("value"), where, report)
    if spec is None:
        return None
    names = [o.get("name") if isinstance(o, dict) else None for o in objects]
    if spec[0] not in names:
        known = ", ".join(str(n) for n in names if n != obj.get("name"))
        report(where, f"inheritColumns names table '{spec[0]}', which is not in this contract; name one of "
                      f"its tables ({known})")
        return None
    parent = names.index(spec[0])
    if parent == index or parent in seen:
        chain = " → ".join(str(names[i]) for i in (*seen, index, parent))
        report(where, f"inheritColumns goes round in a circle ({chain}); one table of the chain must declare its "
                      "columns itself")
        return None
    return parent, spec, where


def _own(obj: dict[str, Any], index: int) -> list[DeclaredProperty]:
    props = obj.get("properties") or []
    return [DeclaredProperty(p, ("schema", index, "properties", j)) for j, p in enumerate(props)
            if isinstance(p, dict)]


def _resolve(objects: list[Any], index: int, report: Report, seen: tuple[int, ...]) -> list[DeclaredProperty]:
    own = _own(objects[index], index)
    found = _parent(objects, index, report, seen)
    if found is None:
        return own
    parent, (parent_name, listed, excluded, _), where = found
    inherited = {d.prop.get("name"): d for d in _resolve(objects, parent, report, (*seen, index))}
    mine = {d.prop.get("name"): d for d in own}
    for name in dict.fromkeys(d.prop.get("name") for d in own if d.prop.get("name") in inherited):
        twice = [d for d in own if d.prop.get("name") == name][1:]
        for d in twice:  # an override is one entry: a second would silently replace the first
            report([*d.location, "name"], f"column '{name}' appears twice")
    order = listed if listed is not None else [n for n in inherited if n not in (excluded or ())]
    unknown = [n for n in (listed or excluded or []) if n not in inherited and (excluded or n not in mine)]
    if unknown:
        report(where, f"table '{parent_name}' has no column {', '.join(map(str, unknown))}; its columns are "
                      f"{', '.join(map(str, inherited))}" + ("" if excluded else " (declare a new column in "
                                                                            "properties[])"))
    out = []
    for name in order:
        base, override = inherited.get(name), mine.get(name)
        if base is None and override is None:
            continue
        if base is None:
            out.append(override)
        elif override is None:
            out.append(base)
        else:
            out.append(DeclaredProperty({**base.prop, **override.prop}, override.location))
    placed = set(order)
    return out + [d for d in own if d.prop.get("name") not in placed]


def _spec(value: Any, where: list[str | int], report: Report
          ) -> tuple[str, list[str] | None, list[str] | None, list[str]] | None:
    """``(table, columns, except, quality)`` of an ``inheritColumns`` value, or ``None`` after reporting it."""
    fix = ("write inheritColumns as a table name (value: customers) or {from: <table>, except: [columns]} or "
           "{from: <table>, columns: [columns]}, optionally with quality: [ids of its table-level rules]")
    if isinstance(value, str):
        return value, None, None, []
    if not isinstance(value, dict) or not isinstance(value.get("from"), str):
        report(where, fix)
        return None
    unknown = sorted(set(value) - set(_OPTIONS))
    if unknown:
        report(where, f"unknown option(s) {', '.join(map(str, unknown))}; {fix}")
        return None
    if "columns" in value and "except" in value:
        report(where, f"give columns or except, not both; {fix}")
        return None
    lists = {}
    for key in ("columns", "except", "quality"):
        items = value.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not items or not all(isinstance(i, str) for i in items):
            report([*where, key], f"{key} is a non-empty list of names; {fix}")
            return None
        lists[key] = items
    return value["from"], lists.get("columns"), lists.get("except"), lists.get("quality", [])
