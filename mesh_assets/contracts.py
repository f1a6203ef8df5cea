"""Data contracts: ODCS v3.1 YAML files → :class:`DataProduct` and :class:`Table` objects.

A contract is first validated against the JSON Schema shipped with the ``open-data-contract-standard``
package, then parsed with its Pydantic model, then checked for what this framework needs (layers, sources,
types, rules). Every problem found is reported at once, each with its field, line and fix.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema_rs
import pydantic
import sqlglot
from open_data_contract_standard.model import OpenDataContractStandard
from sqlglot import exp

from mesh_assets.errors import ContractError, MeshError
from mesh_assets.labels import Label, labels_table, parse_labels
from mesh_assets.metrics import DeclarationError, Metric, metrics_table, parse_metrics
from mesh_assets.rules import (
    OPERATORS,
    Rule,
    RuleError,
    constraint_rules,
    primary_key_rule,
    quality_rule,
    relationship_rule,
)
from mesh_assets.settings import ENGINES, LAYERS
from mesh_assets.yaml_source import YamlDocument, load_yaml

SUPPORTED_API_VERSIONS = ("v3.1.0", "v3.2.0")
VISIBILITIES = ("public", "restricted", "private")
DBT_TRANSFORM = "dbt:"  # customProperties transform "dbt:<model>": the table is built by a dbt model
# Names that reach SQL and paths: snake_case, at most 63 characters (PostgreSQL's identifier limit, so a name
# fits every engine and catalog the mesh feeds).
SNAKE_CASE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# A Python transform's column customProperties derivedFrom: "<schema>.<table>.<column>" (mesh_assets.classification).
DERIVED_FROM = re.compile(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*")
MIN_DECLASSIFIED_REASON = 10  # characters: a reason, not "yes" or "true"
# Columns bronze ingestion adds to every row (docs/architecture.md).
LINEAGE_COLUMNS = {"_source_file": "VARCHAR", "_ingested_at": "TIMESTAMP WITH TIME ZONE", "_run_id": "VARCHAR"}
# DuckDB type of each ODCS logicalType when the contract gives no physicalType, and the type families allowed.
DEFAULT_PHYSICAL = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN",
                    "date": "DATE", "timestamp": "TIMESTAMP", "time": "TIME"}
_FAMILIES = {
    "string": {exp.DataType.Type.VARCHAR, exp.DataType.Type.TEXT, exp.DataType.Type.CHAR, exp.DataType.Type.UUID},
    "integer": exp.DataType.INTEGER_TYPES,
    "number": exp.DataType.INTEGER_TYPES | exp.DataType.REAL_TYPES,
    "boolean": {exp.DataType.Type.BOOLEAN},
    "date": {exp.DataType.Type.DATE},
    "timestamp": exp.DataType.TEMPORAL_TYPES - {exp.DataType.Type.DATE, exp.DataType.Type.TIME},
    "time": {exp.DataType.Type.TIME, exp.DataType.Type.TIMETZ},
}


@dataclass(frozen=True)
class Source:
    """Where a bronze table's rows come from: ``path`` is a glob relative to the landing zone."""

    path: str
    format: str = "csv"
    delimiter: str = ","
    header: bool = True


