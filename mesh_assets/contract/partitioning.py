"""A table's partitioning (docs/partitions.md): the ODCS ``partitioned: true`` (and ``partitionKeyPosition``) of
its partition column(s), plus what ODCS lacks in the table's ``customProperties`` ``partitioning``::

    customProperties:
      - property: partitioning
        value: {granularity: month, start: "1992-01-01", end: "1999-01-01", timezone: UTC}

A DATE or TIMESTAMP column is partitioned by time: ``granularity`` is ``hour`` (a TIMESTAMP column, in UTC),
``day``, ``week`` or ``month``; ``start`` the first partition's first day (the first of a month for ``month``; the
first week's first day for ``week``, whose weeks start on that weekday; a day or a time on the hour for
``hour``); ``end`` (optional, exclusive) the start of the period after the last partition; ``timezone``
(optional, IANA, default ``UTC``) when a period is complete. A string (VARCHAR) column is
partitioned by a static set: ``values``, the list of its partitions (``{values: [AFRICA, ASIA, EUROPE]}``). A
table partitioned by both (a DATE and a VARCHAR column, ``partitionKeyPosition`` 1 and 2) declares both in the
one mapping. A partitioned bronze table's ``source.path`` names its partition's files with the field of its
granularity — ``{month}`` (``YYYY-MM``), ``{week}`` (its first day, ``YYYY-MM-DD``), ``{date}`` (``YYYY-MM-DD``),
``{hour}`` (``YYYY-MM-DDTHH``) — and ``{<static column>}``, e.g. ``orders/{month}/{region}/*.csv``.
"""

from __future__ import annotations

import datetime as dt
import re
import string
import zoneinfo
from typing import Any

from mesh_assets.contract.inheritance import DeclaredProperty
from mesh_assets.contract.model import (GRANULARITIES, INPUT_POLICIES, MAX_STATIC_VALUES, SOURCE_FIELDS,
                                       STATIC_VALUE, TIME_COLUMN_TYPES, Column, Partitioning, Report,
                                       StaticPartitions, TimePartitions)

TIME_OPTIONS = ("granularity", "start", "end", "timezone")
OPTIONS = (*TIME_OPTIONS, "values")
EXAMPLE = "customProperties: [{property: partitioning, value: {granularity: month, start: '1992-01-01'}}]"
STATIC_EXAMPLE = "customProperties: [{property: partitioning, value: {values: [AFRICA, ASIA, EUROPE]}}]"
KINDS = {**dict.fromkeys(TIME_COLUMN_TYPES, "time"), "VARCHAR": "static"}  # a partition column's type → dimension
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
            raise ValueError(f"{{{name}}} takes no format; write {{month}}, {{week}}, {{date}} or {{hour}}")
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
    where: list[str | int] = [*loc, "customProperties"]
    if not keyed:
        report([*loc, "properties"], "partitioning is declared but no property is the partition column; mark the "
                                     "DATE or TIMESTAMP column with partitioned: true and partitionKeyPosition: "
                                     "1 (or the VARCHAR column, for a static set of values)")
        return None
    dimensions, ok = _partition_columns(keyed, columns, report)
    if value is None:
        fix = STATIC_EXAMPLE if "time" not in dimensions and "static" in dimensions else EXAMPLE
        what = "values" if fix == STATIC_EXAMPLE else "granularity and start"
        report(where, f"column {keyed[0].prop.get('name')} is partitioned: declare the partitions' {what}, {fix}")
        return None
    if not isinstance(value, dict):
        report(where, f"partitioning must be a mapping, e.g. {EXAMPLE}")
        return None
    unknown = sorted(set(value) - set(OPTIONS), key=str)
    if unknown:
        report(where, f"unknown partitioning option(s) {', '.join(map(str, unknown))}; use {', '.join(OPTIONS)}")
        ok = False
    time = static = None
    if "time" in dimensions or any(k in value for k in TIME_OPTIONS):
        if "time" not in dimensions and ok:
            report(where, f"partitioning declares {', '.join(k for k in TIME_OPTIONS if k in value)}, which a "
                          "DATE or TIMESTAMP partition column takes; mark that column with partitioned: true, or "
                          "remove them")
            return None
        time = _time(value, dimensions.get("time"), where, report)
        ok = ok and time is not None
    if "static" in dimensions or "values" in value:
        if "static" not in dimensions and ok:
            report(where, "partitioning declares values, which a VARCHAR partition column takes; mark the VARCHAR "
                          "column with partitioned: true and partitionKeyPosition: 2, or remove values")
            return None
        static_column = dimensions.get("static")
        static = _static(value.get("values"), static_column.name if static_column else None, where, report)
        ok = ok and static is not None
    if not ok or (time is None and static is None):
        return None
    return Partitioning(time, static)


