"""The contract model: what a data contract says, as plain values — data product, table, column, rule, SLA,
grant, metric, label.

This module is the ground floor of the framework: it imports the standard library only, so every other module
(loading, checks, engines, governance, catalog) may import it, and none of it can import them. Loading and
validation sit above it in this package, one parser per contract section: ``odcs`` (the ODCS JSON Schema and
Pydantic model), ``types`` (``physicalType``), ``columns`` (``properties[]``), ``sla`` (``slaProperties[]``),
``grants`` (``roles[]``), ``transform`` (how a table is built), ``rules``, ``metrics`` and ``labels`` (quality
and declarations), and ``loader`` (the document as a whole, YAML → :class:`DataProduct`).

Every value here is frozen: a contract is resolved once when it loads, including each table's SQL (its file
read, its dbt model rendered), so no caller reads a file to learn what a table is.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# How a section parser reports a problem: ``report(location, message)``, ``location`` the field's path in the
# contract (``["schema", 0, "properties", 2]``), ``message`` the problem and its fix. The loader adds the line.
Report = Callable[[list[str | int], str], None]

# Names that reach SQL and paths: snake_case, at most 63 characters (PostgreSQL's identifier limit, so a name
# fits every engine and catalog the mesh feeds).
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
VISIBILITIES = ("public", "restricted", "private")
# Columns bronze ingestion adds to every row (docs/architecture.md).
LINEAGE_COLUMNS = {"_source_file": "VARCHAR", "_ingested_at": "TIMESTAMP WITH TIME ZONE", "_run_id": "VARCHAR"}
# A bronze table's rejected rows are the table ``<name>__rejects`` of the same domain and layer (docs/architecture.md).
REJECTS_SUFFIX = "__rejects"


# A time-partitioned bronze table's source path names its partition's files with these fields (docs/partitions.md):
# ``{month}`` is ``YYYY-MM``, ``{week}`` and ``{date}`` ``YYYY-MM-DD`` (a week's: its first day), ``{hour}``
# ``YYYY-MM-DDTHH``; a static set's field is named after its column.
SOURCE_FIELDS = {"month": "%Y-%m", "week": "%Y-%m-%d", "date": "%Y-%m-%d", "hour": "%Y-%m-%dT%H"}
# Partition granularities → the format of a partition key (Dagster's ``fmt``; the ISO 8601 forms, without a
# ``:``, as the key also names data files), the source path field a partitioned bronze table's ``source.path``
# must hold, and the fields it may hold (those of the periods a partition never straddles).
GRANULARITIES = {"hour": ("%Y-%m-%dT%H", "hour", ("month", "date", "hour")),
                 "day": ("%Y-%m-%d", "date", ("month", "date")),
                 "week": ("%Y-%m-%d", "week", ("week",)),
                 "month": ("%Y-%m", "month", ("month",))}
# The column types a time dimension partitions: a TIMESTAMP's values are wall-clock times of the partitioning's
# time zone (UTC for ``hour``).
TIME_COLUMN_TYPES = ("DATE", "TIMESTAMP")
# A static partition value: it is a Dagster partition key, a folder name in source paths and data file names and
# an Iceberg partition value, so letters, digits, space, ``_`` and ``-`` only, starting and ending with a letter
# or digit, at most 64 characters (Dagster forbids ``|``, ``,``, ``[``, ``]``; a glob, ``*``, ``?``; a path, ``/``).
STATIC_VALUE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 _-]{0,62}[A-Za-z0-9])?")
MAX_STATIC_VALUES = 1000
# How Dagster joins the dimensions of a multi-partition key (``1992-01|EUROPE``): dimension names in sorted order.
MULTI_KEY_DELIMITER = "|"
# What the change of an unpartitioned input (a dimension) does to the partitions of a partitioned table built
# before it: rebuild them all, or keep each as of its build (customProperties onInputChange; docs/partitions.md).
INPUT_POLICIES = {"rebuild": "every partition is rebuilt against the input's new version",
                  "keep": "each partition keeps the input's version it was built with"}
DEFAULT_INPUT_POLICY = "rebuild"
PARTITION_CHECK = "partition_window"  # a partitioned table's framework check: every row is in its partition


@dataclass(frozen=True)
class Window:
    """The rows a partitioned step covers: its partition keys (one, or several, in order); of a table with a
    time dimension the dates ``start`` (inclusive) to ``end`` (exclusive) they span (datetimes for ``hour``
    partitions), of a table with a static dimension the ``values`` they cover (``None`` for a dimension the table
    does not have)."""

    keys: tuple[str, ...]
    start: dt.date | None = None
    end: dt.date | None = None
    values: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        """The key, or ``<first>...<last>`` for several (Dagster's spelling of a key range)."""
        return self.keys[0] if len(self.keys) == 1 else f"{self.keys[0]}...{self.keys[-1]}"


@dataclass(frozen=True)
class PartitionColumns:
    """The columns of a table that a :class:`Window` restricts: ``time`` (DATE, to the window's dates) and
    ``static`` (to its values); ``None`` for a dimension not restricted."""

    time: str | None = None
    static: str | None = None


@dataclass(frozen=True)
class TimePartitions:
    """A time dimension: by ``granularity`` (``hour``, ``day``, ``week`` or ``month``) of the column ``column``
    (``column_type`` DATE, or TIMESTAMP, which ``hour`` needs), from ``start`` (a date: the first day of a month for
    ``month``, the first day of the first week for ``week``, whose weeks start on its weekday; a datetime on the
    hour for ``hour``) to ``end`` (exclusive, of the same kind; ``None``: up to the last complete period);
    ``timezone`` (IANA) is when a period is complete, for Dagster's partitions."""

    column: str
    granularity: str
    start: dt.date
    end: dt.date | None = None
    timezone: str = "UTC"
    column_type: str = "DATE"

    @property
    def key_format(self) -> str:
        """A partition key's ``strftime`` format: ``%Y-%m`` (month), ``%Y-%m-%d`` (day; week: its first day) or
        ``%Y-%m-%dT%H`` (hour)."""
        return GRANULARITIES[self.granularity][0]

    @property
    def week_start(self) -> int | None:
        """Of weekly partitions, the weeks' first weekday, ISO 8601's number (1 = Monday .. 7 = Sunday): that of
        :attr:`start`; ``None`` for another granularity."""
        return self.start.isoweekday() if self.granularity == "week" else None

    def period_start(self, key: str) -> dt.date:
        """The start of the partition ``key``: its first date, or (``hour``) its first moment, a datetime.

        Raises:
            ValueError: a key not of :attr:`key_format`, or (``week``) not the first day of one of the weeks.
        """
        moment = dt.datetime.strptime(key, self.key_format)
        start = moment if self.granularity == "hour" else moment.date()
        if self.floor(start) != start:
            raise ValueError(f"{key!r} is not the first day of a week; the weeks start on a "
                             f"{self.start.strftime('%A')}")
        return start

    def floor(self, moment: dt.date) -> dt.date:
        """The start of the period holding ``moment`` (a date, or a datetime for ``hour``)."""
        if self.granularity == "hour":
            whole = moment if isinstance(moment, dt.datetime) else dt.datetime.combine(moment, dt.time())
            return whole.replace(minute=0, second=0, microsecond=0)
        day = moment.date() if isinstance(moment, dt.datetime) else moment
        if self.granularity == "week":
            return day - dt.timedelta(days=(day - self.start).days % 7)
        return day.replace(day=1) if self.granularity == "month" else day

    def next_start(self, start: dt.date) -> dt.date:
        """The start of the period after the one starting at ``start``."""
        if self.granularity in ("hour", "day", "week"):
            return start + {"hour": dt.timedelta(hours=1), "day": dt.timedelta(days=1),
                            "week": dt.timedelta(days=7)}[self.granularity]
        return dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)