@dataclass(frozen=True)
class Column:
    """One property of a table: ``physical_type`` is the DuckDB type the column has in the port.

    ``declassified`` is the reason its contract states for publishing, unclassified, values derived from a
    sensitive column (column ``customProperties`` ``declassified``); ``derived_from`` the input columns a Python
    transform declares it is computed from (``derivedFrom``: ``<schema>.<table>.<column>`` names; ``None``: not
    declared). Both are read by mesh_assets.classification.
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


@dataclass(frozen=True)
class Sla:
    """One ODCS SLA property: ``latency`` or ``frequency`` of ``seconds``; ``schedule`` is a cron string."""

    property: str
    seconds: float
    schedule: str | None = None


@dataclass(frozen=True)
class Table:
    """One ``schema[]`` object of a contract: one Dagster asset keyed ``[domain, layer, name]``."""

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
    metrics: tuple[Metric, ...] = ()  # customProperties metrics (mesh_assets.metrics)
    labels: tuple[Label, ...] = ()  # customProperties labels (mesh_assets.labels)
    sql: str | None = None  # the SELECT of a table the framework derives (metrics, labels) instead of a file
    dbt_model: str | None = None  # customProperties transform "dbt:<model>": built by that dbt model (docs/dbt.md)
    engine: str | None = None  # customProperties engine: the table's own engine choice (mesh_assets.engines)
    inputs: tuple[str, ...] = ()  # customProperties inputs of a Python transform: "<schema>.<table>" names

    @property
    def python(self) -> bool:
        """Whether a Python function builds the table (``transform: python/<layer>/<name>.py``;
        mesh_assets.python_transforms)."""
        return self.transform is not None and self.transform.suffix == ".py"

    def transform_sql(self) -> str | None:
        """The SELECT that builds the table: generated, read from its transform file, or its dbt model rendered
        in mesh names (raises ``DbtModelError`` when the model cannot be rendered); ``None`` for bronze and for
        a Python transform."""
        if self.python:
            return None
        if self.sql is not None:
            return self.sql
        if self.dbt_model is not None and self.transform is not None:
            from mesh_assets.dbt_project import render_model  # the model's Jinja, rendered in mesh names

            return render_model(self.transform)
        return self.transform.read_text(encoding="utf-8") if self.transform is not None else None

    @property
    def transform_origin(self) -> str:
        """Where the SELECT comes from, for messages: its file, or ``<contract>#<table>`` when generated."""
        return str(self.transform) if self.sql is None and self.transform else f"{self.contract_path}#{self.name}"

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.domain, self.layer, self.name)

    @property
    def primary_key(self) -> list[str]:
        keyed = [c for c in self.columns if c.primary_key_position is not None]
        return [c.name for c in sorted(keyed, key=lambda c: c.primary_key_position)]

    @property
    def output_columns(self) -> dict[str, str]:
        """Column name → DuckDB type of the port, lineage columns included for bronze."""
        out = {c.name: c.physical_type for c in self.columns}
        return {**out, **LINEAGE_COLUMNS} if self.layer == "bronze" else out


@dataclass(frozen=True)
class Grant:
    """Read access to a product's output ports for another domain: one ODCS ``roles[]`` entry whose
    ``customProperties`` name the ``domain`` granted (docs/governance.md).

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
        return not self.tables or table in self.tables


@dataclass(frozen=True)
class DataProduct:
    """A parsed, validated data contract. ``odcs`` is the package's Pydantic model of the whole document.

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
    odcs: OpenDataContractStandard
    team_declared: bool = True
    grants: tuple[Grant, ...] = ()
    end_of_support: dt.date | None = None
    replaced_by: str | None = None
    engine: str | None = None  # customProperties engine: the product's engine choice (mesh_assets.engines)

    @property
    def deprecated(self) -> bool:
        return self.status == "deprecated"


@functools.cache
def _odcs_validator() -> Any:
    """The JSON Schema of ODCS shipped with ``open-data-contract-standard``, under the draft it declares,
    compiled by ``jsonschema-rs`` (about 200 times faster than the pure-Python validator: 1,000 contracts in
    well under a second)."""
    schema = json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text())
    return jsonschema_rs.validator_for(schema)


def load_contract(path: Path, domain: str, default_team: str) -> DataProduct:
    """Load and validate the data contract at ``path`` of the domain ``domain``.

    ``domain`` is the domain folder's name; ``default_team`` the owner when the contract names no team.

    Raises:
        ContractError: listing every problem found, each as ``<field> (line N): <problem>. <fix>``.
    """
    doc = load_yaml(path)
    data = doc.data
    if not isinstance(data, dict):
        raise ContractError(path, ["(top level): expected an ODCS data contract (a mapping with apiVersion, kind, "
                                   "id, name, version, domain, schema)"])
    problems = [doc.problem(list(err.instance_path), _schema_message(err)) for err in _schema_errors(data)]
    if problems:
        raise ContractError(path, problems)
    try:
        odcs = OpenDataContractStandard.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ContractError(path, [doc.problem(list(e["loc"]), e["msg"]) for e in exc.errors()]) from None
    return _Builder(doc, domain, default_team).build(odcs)