def _partition_columns(keyed: list[DeclaredProperty], columns: list[Column], report: Report
                       ) -> tuple[dict[str, Column], bool]:
    """The partition columns of ``keyed`` (the properties with ``partitioned: true``) by dimension (``time``:
    the DATE or TIMESTAMP column, ``static``: the VARCHAR one), and whether they are valid (each problem
    reported)."""
    ok, dimensions = True, {}
    if len(keyed) > 2:
        report([*keyed[2].location, "partitioned"], f"{len(keyed)} columns are partitioned; a table has at most two "
                                                    "partition columns (a DATE or TIMESTAMP column for time and a "
                                                    "VARCHAR column for a static set of values): remove partitioned "
                                                    "from the others")
        return {}, False
    positions = [e.prop.get("partitionKeyPosition") for e in keyed]
    wanted = [1] if len(keyed) == 1 else [1, 2]
    if len(keyed) == 1 and positions[0] not in (None, 1):
        report([*keyed[0].location, "partitionKeyPosition"], f"is {positions[0]}; the one partition column has "
                                                             "partitionKeyPosition 1")
        ok = False
    elif len(keyed) == 2 and sorted(p for p in positions if isinstance(p, int)) != wanted:
        report([*keyed[1].location, "partitionKeyPosition"], f"the two partition columns have partitionKeyPosition "
                                                             f"{positions[0]} and {positions[1]}; give them 1 and 2")
        ok = False
    for entry in keyed:
        column = next((c for c in columns if c.name == entry.prop.get("name")), None)
        if column is None:
            ok = False
            continue
        kind = KINDS.get(column.physical_type)
        if kind is None:
            derived = (f"CAST(timezone('UTC', {column.name}) AS TIMESTAMP)" if "TIME ZONE" in column.physical_type
                       else f"CAST({column.name} AS DATE)")
            report([*entry.location, "physicalType"], f"the partition column {column.name} is {column.physical_type}; "
                                                      "partition on a DATE or TIMESTAMP column for time (derive one "
                                                      f"in the SQL, e.g. {derived}) or on a VARCHAR column for a "
                                                      "static set of values")
            ok = False
        elif kind in dimensions:
            report([*entry.location, "partitioned"], f"columns {dimensions[kind].name} and {column.name} both "
                                                     f"partition by {kind}; two partition columns are one DATE or "
                                                     "TIMESTAMP column (time) and one VARCHAR column (a static "
                                                     "set): remove partitioned from one")
            ok = False
        else:
            dimensions[kind] = column
    return dimensions, ok


def _time(value: dict[str, Any], column: Column | None, where: list[str | int], report: Report
          ) -> TimePartitions | None:
    """The time dimension of the ``partitioning`` mapping ``value`` on the DATE or TIMESTAMP ``column``."""
    granularity = value.get("granularity")
    if granularity not in GRANULARITIES:
        report(where, f"partitioning granularity {granularity!r} is not supported; use one of "
                      f"{', '.join(GRANULARITIES)}")
        return None
    ok = True
    if granularity == "hour" and column is not None and column.physical_type != "TIMESTAMP":
        report(where, f"partitioning by hour needs a TIMESTAMP partition column; {column.name} is "
                      f"{column.physical_type}: partition it by day, or partition a TIMESTAMP column by hour")
        ok = False
    start = _moment(value.get("start"), "start", granularity, where, report)
    end = _moment(value.get("end"), "end", granularity, where, report) if value.get("end") is not None else None
    if value.get("start") is None:
        report(where, f"partitioning needs its first partition's first day: start, e.g. {EXAMPLE}")
    if start is not None and end is not None and end <= start:
        report(where, f"partitioning end {end} is not after start {start}; end is the start of the period after "
                      "the last partition")
        ok = False
    if granularity == "week" and start is not None and end is not None and (end - start).days % 7:
        report(where, f"partitioning end {end} is not the first day of a week; the weeks start on a "
                      f"{start.strftime('%A')}, as start {start} does")
        ok = False
    timezone = str(value.get("timezone") or "UTC")
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        report(where, f"partitioning timezone {timezone!r} is not an IANA time zone; use e.g. UTC or Europe/Paris")
        ok = False
    else:
        if granularity == "hour" and timezone != "UTC":
            # a local day has 23 or 25 hours at a daylight-saving change: its repeated hour would have no key
            report(where, f"partitioning by hour is in UTC (timezone {timezone!r}); store the partition column's "
                          "times in UTC, e.g. CAST(timezone('UTC', <column>) AS TIMESTAMP), and remove timezone")
            ok = False
    if not ok or start is None or column is None or (value.get("end") is not None and end is None):
        return None
    return TimePartitions(column.name, granularity, start, end, timezone, column.physical_type)