@dataclass(frozen=True)
class StaticPartitions:
    """A static dimension: one partition per value of ``values`` (each :data:`STATIC_VALUE`, in the contract's
    order) of the string column ``column``."""

    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Partitioning:
    """How a table is partitioned (mesh_assets.contract.partitioning): by ``time`` (the hours, days, weeks or
    months of a DATE or TIMESTAMP column), by ``static`` (a string column's declared values), or by both (a
    multi-partitioned table, whose partition key is Dagster's: the two parts joined by
    :data:`MULTI_KEY_DELIMITER`, ordered by column name)."""

    time: TimePartitions | None = None
    static: StaticPartitions | None = None

    @property
    def columns(self) -> PartitionColumns:
        """The partition columns, as a window restricts them."""
        return PartitionColumns(self.time.column if self.time else None,
                                self.static.column if self.static else None)

    @property
    def column_names(self) -> tuple[str, ...]:
        """The partition columns' names: the time column first."""
        return tuple(c for c in (self.columns.time, self.columns.static) if c)

    def split(self, key: str) -> tuple[str | None, str | None]:
        """The partition ``key`` as ``(time key, static value)`` (``None`` for a dimension the table lacks).

        Raises:
            ValueError: ``key`` is not one of this partitioning's keys.
        """
        if self.time is not None and self.static is not None:
            parts = key.split(MULTI_KEY_DELIMITER)
            if len(parts) != 2:
                raise ValueError(f"{key!r} is not a key of two dimensions joined by {MULTI_KEY_DELIMITER}")
            by_column = dict(zip(sorted((self.time.column, self.static.column)), parts))
            found: tuple[str | None, str | None] = (by_column[self.time.column], by_column[self.static.column])
        else:
            found = (key, None) if self.time is not None else (None, key)
        if found[0] is not None and self.time is not None:
            self.time.period_start(found[0])
        if found[1] is not None and self.static is not None and found[1] not in self.static.values:
            raise ValueError(f"{found[1]!r} is not one of the values of {self.static.column}")
        return found

    def key(self, time_key: str | None, value: str | None) -> str:
        """The partition key of the time key ``time_key`` and the static ``value`` (Dagster's order)."""
        if self.time is None or self.static is None:
            return str(time_key if self.time is not None else value)
        by_column = {self.time.column: time_key, self.static.column: value}
        return MULTI_KEY_DELIMITER.join(str(by_column[c]) for c in sorted(by_column))

    def window(self, keys: list[str] | tuple[str, ...]) -> Window:
        """The :class:`Window` of the partition ``keys``: of a time dimension, the dates from the first key's
        period to the end of the last's (consecutive keys, in order); of a static one, the set of values.

        Raises:
            ValueError: a key not of this partitioning, or keys of a multi-partitioned table that are not every
                combination of their time keys and values (a window is a time range times a set of values).
        """
        parts = [self.split(k) for k in keys]
        times = list(dict.fromkeys(t for t, _ in parts if t is not None))
        values = tuple(dict.fromkeys(v for _, v in parts if v is not None))
        if self.time is not None and self.static is not None and len(keys) != len(times) * len(values):
            raise ValueError(f"the keys {', '.join(keys)} are not every combination of their months or days and "
                             "values; build them one partition per run")
        if self.time is None:
            return Window(tuple(keys), values=values)
        start = self.time.period_start(times[0])
        return Window(tuple(keys), start, self.time.next_start(self.time.period_start(times[-1])),
                      values if self.static is not None else None)


