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


# A partitioned bronze table's source path names its partition's files with these fields (docs/partitions.md):
# ``{month}`` is ``YYYY-MM``, ``{date}`` is ``YYYY-MM-DD``.
SOURCE_FIELDS = {"month": "%Y-%m", "date": "%Y-%m-%d"}
# Partition granularities → the format of a partition key (Dagster's ``fmt``), and the source path field a
# partitioned bronze table's ``source.path`` must hold.
GRANULARITIES = {"day": ("%Y-%m-%d", "date"), "month": ("%Y-%m", "month")}
# What the change of an unpartitioned input (a dimension) does to the partitions of a partitioned table built
# before it: rebuild them all, or keep each as of its build (customProperties onInputChange; docs/partitions.md).
INPUT_POLICIES = {"rebuild": "every partition is rebuilt against the input's new version",
                  "keep": "each partition keeps the input's version it was built with"}
DEFAULT_INPUT_POLICY = "rebuild"
PARTITION_CHECK = "partition_window"  # a partitioned table's framework check: every row is in its partition


@dataclass(frozen=True)
class Window:
    """The rows a partitioned step covers: its partition keys (one, or a range's, in order) and the dates
    ``start`` (inclusive) to ``end`` (exclusive) of the partition column they span."""

    keys: tuple[str, ...]
    start: dt.date
    end: dt.date

    @property
    def label(self) -> str:
        """The key, or ``<first>...<last>`` for a range (Dagster's spelling of a key range)."""
        return self.keys[0] if len(self.keys) == 1 else f"{self.keys[0]}...{self.keys[-1]}"


@dataclass(frozen=True)
class Partitioning:
    """How a table is partitioned (mesh_assets.contract.partitioning): by ``granularity`` (``day`` or ``month``)
    of its DATE column ``column`` (ODCS ``partitioned: true``), from the date ``start`` (the first day of a month
    for ``month``) to ``end`` (exclusive; ``None``: up to the last complete period); ``timezone`` (IANA) is when
    a period is complete, for Dagster's partitions."""

    column: str
    granularity: str
    start: dt.date
    end: dt.date | None = None
    timezone: str = "UTC"

    @property
    def key_format(self) -> str:
        """A partition key's ``strftime`` format: ``%Y-%m`` (month) or ``%Y-%m-%d`` (day)."""
        return GRANULARITIES[self.granularity][0]

    def period_start(self, key: str) -> dt.date:
        """The first date of the partition ``key``. Raises ValueError for a key not of :attr:`key_format`."""
        return dt.datetime.strptime(key, self.key_format).date()

    def next_start(self, day: dt.date) -> dt.date:
        """The first date of the period after the one starting at ``day``."""
        if self.granularity == "day":
            return day + dt.timedelta(days=1)
        return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)

    def window(self, keys: list[str] | tuple[str, ...]) -> Window:
        """The :class:`Window` of the partition ``keys`` (consecutive, in order). Raises ValueError for a key
        not of :attr:`key_format`."""
        return Window(tuple(keys), self.period_start(keys[0]), self.next_start(self.period_start(keys[-1])))


@dataclass(frozen=True)
class Source:
    """Where a bronze table's rows come from: ``path`` is a glob relative to the landing zone (a partitioned
    table's holds ``{month}`` or ``{date}``: :data:`SOURCE_FIELDS`); ``format`` one of ``csv``, ``parquet``,
    ``json``; ``delimiter`` and ``header`` apply to CSV."""

    path: str
    format: str = "csv"
    delimiter: str = ","
    header: bool = True

    def glob(self, partitioning: Partitioning | None = None, key: str | None = None) -> str:
        """``path`` with its fields filled for the partition ``key`` of ``partitioning`` (``{month}`` → its
        ``YYYY-MM``, ``{date}`` → its ``YYYY-MM-DD``); every field ``*`` when ``key`` is ``None`` (the files of
        every partition). ``path`` itself for an unpartitioned table. Raises ValueError for a bad ``key``."""
        if partitioning is None:
            return self.path
        day = partitioning.period_start(key) if key is not None else None
        return self.path.format(**{f: day.strftime(fmt) if day else "*" for f, fmt in SOURCE_FIELDS.items()})

    def partition_of(self, path: str, partitioning: Partitioning) -> str | None:
        """The partition key of the landed file ``path`` (relative to the landing zone), read from the fields
        of ``self.path`` (``orders/{month}/*.csv``: ``orders/1992-03/a.csv`` → ``1992-03``); ``None`` when the
        path does not match or names no valid date."""
        pattern = ""
        for literal, name, _, _ in string.Formatter().parse(self.path):
            pattern += fnmatch.translate(literal).removeprefix("(?s:").removesuffix(")\\Z")
            if name is not None:
                pattern += rf"(?P<{name}>[0-9-]+)"
        found = re.fullmatch(pattern, path)
        if found is None:
            return None
        field = GRANULARITIES[partitioning.granularity][1]
        try:
            day = dt.datetime.strptime(found.group(field), SOURCE_FIELDS[field]).date()
        except (IndexError, ValueError):
            return None
        return day.strftime(partitioning.key_format) if day.strftime(SOURCE_FIELDS[field]) == found.group(field) \
            else None


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
