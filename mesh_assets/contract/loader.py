"""Data contracts: ODCS v3.1 YAML files → :class:`~mesh_assets.contract.model.DataProduct` and its tables.

A contract is first validated as ODCS (mesh_assets.contract.odcs: the JSON Schema shipped with the
``open-data-contract-standard`` package, then its Pydantic model), then built section by section into the
values of mesh_assets.contract.model, checking what this framework needs: layers and sources here, columns and
types (columns, types), rules (rules), SLAs (sla), grants (grants), metrics and labels (metrics, labels), and
each table's transform, resolved once (transform): the modules of this package. Every problem
found is reported at once, each with its field, line and fix.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from open_data_contract_standard.model import OpenDataContractStandard

from mesh_assets.contract.columns import custom_names, parse_columns
from mesh_assets.contract.grants import parse_grants
from mesh_assets.contract.input_ports import PROPERTY as INPUT_PORTS
from mesh_assets.contract.input_ports import parse_input_ports
from mesh_assets.contract.inheritance import DeclaredProperty, declared_properties, declared_quality
from mesh_assets.contract.labels import labels_table, parse_labels
from mesh_assets.contract.metrics import DeclarationError, metrics_table, parse_metrics
from mesh_assets.contract.model import (PARTITION_CHECK, SNAKE_CASE, VISIBILITIES, Column, DataProduct, Label, Metric,
                                       Sla, Source, Table)
from mesh_assets.contract.odcs import validate_odcs
from mesh_assets.contract.partitioning import check_source_path, parse_input_policies, parse_partitioning
from mesh_assets.contract.rules import (RuleError, primary_key_rule, primary_key_severity, quality_rule,
                                        relationship_rule)
from mesh_assets.contract.servers import check_servers
from mesh_assets.contract.sla import parse_slas
from mesh_assets.contract.transform import resolve_transform
from mesh_assets.errors import ContractError
from mesh_assets.settings import ENGINES, LAYERS
from mesh_assets.yaml_source import YamlDocument, load_yaml


def load_contract(path: Path, domain: str, default_team: str, transforms: bool = True) -> DataProduct:
    """Load and validate the data contract at ``path`` of the domain ``domain``.

    ``domain`` is the domain folder's name; ``default_team`` the owner when the contract names no team. Each
    table's SQL is read (its file, or its dbt model rendered) here, once. With ``transforms=False`` (a contract
    published in the registry, whose SQL stays in its producer's repository) no transform is resolved: every
    table's ``transform`` and ``sql`` are ``None`` (generated metrics and labels tables keep their SELECT).

    Raises:
        ContractError: listing every problem found, each as ``<field> (line N): <problem>. <fix>``; the YAML
            file itself is refused (mesh_assets.yaml_source), or a dbt model's properties file is.
    """
    doc = load_yaml(path)
    odcs = validate_odcs(doc)
    return _Builder(doc, domain, default_team, transforms).build(odcs)


class _Builder:
    """Collects every problem of one contract while building its tables."""

    def __init__(self, doc: YamlDocument, domain: str, default_team: str, transforms: bool = True):
        self.doc, self.path, self.data = doc, doc.path, doc.data
        self.domain, self.default_team, self.transforms = domain, default_team, transforms
        self.problems: list[str] = []

    def fail(self, location: list[str | int], message: str) -> None:
        problem = self.doc.problem(location, message)
        if problem not in self.problems:  # an inherited column's problem is met by every table inheriting it
            self.problems.append(problem)

    def build(self, odcs: OpenDataContractStandard) -> DataProduct:
        data = self.data
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
        slas = parse_slas(data.get("slaProperties") or [], {o.get("name") for o in objects}, self.fail)
        tables, seen = [], set()
        for i, obj in enumerate(objects):
            if not isinstance(obj, dict):
                continue  # refused by the ODCS schema already
            table = self._table(obj, ["schema", i], str(name), slas, declared_properties(objects, i, self.fail),
                                declared_quality(objects, i, self.fail))
            if table is None:
                continue
            if table.name in seen:
                self.fail(["schema", i, "name"], f"table '{table.name}' appears twice; table names are unique")
            seen.add(table.name)
            tables.append(table)
        check_servers(data, self.domain, self.fail)
        owner = team_name or self.default_team
        for derived in [metrics_table(t, owner) for t in tables if t.metrics] + [labels_table(t) for t in tables
                                                                                if t.labels]:
            if derived.name in seen:
                self.fail(["schema"], f"table '{derived.name}' is the table the framework derives from the metrics "
                                      "or labels of another table; rename it")
            tables.append(derived)
        grants = parse_grants(data.get("roles") or [], self.domain, {t.name for t in tables if t.layer == "gold"},
                              self.fail)
        custom = {p.get("property"): p.get("value") for p in data.get("customProperties") or []}
        ports_at = next((i for i, p in enumerate(data.get("customProperties") or [])
                         if p.get("property") == INPUT_PORTS), None)
        input_ports = () if ports_at is None else parse_input_ports(
            custom[INPUT_PORTS], self.domain, ["customProperties", ports_at, "value"], self.fail)
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
                           replaced_by=custom.get("replacedBy"), engine=engine, input_ports=input_ports)

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

    def _date(self, value: Any, loc: list[str | int]) -> dt.date | None:
        if value is None or isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.fail(loc, f"endOfSupport {value!r} is not a date; write it as 'YYYY-MM-DD'")
            return None

    def _table(self, obj: dict[str, Any], loc: list[str | int], product: str,
               slas: dict[str | None, list[Sla]], declared: list[DeclaredProperty],
               quality: list[DeclaredProperty]) -> Table | None:
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
            self.fail([*loc, "customProperties"], f"visibility {visibility!r} is unknown; use "
                                                  f"{', '.join(VISIBILITIES)}")
        elif layer != "gold" and visibility != "private":
            self.fail([*loc, "customProperties"], f"{layer} tables are private to their domain; only gold tables "
                                                  "are output ports")
        source = self._source(custom.get("source"), loc) if layer == "bronze" else None
        if layer != "bronze" and custom.get("source") is not None:
            self.fail([*loc, "customProperties"], "only bronze tables ingest a source; silver and gold read SQL")
        if self.transforms:
            transform, dbt_model, sql = resolve_transform(custom.get("transform"), layer, name, self.path,
                                                          self.domain, self.fail, [*loc, "customProperties"])
            inputs = self._inputs(custom.get("inputs"), [*loc, "customProperties"], transform)
        else:  # a published contract: how the producer builds its tables is its repository's business
            transform, dbt_model, sql, inputs = None, None, None, ()
        engine = self._engine(custom.get("engine"), [*loc, "customProperties"])
        if engine == "spark" and dbt_model is not None:
            self.fail([*loc, "customProperties"], f"engine spark: table {name} is built by dbt model {dbt_model}, "
                                                  "which runs on dbt-duckdb; remove the engine property "
                                                  "(docs/scaling.md)")
        columns, rules = parse_columns(declared, [*loc, "properties"], layer, self.fail)
        partitioning = parse_partitioning(custom.get("partitioning"), declared, columns, loc, self.fail)
        on_input_change = parse_input_policies(custom.get("onInputChange"), partitioning, [*loc, "customProperties"],
                                               self.fail)
        if source is not None:
            check_source_path(source.path, partitioning, [*loc, "customProperties"], self.fail)
        python = transform is not None and transform.suffix == ".py"
        for entry in declared:
            if self.transforms and not python and "derivedFrom" in custom_names(entry.prop):
                self.fail([*entry.location, "customProperties"],
                          "derivedFrom is declared by Python transforms only; the column lineage of SQL and dbt "
                          "models is read from their SQL. Remove it")
        names = [c.name for c in columns]
        keyed = [c for c in columns if c.primary_key_position is not None]
        if keyed:
            try:
                severity = primary_key_severity([(e.prop, list(e.location)) for e in declared], [*loc, "properties"])
            except RuleError as exc:
                self.fail(exc.location, str(exc))
                severity = "error"
            rules.insert(0, primary_key_rule([c.name for c in sorted(keyed, key=lambda c: c.primary_key_position)],
                                             severity))
        for entry in quality:
            try:
                rules.append(quality_rule(entry.prop, None, names, list(entry.location)))
            except RuleError as exc:
                self.fail(exc.location, str(exc))
        for j, rel in enumerate(obj.get("relationships") or []):
            try:
                rules.append(relationship_rule(rel, None, name, names, [*loc, "relationships", j]))
            except RuleError as exc:
                self.fail(exc.location, str(exc))
        for entry in declared:
            prop = entry.prop
            for k, rel in enumerate(prop.get("relationships") or []):
                if prop.get("name") not in names:
                    continue
                try:
                    rules.append(relationship_rule(rel, prop["name"], name, names,
                                                   [*entry.location, "relationships", k]))
                except RuleError as exc:
                    self.fail(exc.location, str(exc))
        seen: set[str] = {"schema", *([PARTITION_CHECK] if partitioning is not None else [])}  # framework checks
        for rule in rules:
            if rule.name in seen:
                self.fail([*loc], f"two checks on '{name}' are named '{rule.name}'; give one rule another id")
            seen.add(rule.name)
        table_slas = tuple(slas.get(name, []) or slas.get(None, []))
        metrics, labels = self._declarations(obj, loc, name, layer, columns)
        return Table(self.domain, product, name, layer, str(obj.get("description") or ""), tuple(columns),
                     tuple(rules), visibility, source, transform, table_slas, self.path, metrics, labels,
                     sql=sql, dbt_model=dbt_model, engine=engine, inputs=inputs, partitioning=partitioning,
                     on_input_change=on_input_change)

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