@dataclass(frozen=True)
class Source:
    """Where a bronze table's rows come from: ``path`` is a glob relative to the landing zone (a partitioned
    table's holds ``{month}`` or ``{date}``, :data:`SOURCE_FIELDS`, and ``{<static column>}``); ``format`` one of
    ``csv``, ``parquet``, ``json``; ``delimiter`` and ``header`` apply to CSV."""

    path: str
    format: str = "csv"
    delimiter: str = ","
    header: bool = True

    def glob(self, partitioning: Partitioning | None = None, key: str | None = None) -> str:
        """``path`` with its fields filled for the partition ``key`` of ``partitioning`` (``{month}`` → its
        ``YYYY-MM``, ``{week}`` and ``{date}`` → its first day's ``YYYY-MM-DD``, ``{hour}`` → its
        ``YYYY-MM-DDTHH``, ``{<static column>}`` → its value); every field ``*`` when
        ``key`` is ``None`` (the files of every partition). ``path`` itself for an unpartitioned table. Raises
        ValueError for a bad ``key``."""
        if partitioning is None:
            return self.path
        time_key, value = partitioning.split(key) if key is not None else (None, None)
        fields = {}
        if partitioning.time is not None:
            day = partitioning.time.period_start(time_key) if time_key is not None else None
            fields = {f: day.strftime(fmt) if day else "*" for f, fmt in SOURCE_FIELDS.items()}
        if partitioning.static is not None:
            fields[partitioning.static.column] = value if value is not None else "*"
        return self.path.format(**fields)

    def partition_of(self, path: str, partitioning: Partitioning) -> str | None:
        """The partition key of the landed file ``path`` (relative to the landing zone), read from the fields
        of ``self.path`` (``orders/{month}/*.csv``: ``orders/1992-03/a.csv`` → ``1992-03``; a ``{week}`` folder
        names the first day of one of the weeks;
        ``orders/{month}/{region}/*.csv``: ``orders/1992-03/ASIA/a.csv`` → ``1992-03|ASIA``); ``None`` when the
        path does not match, names no valid date or a value not declared."""
        pattern = ""
        for literal, name, _, _ in string.Formatter().parse(self.path):
            pattern += fnmatch.translate(literal).removeprefix("(?s:").removesuffix(")\\Z")
            if name is not None:
                pattern += rf"(?P<{name}>[0-9T-]+)" if name in SOURCE_FIELDS else rf"(?P<{name}>[^/]+)"
        found = re.fullmatch(pattern, path)
        if found is None:
            return None
        time_key = value = None
        if partitioning.time is not None:
            time, field = partitioning.time, GRANULARITIES[partitioning.time.granularity][1]
            try:
                moment = dt.datetime.strptime(found.group(field), SOURCE_FIELDS[field])
            except (IndexError, ValueError):
                return None
            start = moment if time.granularity == "hour" else moment.date()
            named = {f: text for f, text in found.groupdict().items() if f in SOURCE_FIELDS}
            if time.floor(start) != start or any(start.strftime(SOURCE_FIELDS[f]) != text for f, text in
                                                 named.items()):  # not a period's start, or {date} not {hour}'s
                return None
            time_key = start.strftime(time.key_format)
        if partitioning.static is not None:
            value = found.groupdict().get(partitioning.static.column)
            if value not in partitioning.static.values:
                return None
        return partitioning.key(time_key, value)