def _schema_errors(data: dict[str, Any]) -> list[Any]:
    """JSON Schema errors, one per field: "unevaluated properties" errors that only follow from another
    error at the same field are dropped."""
    errors = sorted(_odcs_validator().iter_errors(data), key=lambda e: list(map(str, e.instance_path)))
    unevaluated = jsonschema_rs.ValidationErrorKind.UnevaluatedProperties
    primary = {tuple(e.instance_path) for e in errors if not isinstance(e.kind, unevaluated)}
    return [e for e in errors if not isinstance(e.kind, unevaluated) or tuple(e.instance_path) not in primary]


def _schema_message(err: Any) -> str:
    kind = err.kind
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Required):
        return f"'{kind.property}' is a required property (ODCS v3.1 requires it)"
    if isinstance(kind, jsonschema_rs.ValidationErrorKind.Enum):
        return f"{err.instance!r} is not allowed; use one of {', '.join(map(str, kind.options))}"
    if (isinstance(kind, jsonschema_rs.ValidationErrorKind.OneOfNotValid) and "quality" in err.instance_path
            and not any(op in err.instance for op in OPERATORS)):
        return f"a quality rule needs exactly one operator: {', '.join(OPERATORS)} (e.g. mustBe: 0)"
    return err.message


class _Builder:
    """Collects every problem of one contract while building its tables."""

    def __init__(self, doc: YamlDocument, domain: str, default_team: str):
        self.doc, self.path, self.data = doc, doc.path, doc.data
        self.domain, self.default_team = domain, default_team
        self.problems: list[str] = []

    def fail(self, location: list[str | int], message: str) -> None:
        self.problems.append(self.doc.problem(location, message))

    def build(self, odcs: OpenDataContractStandard) -> DataProduct:
        data = self.data
        if data.get("apiVersion") not in SUPPORTED_API_VERSIONS:
            self.fail(["apiVersion"], f"this mesh reads ODCS {' or '.join(SUPPORTED_API_VERSIONS)}; "
                                      "set apiVersion: v3.1.0")
        if data.get("domain") != self.domain:
            self.fail(["domain"], f"is {data.get('domain')!r} but the contract lives in the domain folder "
                                  f"'{self.domain}'; set domain: {self.domain}")
        name = data.get("name")
        if not isinstance(name, str) or not SNAKE_CASE.fullmatch(name):
            self.fail(["name"], "the data product needs a snake_case name, e.g. name: customer_profile")
        team = data.get("team")
        team_name = team.get("name") if isinstance(team, dict) else None
        description = data.get("description") or {}
        text = " ".join(str(description.get(k)) for k in ("purpose", "usage", "limitations") if description.get(k))
        objects = data.get("schema") or []
        if not objects:
            self.fail(["schema"], "a data product needs at least one table in schema[]")
        slas = self._slas(data.get("slaProperties") or [], {o.get("name") for o in objects})
        tables, seen = [], set()
        for i, obj in enumerate(objects):
            table = self._table(obj, ["schema", i], str(name), slas)
            if table is None:
                continue
            if table.name in seen:
                self.fail(["schema", i, "name"], f"table '{table.name}' appears twice; table names are unique")
            seen.add(table.name)
            tables.append(table)
        owner = team_name or self.default_team
        for derived in [metrics_table(t, owner) for t in tables if t.metrics] + [labels_table(t) for t in tables
                                                                                if t.labels]:
            if derived.name in seen:
                self.fail(["schema"], f"table '{derived.name}' is the table the framework derives from the metrics "
                                      "or labels of another table; rename it")
            tables.append(derived)
        grants = self._grants(data.get("roles") or [], {t.name for t in tables if t.layer == "gold"})
        custom = {p.get("property"): p.get("value") for p in data.get("customProperties") or []}
        end_of_support = self._date(custom.get("endOfSupport"), ["customProperties"])
        engine = self._engine(custom.get("engine"), ["customProperties"])
        if data.get("status") == "deprecated" and end_of_support is None:
            self.fail(["status"], "a deprecated product needs its end of support: customProperties: "
                                  "[{property: endOfSupport, value: 'YYYY-MM-DD'}]")
        if self.problems:
            raise ContractError(self.path, self.problems)
        return DataProduct(self.path, data["id"], str(name), str(data["version"]), str(data.get("status") or ""),
                           self.domain, team_name or self.default_team, text, tuple(tables), odcs,
                           team_declared=bool(team_name), grants=grants, end_of_support=end_of_support,
                           replaced_by=custom.get("replacedBy"), engine=engine)

    def _inputs(self, value: Any, loc: list[str | int], transform: Path | None) -> tuple[str, ...]:
        """A Python transform's ``customProperties`` ``inputs``: the tables it reads, as ``<schema>.<table>``
        (what a SQL transform's FROM would name; sqlglot cannot read them out of Python)."""
        python = transform is not None and transform.suffix == ".py"
        if value is None:
            if python:
                self.fail(loc, f"transform {transform.name}: a Python transform declares the tables it reads: "
                               "customProperties: [{property: inputs, value: [silver.orders, customers.nations]}]")
            return ()
        if not python:
            self.fail(loc, "inputs are declared by Python transforms only; a SQL transform's inputs are read "
                           "from its SQL")
            return ()
        names = value if isinstance(value, list) else [value]
        bad = [n for n in names if not isinstance(n, str) or not re.fullmatch(r"[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*", n)]
        if bad:
            self.fail(loc, f"inputs {bad!r}: name each table <layer>.<table> or <domain>.<table>, e.g. silver.orders")
            return ()
        return tuple(names)

    def _engine(self, value: Any, loc: list[str | int]) -> str | None:
        """A ``customProperties`` ``engine`` value: ``duckdb``, ``spark`` or absent."""
        if value is None or value in ENGINES:
            return value
        self.fail(loc, f"engine {value!r} is unknown; use one of {', '.join(ENGINES)} (or leave it out to "
                       "inherit the domain's or the mesh's engine)")
        return None

    def _grants(self, roles: list[dict[str, Any]], ports: set[str]) -> tuple[Grant, ...]:
        """Grants from ``roles[]``: roles without a ``domain`` custom property are not mesh grants (an ODCS
        role may name any IAM role) and are left alone."""
        grants = []
        for i, role in enumerate(roles):
            custom = {p.get("property"): p.get("value") for p in role.get("customProperties") or []}
            if "domain" not in custom:
                continue
            where: list[str | int] = ["roles", i, "customProperties"]
            domain, tables, pii = custom["domain"], custom.get("tables") or [], custom.get("pii", False)
            if not isinstance(domain, str) or not SNAKE_CASE.fullmatch(domain):
                self.fail(where, f"grant domain {domain!r} is not a domain name (snake_case)")
                continue
            if domain == self.domain:
                self.fail(where, f"domain '{domain}' owns this product; grant another domain")
            if str(role.get("access") or "read").lower() != "read":
                self.fail(["roles", i, "access"], "mesh grants give read access; set access: read")
            if not isinstance(tables, list) or any(t not in ports for t in tables):
                self.fail(where, f"grant tables {tables!r} must be a list of this product's output ports "
                                 f"({', '.join(sorted(ports)) or 'none'})")
                continue
            if not isinstance(pii, bool):
                self.fail(where, f"grant pii must be true or false, got {pii!r}")
                continue
            grants.append(Grant(str(role["role"]), domain, tuple(tables), pii, str(custom.get("purpose") or ""),
                                str(custom.get("approvedBy") or ""), str(custom.get("approvedAt") or ""),
                                str(custom.get("request") or "")))
        return tuple(grants)

    def _date(self, value: Any, loc: list[str | int]) -> dt.date | None:
        if value is None or isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(loc, f"endOfSupport {value!r} is not a date; write it as 'YYYY-MM-DD'")
            return None

    def _slas(self, props: list[dict[str, Any]], tables: set[Any]) -> dict[str | None, list[Sla]]:
        """SLAs by table name (``None``: every table of the product)."""
        out: dict[str | None, list[Sla]] = {}
        for i, prop in enumerate(props):
            sla = parse_sla(prop)
            if isinstance(sla, str):
                self.fail(["slaProperties", i], sla)
                continue
            if sla is None:
                continue  # an SLA property this framework does not act on (availability, retention, …)
            element = prop.get("element")
            table = element.split(".")[0] if element else None
            if table is not None and table not in tables:
                self.fail(["slaProperties", i, "element"], f"'{element}' names no table of this contract")
            out.setdefault(table, []).append(sla)
        return out

    def _table(self, obj: dict[str, Any], loc: list[str | int], product: str,
               slas: dict[str | None, list[Sla]]) -> Table | None:
        name = obj.get("name")
        if not isinstance(name, str) or not SNAKE_CASE.fullmatch(name):
            self.fail([*loc, "name"], "every table needs a snake_case name of at most 63 characters")
            return None
        custom = {p.get("property"): p.get("value") for p in obj.get("customProperties") or []}
        layer = custom.get("layer")
        if layer not in LAYERS:
            self.fail([*loc, "customProperties"], f"set the table's layer: customProperties: "
                                                  f"[{{property: layer, value: bronze|silver|gold}}] (got {layer!r})")
            return None
        visibility = custom.get("visibility") or ("public" if layer == "gold" else "private")
        if visibility not in VISIBILITIES:
            self.fail([*loc, "customProperties"], f"visibility {visibility!r} is unknown; use {', '.join(VISIBILITIES)}")
        elif layer != "gold" and visibility != "private":
            self.fail([*loc, "customProperties"], f"{layer} tables are private to their domain; only gold tables "
                                                  "are output ports")
        source = self._source(custom.get("source"), loc) if layer == "bronze" else None
        if layer != "bronze" and custom.get("source") is not None:
            self.fail([*loc, "customProperties"], "only bronze tables ingest a source; silver and gold read SQL")
        transform, dbt_model = None, None
        if str(custom.get("transform") or "").startswith(DBT_TRANSFORM):
            dbt_model = str(custom["transform"])[len(DBT_TRANSFORM):]
            if layer != "gold" or not SNAKE_CASE.fullmatch(dbt_model):
                self.fail([*loc, "customProperties"], f"transform {custom['transform']!r}: a dbt model builds a "
                                                      "gold table; write transform: dbt:<model name (snake_case)>")
            else:
                from mesh_assets.dbt_project import model_file

                try:
                    transform = model_file(self.path, self.domain, dbt_model)
                except MeshError:  # a contract read outside a mesh (a base revision of change management)
                    transform = None
        elif layer != "bronze":
            relative = str(custom.get("transform") or f"sql/{layer}/{name}.sql")
            domain_dir = self.path.parent.parent.resolve()
            transform = (domain_dir / relative).resolve()
            if not transform.is_relative_to(domain_dir):
                self.fail([*loc, "customProperties"], f"transform {relative} is outside the domain folder; a "
                                                      "domain's transforms live in its own sql/ folder")
                transform = None
            elif not transform.is_file():
                self.fail([*loc, "customProperties"], f"transform file {relative} not found next to the domain; "
                                                      f"create it or set customProperties transform")
        inputs = self._inputs(custom.get("inputs"), [*loc, "customProperties"], transform)
        engine = self._engine(custom.get("engine"), [*loc, "customProperties"])
        if engine == "spark" and dbt_model is not None:
            self.fail([*loc, "customProperties"], f"engine spark: table {name} is built by dbt model {dbt_model}, "
                                                  "which runs on dbt-duckdb; remove the engine property "
                                                  "(docs/scaling.md)")
        columns, rules = self._columns(obj.get("properties") or [], [*loc, "properties"], layer)
        python = transform is not None and transform.suffix == ".py"
        for j, prop in enumerate(obj.get("properties") or []):
            if not python and "derivedFrom" in _custom_names(prop):
                self.fail([*loc, "properties", j, "customProperties"],
                          "derivedFrom is declared by Python transforms only; the column lineage of SQL and dbt "
                          "models is read from their SQL. Remove it")
        names = [c.name for c in columns]
        keyed = [c for c in columns if c.primary_key_position is not None]
        if keyed:
            rules.insert(0, primary_key_rule([c.name for c in sorted(keyed, key=lambda c: c.primary_key_position)]))
        for j, rule in enumerate(obj.get("quality") or []):
            try:
                rules.append(quality_rule(rule, None, names, [*loc, "quality", j]))
            except RuleError as exc:
                self.fail(exc.location, str(exc))
        for j, rel in enumerate(obj.get("relationships") or []):
            try:
                rules.append(relationship_rule(rel, None, name, names, [*loc, "relationships", j]))
            except RuleError as exc:
                self.fail(exc.location, str(exc))
        for j, prop in enumerate(obj.get("properties") or []):
            for k, rel in enumerate(prop.get("relationships") or []):
                if prop.get("name") not in names:
                    continue
                try:
                    rules.append(relationship_rule(rel, prop["name"], name, names,
                                                   [*loc, "properties", j, "relationships", k]))
                except RuleError as exc:
                    self.fail(exc.location, str(exc))
        seen: set[str] = {"schema"}
        for rule in rules:
            if rule.name in seen:
                self.fail([*loc], f"two checks on '{name}' are named '{rule.name}'; give one rule another id")
            seen.add(rule.name)
        table_slas = tuple(slas.get(name, []) or slas.get(None, []))
        metrics, labels = self._declarations(obj, loc, name, layer, columns)
        return Table(self.domain, product, name, layer, str(obj.get("description") or ""), tuple(columns),
                     tuple(rules), visibility, source, transform, table_slas, self.path, metrics, labels,
                     dbt_model=dbt_model, engine=engine, inputs=inputs)

    def _declarations(self, obj: dict[str, Any], loc: list[str | int], name: str, layer: str,
                      columns: list[Column]) -> tuple[tuple[Metric, ...], tuple[Label, ...]]:
        """The metrics and labels a gold table declares in its customProperties."""
        found: dict[str, Any] = {}
        for k, prop in enumerate(obj.get("customProperties") or []):
            if prop.get("property") not in ("metrics", "labels"):
                continue
            where: list[str | int] = [*loc, "customProperties", k, "value"]
            if layer != "gold":
                self.fail(where, f"only gold tables declare {prop['property']}; move them to an output port")
                continue
            logical = {c.name: c.logical_type for c in columns}
            try:
                if prop["property"] == "metrics":
                    team = (self.data.get("team") or {}).get("name") or self.default_team
                    found["metrics"] = tuple(parse_metrics(prop.get("value"), logical, team))
                else:
                    keyed = sorted((c for c in columns if c.primary_key_position), key=lambda c: c.primary_key_position)
                    found["labels"] = tuple(parse_labels(prop.get("value"), name, logical, [c.name for c in keyed]))
            except DeclarationError as exc:
                self.fail([*where, *exc.location], str(exc))
        return found.get("metrics", ()), found.get("labels", ())

    def _source(self, value: Any, loc: list[str | int]) -> Source | None:
        if not isinstance(value, dict) or not isinstance(value.get("path"), str):
            self.fail([*loc, "customProperties"], "a bronze table needs customProperties: [{property: source, "
                                                  "value: {path: <glob in the landing zone>, format: csv}}]")
            return None
        parts = Path(value["path"]).parts
        if Path(value["path"]).is_absolute() or ".." in parts or "://" in value["path"]:
            self.fail([*loc, "customProperties"], f"source path {value['path']!r} must be a glob inside the "
                                                  "landing zone, without '..' (e.g. shop/orders*.csv)")
            return None
        fmt = value.get("format", "csv")
        if fmt not in ("csv", "parquet", "json"):
            self.fail([*loc, "customProperties"], f"source format {fmt!r} is not supported; use csv, parquet "
                                                  "or json")
        options = {"path", "format", "delimiter", "header"} if fmt == "csv" else {"path", "format"}
        unknown = set(value) - options
        if unknown:
            self.fail([*loc, "customProperties"], f"unknown source option(s) {', '.join(sorted(unknown))} for "
                                                  f"format {fmt}; use {', '.join(sorted(options))}")
        return Source(value["path"], fmt, str(value.get("delimiter", ",")), bool(value.get("header", True)))

    def _columns(self, props: list[dict[str, Any]], loc: list[str | int], layer: str
                 ) -> tuple[list[Column], list[Rule]]:
        if not props:
            self.fail(loc, "a table needs its columns in properties[]")
        columns: list[Column] = []
        rules: list[Rule] = []
        for j, prop in enumerate(props):
            where = [*loc, j]
            name = prop.get("name")
            if not isinstance(name, str) or not COLUMN_NAME.fullmatch(name):
                self.fail([*where, "name"], "every column needs a name of letters, digits and '_' (at most 63)")
                continue
            if name in {c.name for c in columns}:
                self.fail([*where, "name"], f"column '{name}' appears twice")
                continue
            if layer == "bronze" and name in LINEAGE_COLUMNS:
                self.fail([*where, "name"], f"'{name}' is a lineage column bronze ingestion adds; rename the column")
            logical = prop.get("logicalType")
            if logical not in DEFAULT_PHYSICAL:
                self.fail([*where, "logicalType"], f"set a logicalType, one of {', '.join(DEFAULT_PHYSICAL)}"
                                                   f"{' (nested types are not supported yet)' if logical else ''}")
                continue
            physical = self._physical_type(prop.get("physicalType"), logical, [*where, "physicalType"])
            position = prop.get("primaryKeyPosition")
            if prop.get("primaryKey"):
                position = position if isinstance(position, int) and position > 0 else len(columns) + 1
            else:
                position = None
            declassified, derived_from = self._lineage_properties(prop, [*where, "customProperties"], layer)
            columns.append(Column(name, logical, physical, str(prop.get("description") or ""),
                                  bool(prop.get("required") or prop.get("primaryKey")), bool(prop.get("unique")),
                                  position, prop.get("classification"), declassified, derived_from))
            try:
                rules.extend(constraint_rules(prop, where))
            except RuleError as exc:
                self.fail(exc.location, str(exc))
        names = [c.name for c in columns]
        for j, prop in enumerate(props):
            for k, rule in enumerate(prop.get("quality") or []):
                try:
                    rules.append(quality_rule(rule, prop.get("name"), names, [*loc, j, "quality", k]))
                except RuleError as exc:
                    self.fail(exc.location, str(exc))
        return columns, rules

    def _lineage_properties(self, prop: dict[str, Any], loc: list[str | int], layer: str
                            ) -> tuple[str | None, tuple[str, ...] | None]:
        """A column's ``declassified`` reason and ``derivedFrom`` names (mesh_assets.classification)."""
        custom = {p.get("property"): p.get("value") for p in prop.get("customProperties") or []}
        reason, derived = custom.get("declassified"), custom.get("derivedFrom")
        if "declassified" in custom:
            if layer == "bronze":
                self.fail(loc, "a bronze column's classification is what its contract declares; remove "
                               "declassified (or the column's classification)")
                reason = None
            elif not isinstance(reason, str) or len(reason.strip()) < MIN_DECLASSIFIED_REASON:
                self.fail(loc, f"declassified needs the reason in words (at least {MIN_DECLASSIFIED_REASON} "
                               "characters) why the values no longer identify anyone, e.g. {property: "
                               "declassified, value: 'count of distinct customers per nation, an aggregate'}")
                reason = None
            elif prop.get("classification") is not None:
                self.fail(loc, f"the column is both classified {prop['classification']!r} and declassified; keep "
                               "one of them")
                reason = None
            else:
                reason = reason.strip()
        if derived is None:
            return reason, None
        names = derived if isinstance(derived, list) else [derived]
        bad = [n for n in names if not isinstance(n, str) or not DERIVED_FROM.fullmatch(n)]
        if bad:
            self.fail(loc, f"derivedFrom {bad!r}: name each input column <schema>.<table>.<column>, e.g. "
                           "[silver.orders.o_totalprice] ([] when no input column feeds it)")
            return reason, None
        return reason, tuple(names)

    def _physical_type(self, physical: Any, logical: str, loc: list[str | int]) -> str:
        if physical is None:
            return DEFAULT_PHYSICAL[logical]
        try:
            canonical, parsed = parse_physical_type(str(physical))
        except ValueError as exc:
            self.fail(loc, str(exc))
            return DEFAULT_PHYSICAL[logical]
        if parsed.this not in _FAMILIES[logical]:
            self.fail(loc, f"'{physical}' does not hold logicalType '{logical}'; use e.g. {DEFAULT_PHYSICAL[logical]}")
        return canonical


