"""A table's partitioning (docs/partitions.md): the ODCS ``partitioned: true`` (and ``partitionKeyPosition``) of
one DATE property, plus what ODCS lacks in the table's ``customProperties`` ``partitioning``::

    customProperties:
      - property: partitioning
        value: {granularity: month, start: "1992-01-01", end: "1999-01-01", timezone: UTC}

``granularity`` is ``day`` or ``month``; ``start`` the first partition's first day (the first of a month for
``month``); ``end`` (optional, exclusive) the day after the last partition; ``timezone`` (optional, IANA, default
``UTC``) when a period is complete. A partitioned bronze table's ``source.path`` names its partition's files
with ``{month}`` (``YYYY-MM``) or ``{date}`` (``YYYY-MM-DD``), e.g. ``orders/{month}/*.csv``.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import zoneinfo
from typing import Any

from mesh_assets.contract.inheritance import DeclaredProperty
from mesh_assets.contract.model import (GRANULARITIES, INPUT_POLICIES, SOURCE_FIELDS, Column, Partitioning,
                                       Report)

OPTIONS = ("granularity", "start", "end", "timezone")
EXAMPLE = "customProperties: [{property: partitioning, value: {granularity: month, start: '1992-01-01'}}]"
POLICY_EXAMPLE = "customProperties: [{property: onInputChange, value: {customers.customer_profile: keep}}]"
INPUT_NAME = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*")


def source_fields(path: str) -> list[str]:
    """The ``{field}`` names in a source path (``orders/{month}/*.csv`` → ``["month"]``).

    Raises:
        ValueError: unbalanced braces, or a field with a format spec or conversion (``{month:%Y}``).
    """
    fields = []
    for _, name, spec, conversion in string.Formatter().parse(path):
        if name is None:
            continue
        if spec or conversion:
            raise ValueError(f"{{{name}}} takes no format; write {{month}} or {{date}}")
        fields.append(name)
    return fields


def parse_partitioning(value: Any, declared: list[DeclaredProperty], columns: list[Column],
                       loc: list[str | int], report: Report) -> Partitioning | None:
    """The partitioning of one table: ``value`` its ``customProperties`` ``partitioning`` (``None`` when absent),
    ``declared`` its properties (for ``partitioned``/``partitionKeyPosition``), ``columns`` as parsed, ``loc`` the
    table's location. ``None`` when the table is not partitioned; every problem is reported (``report``) with
    its fix, and then ``None`` is returned too."""
    keyed = [e for e in declared if e.prop.get("partitioned") is True]
    if value is None and not keyed:
        return None
    if value is None:
        report([*loc, "customProperties"], f"column {keyed[0].prop.get('name')} is partitioned: declare the "
                                           f"partitions' granularity and start, {EXAMPLE}")
        return None
    if not keyed:
        report([*loc, "properties"], "partitioning is declared but no property is the partition column; mark the "
                                     "DATE column with partitioned: true and partitionKeyPosition: 1")
        return None
    ok = True
    if len(keyed) > 1:
        report([*keyed[1].location, "partitioned"], "one partition column per table is supported (a time "
                                                    "column); remove partitioned from the others")
        ok = False
    entry = keyed[0]
    position = entry.prop.get("partitionKeyPosition")
    if position not in (None, 1):
        report([*entry.location, "partitionKeyPosition"], f"is {position}; the one partition column has "
                                                          "partitionKeyPosition 1")
        ok = False
    column = next((c for c in columns if c.name == entry.prop.get("name")), None)
    if column is not None and column.physical_type != "DATE":
        report([*entry.location, "physicalType"], f"the partition column {column.name} is {column.physical_type}; "
                                                  "partition on a DATE column (derive one in the SQL, e.g. "
                                                  f"CAST({column.name} AS DATE))")
        ok = False
    where: list[str | int] = [*loc, "customProperties"]
    if not isinstance(value, dict):
        report(where, f"partitioning must be a mapping, e.g. {EXAMPLE}")
        return None
    unknown = sorted(set(value) - set(OPTIONS))
    if unknown:
        report(where, f"unknown partitioning option(s) {', '.join(map(str, unknown))}; use {', '.join(OPTIONS)}")
        ok = False
    granularity = value.get("granularity")
    if granularity not in GRANULARITIES:
        report(where, f"partitioning granularity {granularity!r} is not supported; use one of "
                      f"{', '.join(GRANULARITIES)}")
        return None
    start = _date(value.get("start"), "start", granularity, where, report)
    end = _date(value.get("end"), "end", granularity, where, report) if value.get("end") is not None else None
    if value.get("start") is None:
        report(where, f"partitioning needs its first partition's first day: start, e.g. {EXAMPLE}")
    if start is not None and end is not None and end <= start:
        report(where, f"partitioning end {end} is not after start {start}; end is the day after the last partition")
        ok = False
    timezone = str(value.get("timezone") or "UTC")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        report(where, f"partitioning timezone {timezone!r} is not an IANA time zone; use e.g. UTC or Europe/Paris")
        ok = False
    if not ok or start is None or column is None or (value.get("end") is not None and end is None):
        return None
    return Partitioning(column.name, granularity, start, end, timezone)


def check_source_path(path: str, partitioning: Partitioning | None, where: list[str | int], report: Report) -> None:
    """A bronze table's ``source.path`` against its partitioning: a partitioned table's names its partition's
    files with the field of its granularity (``{month}``, ``{date}``), an unpartitioned table's has no field."""
    try:
        fields = source_fields(path)
    except ValueError as exc:
        report(where, f"source path {path!r}: {exc}")
        return
    unknown = [f for f in fields if f not in SOURCE_FIELDS]
    if unknown:
        report(where, f"source path {path!r}: unknown field {{{unknown[0]}}}; a partitioned table's path may hold "
                      f"{', '.join('{' + f + '}' for f in SOURCE_FIELDS)}")
        return
    if partitioning is None:
        if fields:
            report(where, f"source path {path!r} holds {{{fields[0]}}}, which only a partitioned table's path may; "
                          f"partition the table ({EXAMPLE}) or remove the field")
        return
    needed = GRANULARITIES[partitioning.granularity][1]
    if needed not in fields:
        report(where, f"source path {path!r}: a table partitioned by {partitioning.granularity} names its "
                      f"partition's files with {{{needed}}}, e.g. orders/{{{needed}}}/*.csv")
    elif partitioning.granularity == "month" and "date" in fields:
        report(where, f"source path {path!r}: a month's partition reads a whole month; use {{month}} only")


def _date(value: Any, name: str, granularity: str, where: list[str | int], report: Report) -> dt.date | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        value = value.date()
    if not isinstance(value, dt.date):
        try:
            value = dt.date.fromisoformat(str(value))
        except ValueError:
            report(where, f"partitioning {name} {value!r} is not a date; write it as 'YYYY-MM-DD'")
            return None
    if granularity == "month" and value.day != 1:
        report(where, f"partitioning {name} {value} is not the first day of a month, as a month's partitions "
                      f"start; use {value.replace(day=1)}")
        return None
    return value


def parse_input_policies(value: Any, partitioning: Partitioning | None, where: list[str | int],
                         report: Report) -> tuple[tuple[str, str], ...]:
    """A partitioned table's ``customProperties`` ``onInputChange``: a mapping from an unpartitioned input it
    reads (``<schema>.<table>``, as its SQL names it) to ``rebuild`` or ``keep`` (:data:`INPUT_POLICIES`), as
    ``(name, policy)`` pairs; ``()`` when absent. Each problem is reported (``report``) with its fix; whether
    each name is an unpartitioned input of the table is checked when the definitions load."""
    if value is None:
        return ()
    if partitioning is None:
        report(where, "onInputChange says what an input's change does to a partitioned table's partitions; this "
                      "table is not partitioned: remove it")
        return ()
    if not isinstance(value, dict) or not value:
        report(where, f"onInputChange must be a mapping of inputs to rebuild or keep, e.g. {POLICY_EXAMPLE}")
        return ()
    pairs = []
    for name, policy in value.items():
        if not isinstance(name, str) or not INPUT_NAME.fullmatch(name):
            report(where, f"onInputChange: {name!r} is not an input's <schema>.<table> name as the SQL writes it, "
                          "e.g. customers.customer_profile or silver.customers")
        elif policy not in INPUT_POLICIES:
            meanings = "; ".join(f"{k}: {v}" for k, v in INPUT_POLICIES.items())
            report(where, f"onInputChange: {name}: {policy!r} is not a policy; use {' or '.join(INPUT_POLICIES)} "
                          f"({meanings})")
        else:
            pairs.append((name, str(policy)))
    return tuple(pairs)