@dataclass(frozen=True)
class Column:
    """One property of a table: ``physical_type`` is the DuckDB type the column has in the port (as
    re-rendered from its parse, mesh_assets.contract.types); ``logical_type`` its ODCS ``logicalType``.

    ``primary_key_position`` is 1-based (``None``: not a key column). ``declassified`` is the reason its
    contract states for publishing, unclassified, values derived from a sensitive column (column
    ``customProperties`` ``declassified``); ``derived_from`` the input columns a Python transform declares it is
    computed from (``derivedFrom``: ``<schema>.<table>.<column>`` names; ``None``: not declared). Both are read
    by mesh_assets.governance.classification.

    ``location`` is where the contract declares the column (``("schema", i, "properties", j)``): the table's own
    property, or the property of the table it inherits the column from (mesh_assets.contract.inheritance);
    empty for the columns the framework generates (metrics and labels tables).
    """

    name: str
    logical_type: str
    physical_type: str
    description: str
    required: bool = False
    unique: bool = False
    primary_key_position: int | None = None
    classification: str | None = None
    declassified: str | None = None
    derived_from: tuple[str, ...] | None = None
    location: tuple[str | int, ...] = ()


@dataclass(frozen=True)
class Rule:
    """One check on one table (parsed from the contract by mesh_assets.contract.rules, run by
    mesh_assets.engine.checks).

    Attributes:
        name: the Dagster asset check name (``^[A-Za-z0-9_]+$``, unique per table).
        kind: what is measured — row-level predicates ``not_null``, ``bound``, ``length``, ``pattern``,
            ``valid_values``, ``not_missing`` (failing rows are the rows where the predicate is false);
            ``duplicates`` (rows repeating an earlier row's value of ``columns``); ``primary_key``
            (duplicates plus rows with a null key column); ``foreign_key`` (rows whose non-null ``columns``
            match no row of the referenced table); ``row_count``; ``sql`` (a query's single value).
        columns: the columns the rule reads (empty for table-level rules).
        params: kind-specific parameters (``op``/``value`` for bound, ``min``/``max`` for length,
            ``pattern``, ``values``, ``query``; ``domain``/``table``/``columns`` of a foreign key's target,
            ``domain`` None for the rule's own domain).
        operator, threshold: the ODCS comparison of the measured value (``mustBe`` 0 for constraints).
        unit: ``rows`` or ``percent`` (percent of rows checked).
        severity: ``error`` (blocking), ``warning`` or ``info`` (recorded only).
        description: the rule in words, shown on the check.
        source: the rule as written in the contract (for reports).
        dimension: the ODCS quality dimension, if given.
        location: where the rule is written in its contract (``("schema", 0, "quality", 1)``; empty for rules
            the framework derives), for messages that name the field and its line.
    """

    name: str
    kind: str
    columns: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    operator: str = "mustBe"
    threshold: Any = 0
    unit: str = "rows"
    severity: str = "error"
    description: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    dimension: str | None = None
    location: tuple[str | int, ...] = ()

    @property
    def blocking(self) -> bool:
        """Whether a failure stops publication (severity ``error``)."""
        return self.severity == "error"

    def passes(self, value: float) -> bool:
        """Whether the measured ``value`` satisfies the rule's operator and threshold (ODCS operators)."""
        t = self.threshold
        return {
            "mustBe": lambda: value == t,
            "mustNotBe": lambda: value != t,
            "mustBeGreaterThan": lambda: value > t,
            "mustBeGreaterOrEqualTo": lambda: value >= t,
            "mustBeLessThan": lambda: value < t,
            "mustBeLessOrEqualTo": lambda: value <= t,
            "mustBeBetween": lambda: t[0] <= value <= t[1],
            "mustNotBeBetween": lambda: not (t[0] <= value <= t[1]),
        }[self.operator]()

    @property
    def expectation(self) -> str:
        """The threshold in words, e.g. ``mustBe 0 rows``."""
        return f"{self.operator} {self.threshold} {self.unit}"