def _static(values: Any, column: str | None, where: list[str | int], report: Report) -> StaticPartitions | None:
    """The static dimension of the ``partitioning`` ``values`` on the VARCHAR ``column``: each value a safe
    partition key (:data:`mesh_assets.contract.model.STATIC_VALUE`), once; at most ``MAX_STATIC_VALUES``."""
    if not isinstance(values, list) or not values:
        report(where, f"partitioning values must be a list of the partitions of column {column}, e.g. "
                      f"{STATIC_EXAMPLE}")
        return None
    if len(values) > MAX_STATIC_VALUES:
        report(where, f"partitioning values lists {len(values)} values; at most {MAX_STATIC_VALUES} are supported "
                      "(partition by a coarser column)")
        return None
    bad = [v for v in values if not isinstance(v, str) or not STATIC_VALUE.fullmatch(v)]
    if bad:
        shown = repr(bad[0])[:70]
        report(where, f"partitioning values: {shown} is not a partition value; write values of letters, digits, "
                      "spaces, _ and - (starting and ending with a letter or digit, at most 64 characters), quoted "
                      "if YAML would read another type, e.g. \"2024\"")
        return None
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        report(where, f"partitioning values lists {', '.join(repeated)} more than once; list each value once")
        return None
    return StaticPartitions(column, tuple(values)) if column is not None else None


def check_source_path(path: str, partitioning: Partitioning | None, where: list[str | int], report: Report) -> None:
    """A bronze table's ``source.path`` against its partitioning: a partitioned table's names its partition's
    files with the field of its granularity (``{month}``, ``{week}``, ``{date}``, ``{hour}``; it may hold the
    fields of coarser periods a partition never straddles, as ``{date}`` in an hour's path) and the field named
    after its static column (``{region}``), an unpartitioned table's has no field."""
    try:
        fields = source_fields(path)
    except ValueError as exc:
        report(where, f"source path {path!r}: {exc}")
        return
    static = partitioning.static.column if partitioning is not None and partitioning.static is not None else None
    allowed = [*(SOURCE_FIELDS if partitioning is None or partitioning.time is not None else ()),
               *([static] if static else [])]
    if static in SOURCE_FIELDS:
        report(where, f"source path {path!r}: the static partition column {static} has the name of a date field; "
                      "rename the column")
        return
    unknown = [f for f in fields if f not in allowed]
    if unknown:
        report(where, f"source path {path!r}: unknown field {{{unknown[0]}}}; a partitioned table's path may hold "
                      f"{', '.join('{' + f + '}' for f in allowed)}")
        return
    if partitioning is None:
        if fields:
            report(where, f"source path {path!r} holds {{{fields[0]}}}, which only a partitioned table's path may; "
                          f"partition the table ({EXAMPLE}) or remove the field")
        return
    if static is not None and static not in fields:
        report(where, f"source path {path!r}: a table partitioned by {static} names its partition's files with "
                      f"{{{static}}}, e.g. orders/{{{static}}}/*.csv")
    if partitioning.time is None:
        return
    granularity = partitioning.time.granularity
    _, needed, within = GRANULARITIES[granularity]
    straddled = [f for f in fields if f in SOURCE_FIELDS and f not in within]
    if needed not in fields:
        report(where, f"source path {path!r}: a table partitioned by {granularity} names its "
                      f"partition's files with {{{needed}}}, e.g. orders/{{{needed}}}/*.csv")
    elif straddled:
        usable = " and ".join("{" + f + "}" for f in within)
        report(where, f"source path {path!r}: a {granularity}'s partition is not named by {{{straddled[0]}}} (it "
                      f"spans or straddles several); use {usable}{' only' if len(within) == 1 else ''}")


def _moment(value: Any, name: str, granularity: str, where: list[str | int], report: Report) -> dt.date | None:
    """The ``start`` or ``end`` ``value`` of a time dimension: a date, or (``hour``) a datetime on the hour (a
    date is its midnight); ``None``, reported, when it is none or is not a period's start."""
    if value is None:
        return None
    if not isinstance(value, dt.date):
        try:
            value = (dt.datetime if granularity == "hour" else dt.date).fromisoformat(str(value))
        except ValueError:
            form = "'YYYY-MM-DD' or 'YYYY-MM-DDTHH:00'" if granularity == "hour" else "'YYYY-MM-DD'"
            report(where, f"partitioning {name} {value!r} is not a date; write it as {form}")
            return None
    if granularity == "hour":
        moment = value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())
        if moment.tzinfo is not None or moment != moment.replace(minute=0, second=0, microsecond=0):
            report(where, f"partitioning {name} {value} is not the start of an hour in UTC; write it as "
                          f"'{moment.strftime('%Y-%m-%dT%H:00')}', without a zone")
            return None
        return moment
    if isinstance(value, dt.datetime):
        if value.time() != dt.time():
            report(where, f"partitioning {name} {value} is not a date; a {granularity}'s partitions start at "
                          f"midnight: use {value.date()}")
            return None
        value = value.date()
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
