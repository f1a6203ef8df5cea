"""Classification follows the data (docs/governance.md): a column computed from a sensitive column is sensitive.

A column *carries* sensitive data when its contract classifies it sensitive (``governance
.sensitive_classifications``, default ``pii``), or when it is computed from a column of its inputs that carries
sensitive data and its contract does not declassify it (column ``customProperties`` ``declassified`` with a
reason). Which input columns a column is computed from is its column lineage:

- SQL transforms, generated SQL (metrics, labels) and dbt models (rendered in mesh names): ``sqlglot`` lineage
  over the input contracts' columns (mesh_assets.sql.lineage). A query sqlglot cannot trace is taken as
  feeding every output column from every input column.
- Python transforms: sqlglot cannot read Python, so a column is taken to be computed from every column of every
  declared input, unless the contract says which with the column ``customProperties`` ``derivedFrom`` (a list
  of ``<schema>.<table>.<column>``; ``[]`` for none).
- Bronze: the source's classification is what its contract declares.

Inputs carry what their own contracts say, followed back through every layer and domain: silver from bronze,
gold from silver, a consumer's port from the producer's port it reads. A masked input (read without a PII grant)
still carries: a masked value is a pseudonym of the person, and joins as one.

``mesh validate`` reports every column that carries sensitive data without a sensitive classification
(rule ``security/classification``, an error no policy level turns off).
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh_assets.contract.mesh import Domain, Mesh
from mesh_assets.contract.model import DataProduct, Table
from mesh_assets.errors import MeshError
from mesh_assets.findings import Finding
from mesh_assets.settings import LAYERS
from mesh_assets.sql.inputs import PREVIOUS, InputRef, SqlInputError, declared_inputs, find_inputs
from mesh_assets.sql.lineage import column_sources
from mesh_assets.yaml_source import format_location, load_yaml

RULE = "security/classification"


@dataclass(frozen=True)
class Carried:
    """An input column carrying sensitive data that an output column is computed from.

    ``ref`` names it as the transform does (``customers.customer_profile.c_name``); ``classification`` is the
    classification it carries; ``origin`` the column whose contract declared it
    (``customers/bronze/customer.c_name``).
    """

    ref: str
    classification: str
    origin: str

    def __str__(self) -> str:
        """``customers.customer_profile.c_name (pii)``, with ``, from <origin>`` when inherited."""
        schema, table, column = self.ref.split(".")
        own = f"/{schema}/{table}.{column}" if schema in LAYERS else f"{schema}/gold/{table}.{column}"
        inherited = schema != PREVIOUS and not self.origin.endswith(own)
        return f"{self.ref} ({self.classification}{f', from {self.origin}' if inherited else ''})"


@dataclass(frozen=True)
class _Lineage:
    """The carried input columns of each output column of one table; ``note`` says how lineage was found when
    it was assumed rather than traced."""

    columns: dict[str, tuple[Carried, ...]]
    note: str = ""


class _Tracer:
    """Follows classification through the mesh, each table once (tables of other domains loaded on demand)."""

    def __init__(self, mesh: Mesh):
        self.mesh = mesh
        self.sensitive = set(mesh.settings.governance.sensitive_classifications)
        self.carried_by: dict[tuple[str, str, str], dict[str, tuple[str, str]]] = {}
        self.lineages: dict[tuple[str, str, str], _Lineage] = {}
        self.busy: set[tuple[str, str, str]] = set()
        self.failures: dict[tuple[str, str, str], Exception] = {}

    def declared(self, table: Table) -> dict[str, tuple[str, str]]:
        return {c.name: (str(c.classification), f"{'/'.join(table.key)}.{c.name}") for c in table.columns
                if c.classification in self.sensitive}

    def carried(self, domain: Domain, table: Table) -> dict[str, tuple[str, str]]:
        """Column → (classification, origin) of every column of ``table`` that carries sensitive data."""
        if table.key in self.carried_by:
            return self.carried_by[table.key]
        if table.key in self.busy:  # a cycle (reported by mesh validate on its own): what the contract declares
            return self.declared(table)
        self.busy.add(table.key)
        try:
            lineage = self.lineage(domain, table)
        finally:
            self.busy.discard(table.key)
        out = self.declared(table)
        for column in table.columns:
            sources = lineage.columns.get(column.name)
            if column.name not in out and not column.declassified and sources:
                out[column.name] = (sources[0].classification, sources[0].origin)
        self.carried_by[table.key] = out
        return out

    def lineage(self, domain: Domain, table: Table, strict: bool = False) -> _Lineage:
        """The carried input columns of each column of ``table`` (nothing for bronze, or for a table whose SQL
        or inputs do not resolve: ``mesh validate`` reports those on their own).

        Raises:
            MeshError, SqlInputError: only when ``strict``, why the table's lineage cannot be found.
        """
        if table.key not in self.lineages:
            try:
                self.lineages[table.key] = self._lineage(domain, table)
            except (MeshError, SqlInputError) as exc:
                self.failures[table.key] = exc
                self.lineages[table.key] = _Lineage({})
        if strict and table.key in self.failures:
            raise self.failures[table.key]
        return self.lineages[table.key]

    def _lineage(self, domain: Domain, table: Table) -> _Lineage:
        if table.layer == "bronze":
            return _Lineage({})
        sql = table.sql
        refs = declared_inputs(table.inputs, domain.name) if table.python else find_inputs(sql or "", domain.name)
        columns: dict[tuple[str, str], dict[str, str]] = {(PREVIOUS, table.name): table.output_columns}
        # keyed "<schema>.<table>.<column>" in lower case: DuckDB and sqlglot fold unquoted names
        carried: dict[str, tuple[str, str]] = {f"{PREVIOUS}.{table.name}.{c}".lower(): v
                                               for c, v in self.declared(table).items()}
        for ref in refs:
            owner, source = self._resolve(domain, ref)
            columns[(ref.schema, ref.table)] = source.output_columns
            carried |= {f"{ref.schema}.{ref.table}.{c}".lower(): v for c, v in self.carried(owner, source).items()}
        every = tuple(sorted(carried))
        if table.python:
            return self._python_lineage(table, columns, carried, every)
        traced = column_sources(sql or "", columns)
        if traced is None:
            feeds = {c.name: every for c in table.columns}
            note = "sqlglot cannot trace this SQL's column lineage, so every input column is taken to feed it"
        else:
            lowered = {name.lower(): refs_ for name, refs_ in traced.items()}
            feeds = {c.name: tuple(sorted(".".join(r) for r in lowered.get(c.name.lower(), set())))
                     for c in table.columns}
            note = ""
        return _Lineage({name: _carried(names, carried) for name, names in feeds.items()}, note)

    def _python_lineage(self, table: Table, columns: dict[tuple[str, str], dict[str, str]],
                        carried: dict[str, tuple[str, str]], every: tuple[str, ...]) -> _Lineage:
        known = {f"{s}.{t}.{c}".lower() for (s, t), cols in columns.items() for c in cols}
        feeds, assumed = {}, False
        for column in table.columns:
            if column.derived_from is None:
                feeds[column.name], assumed = every, True
                continue
            unknown = [n for n in column.derived_from if n.lower() not in known]
            if unknown:
                raise _DerivedFromError(column.name, unknown)
            feeds[column.name] = column.derived_from
        note = ("Python is not traced: a column without customProperties derivedFrom is taken to be computed "
                "from every column of every declared input" if assumed else "")
        return _Lineage({name: _carried(names, carried) for name, names in feeds.items()}, note)

    def _resolve(self, domain: Domain, ref: InputRef) -> tuple[Domain, Table]:
        if not ref.cross_domain:
            table = domain.table(ref.schema, ref.table)
            if table is None:
                raise MeshError(f"{ref.schema}.{ref.table} is not declared")
            return domain, table
        return self.mesh.domain(ref.schema), self.mesh.output_port(ref.schema, ref.table)


class _DerivedFromError(MeshError):
    def __init__(self, column: str, unknown: list[str]):
        self.column, self.unknown = column, unknown
        super().__init__(f"derivedFrom of column '{column}' names {', '.join(unknown)}")


def _carried(names: tuple[str, ...], carried: dict[str, tuple[str, str]]) -> tuple[Carried, ...]:
    return tuple(Carried(n, *carried[n.lower()]) for n in names if n.lower() in carried)


def classification_findings(mesh: Mesh, domains: list[Domain]) -> list[Finding]:
    """One ``security/classification`` error per column of ``domains`` that carries sensitive data without a
    sensitive classification (see the module docstring), naming the contract, the column (with its line), the
    input columns it is computed from and the fix; and one per ``derivedFrom`` name that is no column of the
    Python transform's declared inputs. Each table's lineage is traced once for all ``domains``."""
    tracer = _Tracer(mesh)
    findings = []
    for domain, product in ((d, p) for d in domains for p in d.products):
        for i, table in enumerate(product.tables):
            try:
                lineage = tracer.lineage(domain, table, strict=True)
            except _DerivedFromError as exc:
                j = next(j for j, c in enumerate(table.columns) if c.name == exc.column)
                findings.append(_finding(product, i, j, f"derivedFrom of column '{exc.column}' of {table.layer} "
                                         f"table '{table.name}' names {', '.join(exc.unknown)}, which is no column "
                                         "of the transform's declared inputs",
                                         "name columns of the tables in customProperties inputs, as "
                                         "<schema>.<table>.<column>", domain, "customProperties"))
                continue
            except (MeshError, SqlInputError):
                continue  # reported by the structure checks of mesh validate
            for j, column in enumerate(table.columns):
                sources = lineage.columns.get(column.name)
                if not sources or column.classification in tracer.sensitive or column.declassified:
                    continue
                findings.append(_column_finding(product, i, j, table, column.name, column.classification,
                                                sources, lineage.note, domain))
    return findings


def _column_finding(product: DataProduct, i: int, j: int, table: Table, column: str, classification: str | None,
                    sources: tuple[Carried, ...], note: str, domain: Domain) -> Finding:
    listed = ", ".join(map(str, sources))
    classified = f"classified {classification!r}" if classification else "not classified"
    message = (f"column '{column}' of {table.layer} table '{table.name}' is computed from {listed} but is "
               f"{classified}, so its values would reach readers without a PII grant unmasked"
               + (f" ({note})" if note else ""))
    if table.generated:  # a metrics or labels port: its columns cannot be classified
        return Finding("error", RULE, message, "leave sensitive columns out of the metrics or labels declaration "
                       "(dimensions, expression, label query), or aggregate a column of the table that declares "
                       "declassified with a reason", product.path, None, None, domain.name)
    fix = (f"add `classification: {sources[0].classification}` to the column, or declare it declassified with a "
           "reason: customProperties: [{property: declassified, value: '<why its values no longer identify "
           "anyone, e.g. a count>'}]")
    return _finding(product, i, j, message, fix, domain)


def _finding(product: DataProduct, i: int, j: int, message: str, fix: str, domain: Domain, *field: str
             ) -> Finding:
    declared = product.tables[i].columns[j].location  # an inherited column: the property it inherits
    location: list[str | int] = [*(declared or ("schema", i, "properties", j)), *field]
    return Finding("error", RULE, message, fix, product.path, load_yaml(product.path).line_of(location),
                   format_location(location), domain.name)