@dataclass(frozen=True)
class Sla:
    """One ODCS SLA property: ``latency`` or ``frequency`` of ``seconds``; ``schedule`` is a cron string
    (``scheduler: cron``), else ``None``."""

    property: str
    seconds: float
    schedule: str | None = None


@dataclass(frozen=True)
class Metric:
    """One metric of a gold table: ``expression`` aggregates the table's rows per ``grain`` period of ``time``
    and per combination of ``dimensions``; ``unit`` is free text (``USD``, ``orders``, ``ratio``). Parsed by
    mesh_assets.contract.metrics."""

    name: str
    description: str
    owner: str
    expression: str
    dimensions: tuple[str, ...]
    time: str
    grain: str
    unit: str = ""

    def definition(self, product: str, table: str) -> dict[str, Any]:
        """The metric as a JSON-able dict (what ``mesh metrics`` and the asset metadata show)."""
        return {"product": product, "table": table, "name": self.name, "description": self.description,
                "owner": self.owner, "expression": self.expression, "dimensions": list(self.dimensions),
                "time": self.time, "grain": self.grain, "unit": self.unit}


@dataclass(frozen=True)
class Condition:
    """One ``{value, when}`` of a label rule; ``when`` ``None`` is the default value."""

    value: str
    when: str | None = None