# sqlglot's DuckDB spelling → DuckDB's own (what DESCRIBE prints), for the types contracts use most; a type
# written either way is stored the same.
_DUCKDB_SPELLING = {exp.DataType.Type.TEXT: "VARCHAR", exp.DataType.Type.INT: "INTEGER",
                    exp.DataType.Type.INT128: "HUGEINT", exp.DataType.Type.TIMESTAMPTZ: "TIMESTAMP WITH TIME ZONE",
                    exp.DataType.Type.TIMETZ: "TIME WITH TIME ZONE"}


def parse_physical_type(text: str) -> tuple[str, exp.DataType]:
    """A contract's ``physicalType`` parsed as exactly one DuckDB data type (nested ``STRUCT``/``LIST``/``MAP``
    and ``DECIMAL(p,s)`` included), with the canonical text re-rendered from the parse: only that text reaches
    SQL, never what the contract wrote. ``VARCHAR``, ``DECIMAL(15,2)`` and the other common types keep DuckDB's
    spelling.

    Raises:
        ValueError: the text is not one data type (trailing SQL, quotes, a second type, an unknown name) or
            DuckDB does not know it; the message says what to write instead.
    """
    hint = "write one DuckDB type, e.g. VARCHAR, BIGINT, DECIMAL(15,2), DATE, STRUCT(a INTEGER, b VARCHAR)"
    try:
        parsed = sqlglot.parse_one(text, dialect="duckdb", into=exp.DataType, error_level=sqlglot.ErrorLevel.RAISE)
    except (sqlglot.errors.SqlglotError, ValueError, TypeError):
        raise ValueError(f"'{text}' is not a DuckDB type; {hint}") from None
    if not isinstance(parsed, exp.DataType) or parsed.this == exp.DataType.Type.USERDEFINED:
        raise ValueError(f"'{text}' is not a DuckDB type; {hint}")
    if parsed.this in (exp.DataType.Type.DECIMAL, exp.DataType.Type.BIGDECIMAL) and parsed.expressions:
        try:
            canonical = f"DECIMAL({','.join(str(int(p.name)) for p in parsed.expressions)})"
        except ValueError:
            raise ValueError(f"'{text}': DECIMAL takes numbers, e.g. DECIMAL(15,2)") from None
    elif not parsed.expressions and parsed.this in _DUCKDB_SPELLING:
        canonical = _DUCKDB_SPELLING[parsed.this]
    else:
        canonical = parsed.sql(dialect="duckdb")
    if not _duckdb_knows(canonical):
        raise ValueError(f"'{text}' is not a type DuckDB knows; {hint}")
    return canonical, parsed