@dataclass(frozen=True)
class Label:
    """One label of a gold table's entity ``entity`` (key columns), computed per row of ``query``: ``expression``
    (a SQL expression) or else the first of ``conditions`` that holds. Parsed by mesh_assets.contract.labels."""

    name: str
    description: str
    entity: tuple[str, ...]
    query: str
    expression: str | None = None
    conditions: tuple[Condition, ...] = ()

    def definition(self, product: str, table: str) -> dict[str, Any]:
        """The label as a JSON-able dict (asset metadata)."""
        rule: Any = self.expression if self.expression is not None else [
            {"value": c.value, **({"when": c.when} if c.when is not None else {})} for c in self.conditions]
        return {"product": product, "table": table, "name": self.name, "description": self.description,
                "entity": list(self.entity), "query": self.query, "rule": rule}


@dataclass(frozen=True)
class Table:
    """One ``schema[]`` object of a contract: one Dagster asset keyed ``[domain, layer, name]``.

    How the table is built, resolved when the contract loaded (mesh_assets.contract.transform):

    - bronze: ``source`` (ingestion); ``transform`` and ``sql`` are ``None``;
    - a SQL file: ``transform`` is the file, ``sql`` its text;
    - a dbt model (``dbt_model``): ``transform`` is the model file, ``sql`` the model rendered in mesh names
      (``transform`` and ``sql`` are ``None`` when the contract is read outside a mesh, e.g. at a base revision);
    - a Python function: ``transform`` is the ``.py`` file, ``sql`` ``None``, ``inputs`` the tables it reads;
    - generated by the framework (metrics, labels): ``transform`` ``None``, ``sql`` the generated SELECT.
    """

    domain: str
    product: str
    name: str
    layer: str
    description: str
    columns: tuple[Column, ...]
    rules: tuple[Rule, ...]
    visibility: str
    source: Source | None
    transform: Path | None
    slas: tuple[Sla, ...]
    contract_path: Path
    metrics: tuple[Metric, ...] = ()  # customProperties metrics (mesh_assets.contract.metrics)
    labels: tuple[Label, ...] = ()  # customProperties labels (mesh_assets.contract.labels)
    sql: str | None = None  # the SELECT that builds the table, as resolved at load (see above)
    dbt_model: str | None = None  # customProperties transform "dbt:<model>": built by that dbt model (docs/dbt.md)
    engine: str | None = None  # customProperties engine: the table's own engine choice (mesh_assets.engine.choice)
    inputs: tuple[str, ...] = ()  # customProperties inputs of a Python transform: "<schema>.<table>" names
    partitioning: Partitioning | None = None  # partitioned column + customProperties partitioning
    # customProperties onInputChange of a partitioned table: "<schema>.<table>" of an unpartitioned input → what
    # its change does to the partitions built before (INPUT_POLICIES; docs/partitions.md)
    on_input_change: tuple[tuple[str, str], ...] = ()

    def input_policy(self, name: str) -> str:
        """What a change of the unpartitioned input ``name`` (``<schema>.<table>``) does to the partitions built
        before: ``rebuild`` (the default) or ``keep`` (:data:`INPUT_POLICIES`)."""
        return dict(self.on_input_change).get(name, DEFAULT_INPUT_POLICY)

    @property
    def python(self) -> bool:
        """Whether a Python function builds the table (``transform: python/<layer>/<name>.py``;
        mesh_assets.engine.python_transforms)."""
        return self.transform is not None and self.transform.suffix == ".py"

    @property
    def generated(self) -> bool:
        """Whether the framework generated the table's SELECT (a metrics or labels port)."""
        return self.sql is not None and self.transform is None

    @property
    def transform_origin(self) -> str:
        """Where the SELECT comes from, for messages: its file, or ``<contract>#<table>`` when generated."""
        return str(self.transform) if self.transform is not None else f"{self.contract_path}#{self.name}"

    @property
    def key(self) -> tuple[str, str, str]:
        """The asset key ``(domain, layer, name)``."""
        return (self.domain, self.layer, self.name)

    @property
    def primary_key(self) -> list[str]:
        """The primary key's column names, in key order (empty without a key)."""
        keyed = [c for c in self.columns if c.primary_key_position is not None]
        return [c.name for c in sorted(keyed, key=lambda c: c.primary_key_position or 0)]

    @property
    def output_columns(self) -> dict[str, str]:
        """Column name → DuckDB type of the port, lineage columns included for bronze."""
        out = {c.name: c.physical_type for c in self.columns}
        return {**out, **LINEAGE_COLUMNS} if self.layer == "bronze" else out


@dataclass(frozen=True)
class Grant:
    """Read access to a product's output ports for another domain: one ODCS ``roles[]`` entry whose
    ``customProperties`` name the ``domain`` granted (docs/governance.md; parsed by mesh_assets.contract.grants).

    ``tables`` limits the grant to some output ports (empty: all of the product's); ``pii`` lets the domain read
    sensitive columns in clear. ``approved_by``/``approved_at``/``request`` record the decision.
    """

    role: str
    domain: str
    tables: tuple[str, ...] = ()
    pii: bool = False
    purpose: str = ""
    approved_by: str = ""
    approved_at: str = ""
    request: str = ""

    def covers(self, table: str) -> bool:
        """Whether the grant reaches the output port ``table``."""
        return not self.tables or table in self.tables


@dataclass(frozen=True)
class InputPort:
    """What a data product relies on in another domain's output port (top-level ``customProperties``
    ``inputPorts``, parsed by mesh_assets.contract.input_ports; docs/domain-repos.md).

    ``port`` is ``<domain>.<table>``; ``major`` the producer's major version the product is built against
    (``None``: not pinned); ``columns`` column → DuckDB type (``None``: the producer's type) the product relies on
    besides the columns its SQL reads; ``required`` and ``unique`` columns it relies on being never null and
    unique; ``freshness`` the largest latency it accepts. ``location`` is the entry's place in the contract.
    """

    port: str
    major: int | None = None
    columns: tuple[tuple[str, str | None], ...] = ()
    required: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    freshness: Sla | None = None
    location: tuple[str | int, ...] = ()

    @property
    def domain(self) -> str:
        """The producer domain of :attr:`port`."""
        return self.port.split(".", 1)[0]

    @property
    def table(self) -> str:
        """The output port's table name of :attr:`port`."""
        return self.port.split(".", 1)[1]


@dataclass(frozen=True)
class DataProduct:
    """A parsed, validated data contract.

    ``odcs`` is the whole document as the ``open-data-contract-standard`` package's Pydantic model
    (``OpenDataContractStandard``; typed loosely here so that the model imports no third-party package).
    ``team_declared`` says whether the contract names its team (else ``team`` is the domain's).
    ``end_of_support`` (from the top-level ``customProperties`` ``endOfSupport``) is the date after which a
    ``deprecated`` product may be removed; ``replaced_by`` (``replacedBy``) names its successor port.
    """

    path: Path
    id: str
    name: str
    version: str
    status: str
    domain: str
    team: str
    description: str
    tables: tuple[Table, ...]
    odcs: Any
    team_declared: bool = True
    grants: tuple[Grant, ...] = ()
    end_of_support: dt.date | None = None
    replaced_by: str | None = None
    engine: str | None = None  # customProperties engine: the product's engine choice (mesh_assets.engine.choice)
    input_ports: tuple[InputPort, ...] = ()  # customProperties inputPorts: pins and expectations

    @property
    def deprecated(self) -> bool:
        """Whether the product's status is ``deprecated``."""
        return self.status == "deprecated"