@functools.lru_cache(maxsize=1024)
def _duckdb_knows(canonical: str) -> bool:
    """Whether DuckDB accepts ``canonical`` (a type re-rendered by sqlglot, so no SQL can ride along)."""
    import duckdb

    con = duckdb.connect()
    try:
        con.execute(f"SELECT CAST(NULL AS {canonical})").fetchall()
        return True
    except duckdb.Error:
        return False
    finally:
        con.close()


def _custom_names(prop: dict[str, Any]) -> set[Any]:
    return {p.get("property") for p in prop.get("customProperties") or [] if isinstance(p, dict)}


MIN_SLA_SECONDS = 60  # dagster.FreshnessPolicy refuses a shorter fail window
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
                 "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
                 "w": 604800, "week": 604800, "weeks": 604800}


def parse_sla(prop: dict[str, Any]) -> Sla | str | None:
    """An :class:`Sla` from one ODCS ``slaProperties`` entry; ``None`` for properties other than latency and
    frequency; a message string when the entry cannot be used. Units follow ODCS ("d, day, days", …)."""
    kind = str(prop.get("property", "")).lower()
    if kind not in ("latency", "frequency"):
        return None
    unit = str(prop.get("unit") or "d").lower()
    value = prop.get("value")
    if unit not in _UNIT_SECONDS or not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return f"{kind} needs a positive number value and a unit (s, m, h, d, w), got value {value!r} unit {unit!r}"
    seconds = float(value) * _UNIT_SECONDS[unit]
    if seconds < MIN_SLA_SECONDS:
        return (f"{kind} of {value} {unit} is shorter than 1 minute, the shortest window Dagster's freshness "
                f"policies evaluate; use at least value 1 unit m")
    schedule = prop.get("schedule") if str(prop.get("scheduler") or "").lower() == "cron" else None
    return Sla(kind, seconds, schedule)
