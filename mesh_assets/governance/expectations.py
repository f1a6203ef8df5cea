"""Consumer-driven contracts (docs/domain-repos.md): what each consumer relies on in the output ports it reads,
derived from its SQL and its contract, registered with ``mesh publish``, and checked by the producer's ``mesh
validate`` against its proposed contracts.

A consumer's **expectation** on a port (:class:`~mesh_assets.registry.store.Expectation`), per data product:

- the columns its tables read — anywhere in their SQL (output, ``WHERE``, ``JOIN``, ``GROUP BY``), in its SQL
  rules, in its foreign keys — with the port's type for each (mesh_assets.sql.lineage.columns_read; a query
  sqlglot cannot resolve, or a Python transform without ``derivedFrom``, relies on every column);
- what its contract adds in ``inputPorts`` (mesh_assets.contract.input_ports): more columns, ``required`` and
  ``unique`` columns, the largest latency it accepts, and the major version it pins.

A producer's proposed contract **breaks** an expectation when the port is gone or is no output port, the
consumer may no longer read it, a column it reads is gone or has another type (change management's
normalisation of types, mesh_assets.governance.changes), a required column may be null, a unique column is no
longer unique (a ``unique`` constraint, a one-column primary key or a blocking uniqueness rule), or the port's
latency SLA is longer than accepted. Each is an error of ``mesh validate`` (rule ``change/expectation``) naming
the consumer, its product and team. A port is one Iceberg table, so a major version bump does not shield a
consumer: its next run reads the new table.

Also here: the **column lineage** of a domain's tables from other domains' ports, followed through its own
layers (what ``mesh impact`` follows, mesh_assets.governance.impact), and the **pins** a consumer's contracts
declare, checked against what the producer published (a newer major, an unpinned remote port).
"""

from __future__ import annotations

from mesh_assets.contract.mesh import Domain, Mesh
from mesh_assets.contract.model import DataProduct, InputPort, Table
from mesh_assets.contract.rules import rule_inputs, rule_query
from mesh_assets.errors import MeshError
from mesh_assets.findings import Finding
from mesh_assets.governance.access import AccessError, decide
from mesh_assets.governance.changes import Change, change_finding, normalised_type
from mesh_assets.governance.policies import is_output_port
from mesh_assets.registry.store import Expectation, ExpectationsEntry, LineageEdge, semver
from mesh_assets.settings import LAYERS
from mesh_assets.sql.inputs import PREVIOUS, InputRef, SqlInputError, declared_inputs, find_inputs
from mesh_assets.sql.lineage import column_sources, columns_read
from mesh_assets.yaml_source import format_location, load_yaml

RULE = "change/expectation"
PIN_RULE = "change/pin"


# -- the consumer's side -----------------------------------------------------------------------------------------

def _inputs(table: Table) -> list[InputRef]:
    """The input refs of ``table``'s transform (none for bronze and for a table without SQL)."""
    if table.python:
        return declared_inputs(table.inputs, table.domain)
    return find_inputs(table.sql, table.domain) if table.sql is not None else []


def _columns_of(mesh: Mesh, domain: Domain, schema: str, name: str) -> dict[str, str]:
    """The columns of the table ``schema.name`` as ``domain``'s SQL names it."""
    if schema in LAYERS:
        table = domain.table(schema, name)
        return table.output_columns if table is not None else {}
    return mesh.output_port(schema, name).output_columns


def _reads(mesh: Mesh, domain: Domain, table: Table) -> dict[tuple[str, str], set[str]]:
    """Other domains' port → the columns of it ``table`` reads (transform, SQL rules, foreign keys)."""
    found: dict[tuple[str, str], set[str]] = {}
    queries = []
    if table.sql is not None and not table.python:
        queries.append((table.sql, _inputs(table)))
    for rule in table.rules:
        if rule.kind == "sql":
            queries.append((rule_query(rule, f"{table.layer}.{table.name}"), rule_inputs(rule, table)))
        elif rule.kind == "foreign_key" and rule.params["domain"] not in (None, domain.name):
            found.setdefault((rule.params["domain"], rule.params["table"]), set()).update(rule.params["columns"])
    for sql, refs in queries:
        columns = {(r.schema, r.table): _columns_of(mesh, domain, r.schema, r.table) for r in refs}
        columns[(table.layer, table.name)] = table.output_columns
        columns[(PREVIOUS, table.name)] = table.output_columns
        read = columns_read(sql, columns)
        for ref in refs:
            if not ref.cross_domain:
                continue
            port_columns = set(columns[(ref.schema, ref.table)])
            used = port_columns if read is None else {c for s, t, c in read if (s, t) == (ref.schema, ref.table)}
            found.setdefault((ref.schema, ref.table), set()).update(used & port_columns)
    if table.python:
        for ref in (r for r in _inputs(table) if r.cross_domain):
            port_columns = _columns_of(mesh, domain, ref.schema, ref.table)
            named = {n.split(".")[2] for c in table.columns for n in (c.derived_from or ())
                     if n.startswith(f"{ref.schema}.{ref.table}.")}
            declared = all(c.derived_from is not None for c in table.columns)
            found.setdefault((ref.schema, ref.table), set()).update(named if declared else set(port_columns))
    return found


def derive_expectations(mesh: Mesh, domain: Domain) -> list[Expectation]:
    """What ``domain``'s data products rely on in other domains' ports: one :class:`Expectation` per product
    and port (see the module docstring), types from the port's contract as the mesh resolves it now.

    Raises:
        MeshError: a port read does not resolve (no such domain or port), or a table's SQL does not parse.
    """
    out = []
    for product in domain.products:
        reads: dict[str, set[str]] = {}
        read_by: dict[str, list[str]] = {}
        for table in product.tables:
            try:
                found = _reads(mesh, domain, table)
            except SqlInputError as exc:
                raise MeshError(f"{table.transform_origin}: {exc}") from None
            for (schema, name), columns in found.items():
                reads.setdefault(f"{schema}.{name}", set()).update(columns)
                read_by.setdefault(f"{schema}.{name}", []).append(f"{table.layer}.{table.name}")
        declared = {p.port: p for p in product.input_ports}
        for port in sorted(reads.keys() | declared.keys()):
            producer, name = port.split(".")
            types = mesh.output_port(producer, name).output_columns
            entry = declared.get(port, InputPort(port))
            columns = {c: types.get(c, "") for c in sorted(reads.get(port, set()))}
            columns |= {c: t or types.get(c, "") for c, t in entry.columns}
            out.append(Expectation(port, product.name, product.team, columns, entry.major, entry.required,
                                   entry.unique, entry.freshness.seconds if entry.freshness else None,
                                   tuple(read_by.get(port, ()))))
    return out


def derive_lineage(mesh: Mesh, domain: Domain) -> list[LineageEdge]:
    """Each column of ``domain``'s tables that is computed from other domains' port columns, followed through
    the domain's own layers (a gold column from a silver column from a port column names the port column).
    A query sqlglot cannot trace is taken as feeding every column from every input column; tables whose SQL
    does not resolve are left out (``mesh validate`` reports them)."""
    memo: dict[tuple[str, str], dict[str, set[str]]] = {}

    def lineage(table: Table, busy: frozenset[tuple[str, str]]) -> dict[str, set[str]]:
        key = (table.layer, table.name)
        if key in memo:
            return memo[key]
        if key in busy or table.layer == "bronze":
            return {}
        try:
            refs = _inputs(table)
            columns = {(r.schema, r.table): _columns_of(mesh, domain, r.schema, r.table) for r in refs}
        except (MeshError, SqlInputError):
            memo[key] = {}
            return {}
        columns[(PREVIOUS, table.name)] = table.output_columns
        every = {(s, t, c) for (s, t), cols in columns.items() if s != PREVIOUS for c in cols}
        if table.python:
            traced = {c.name: ({tuple(n.split(".")) for n in c.derived_from} if c.derived_from is not None
                               else every) for c in table.columns}
        else:
            traced = column_sources(table.sql or "", columns) or {c.name: every for c in table.columns}
        out: dict[str, set[str]] = {}
        for column, sources in traced.items():
            found = out.setdefault(column, set())
            for schema, name, source_column in sources:
                if schema == PREVIOUS:
                    continue
                if schema in LAYERS:
                    own = domain.table(schema, name)
                    if own is not None:
                        found |= lineage(own, busy | {key}).get(source_column, set())
                else:
                    found.add(f"{schema}.{name}.{source_column}")
        memo[key] = out
        return out

    edges = []
    for product in domain.products:
        for table in product.tables:
            for column, sources in sorted(lineage(table, frozenset()).items()):
                if sources:
                    edges.append(LineageEdge(product.name, product.team, f"{table.layer}.{table.name}",
                                             table.visibility, column, tuple(sorted(sources))))
    return edges


def consumer_entry(mesh: Mesh, domain: Domain, published_at: str = "", source: str = "",
                   lineage: bool = True) -> ExpectationsEntry:
    """``domain``'s expectations and (unless ``lineage`` is false) column lineage as one registry entry (what
    ``mesh publish`` registers)."""
    return ExpectationsEntry(domain.name, domain.team, tuple(derive_expectations(mesh, domain)),
                             tuple(derive_lineage(mesh, domain)) if lineage else (), published_at, source,
                             domain.members)


def consumer_entries(mesh: Mesh, domains: list[Domain], lineage: bool = True) -> list[ExpectationsEntry]:
    """Every consumer's expectations (and lineage, unless ``lineage`` is false): derived now for ``domains``
    (the mesh's own, loaded), as registered for every other consumer. A local domain whose expectations cannot
    be derived is left out (its SQL's problems are ``mesh validate``'s structure findings)."""
    local = {d.name for d in domains}
    entries = [e for e in mesh.registry.expectations() if e.consumer not in local and e.consumer not in
               mesh.domain_names]
    for domain in domains:
        try:
            entries.append(consumer_entry(mesh, domain, lineage=lineage))
        except MeshError:
            continue
    return entries


# -- the producer's side -----------------------------------------------------------------------------------------

def broken_expectations(product: DataProduct, expectation: Expectation, consumer: str,
                        mesh: Mesh) -> list[Change]:
    """What the proposed ``product`` (the producer's contract now) breaks of ``consumer``'s ``expectation`` on
    one of its ports (see the module docstring); empty when it keeps every promise relied on."""
    port = expectation.port
    table = next((t for t in product.tables if t.name == port.split(".")[1]), None)
    if table is None or not is_output_port(table):
        gone = "port removed" if table is None else f"no longer an output port ({table.layer}, {table.visibility})"
        return [Change("breaking", port, None, gone)]
    try:
        decide(product, table, consumer, mesh.settings.governance)
    except AccessError:
        return [Change("breaking", port, None, f"{table.visibility}, and domain '{consumer}' holds no grant to it")]
    changes = []
    columns = {c.name: c for c in table.columns}
    for name, expected_type in expectation.columns.items():
        column = columns.get(name)
        if column is None:
            changes.append(Change("breaking", port, name, "column removed"))
        elif expected_type and normalised_type(expected_type) != normalised_type(column.physical_type):
            changes.append(Change("breaking", port, name, f"type changed from {expected_type} to "
                                                          f"{column.physical_type}"))
    for name in expectation.required:
        if name in columns and not columns[name].required and columns[name].primary_key_position is None:
            changes.append(Change("breaking", port, name, "may be null (not required)"))
    for name in expectation.unique:
        if name in columns and not _unique(table, name):
            changes.append(Change("breaking", port, name, "no longer unique (no unique constraint, one-column "
                                                          "primary key or blocking uniqueness rule)"))
    if expectation.freshness_seconds is not None:
        latency = min((s.seconds for s in table.slas if s.property == "latency"), default=None)
        if latency is None or latency > expectation.freshness_seconds:
            promised = "no latency SLA" if latency is None else f"a latency SLA of {_duration(latency)}"
            changes.append(Change("breaking", port, None, f"{promised}, longer than the "
                                                          f"{_duration(expectation.freshness_seconds)} relied on"))
    return changes


def _unique(table: Table, column: str) -> bool:
    by_column = next((c for c in table.columns if c.name == column), None)
    return bool(by_column and by_column.unique) or table.primary_key == [column] or any(
        r.kind in ("duplicates", "primary_key") and r.columns == (column,) and r.blocking for r in table.rules)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _relied(expectation: Expectation, change: Change) -> str:
    if change.column is None:
        return f"reads {expectation.port}" + (f" from {', '.join(expectation.read_by)}" if expectation.read_by
                                               else "")
    what = [w for w, names in (("required", expectation.required), ("unique", expectation.unique))
            if change.column in names]
    typed = expectation.columns.get(change.column)
    return f"relies on {change.column}" + (f" ({typed})" if typed else "") + (
        f" being {' and '.join(what)}" if what else "")


def expectation_findings(mesh: Mesh, domains: list[Domain]) -> list[Finding]:
    """One ``change/expectation`` error per consumer expectation that the contracts of ``domains`` (the mesh's
    own, as proposed) break, naming the port, the column, the consumer, its product and team and what it
    relies on; a ``warning`` per registered expectation entry that cannot be read."""
    try:
        entries = consumer_entries(mesh, domains, lineage=False)
    except MeshError as exc:
        return [Finding("warning", RULE, f"the registered consumer expectations cannot be read: {exc}",
                        "fix or remove the registry entry named")]
    products = {(d.name, t.name): p for d in domains for p in d.products for t in p.tables}
    producing = {d.name: d for d in domains}
    findings = []
    for entry in entries:
        for expectation in entry.expectations:
            producer, name = expectation.port.split(".")
            if producer not in producing:
                continue
            product = products.get((producer, name))
            if product is None:  # the port's product is gone: report on the domain
                findings.append(Finding("error", RULE, f"port {expectation.port}: port removed; consumer "
                                        f"{entry.consumer} (product {expectation.product}, team "
                                        f"{expectation.team}) {_relied(expectation, Change('breaking', '', None, ''))}",
                                        f"restore the port, or agree its removal with team {expectation.team}",
                                        producing[producer].path, domain=producer))
                continue
            for change in broken_expectations(product, expectation, entry.consumer, mesh):
                subject = f"port {change.port}" + (f", column {change.column}" if change.column else "")
                findings.append(change_finding(
                    "error", product, change, f"{subject}: {change.what}, which breaks consumer {entry.consumer} "
                    f"(product {expectation.product}, team {expectation.team}): it "
                    f"{_relied(expectation, change)}", f"keep what {entry.consumer} relies on, or agree the change "
                    f"with team {expectation.team} and publish it as a new port they move to", RULE))
    return findings


def pin_findings(mesh: Mesh, domains: list[Domain]) -> list[Finding]:
    """For each product of ``domains`` and each other domain's port it declares in ``inputPorts`` or reads:
    a ``change/pin`` warning when a newer major of the producer exists than the one pinned, or when a port
    resolved from the registry is not pinned; an error when the pin names a major the producer never had."""
    findings = []
    for domain in domains:
        for product in domain.products:
            pins = {p.port: p for p in product.input_ports}
            read = set()
            for table in product.tables:
                try:
                    read |= {f"{r.schema}.{r.table}" for r in _inputs(table) if r.cross_domain}
                except SqlInputError:
                    continue
            for port in sorted(read | pins.keys()):
                findings += _pin_finding(mesh, domain, product, port, pins.get(port))
    return findings


def _pin_finding(mesh: Mesh, domain: Domain, product: DataProduct, port: str, pin: InputPort | None
                 ) -> list[Finding]:
    producer, name = port.split(".")
    try:
        source = mesh.domain(producer)
        table = mesh.output_port(producer, name)
    except MeshError:
        return []  # an unknown port is a structure finding of the table that reads it
    versions = ([semver(e.version) for e in mesh.registry.contracts(producer) if name in {p.table for p in e.ports}]
                if source.remote else [semver(source.product_of(table).version)])
    known = sorted(v for v in versions if v is not None)
    location = list(pin.location) if pin else ["customProperties"]
    line = _line(product, location)
    if pin is None or pin.major is None:
        if not source.remote:
            return []
        return [Finding("warning", PIN_RULE, f"reads {port} from the contract registry without pinning a major "
                        f"version, so a new major of {producer} changes what it is built against",
                        f"pin the current one: customProperties inputPorts: [{{port: {port}, major: "
                        f"{known[-1].major if known else 1}}}]", product.path, line, format_location(location),
                        domain.name)]
    if not any(v.major == pin.major for v in known):
        return [Finding("error", PIN_RULE, f"pins major {pin.major} of {port}, but {producer} has "
                        f"{', '.join(map(str, known)) or 'no version'}", "pin a major the producer has",
                        product.path, line, format_location(location), domain.name)]
    newest = known[-1]
    if newest.major > pin.major:
        return [Finding("warning", PIN_RULE, f"pins major {pin.major} of {port}, and {producer} has published "
                        f"{newest}", f"read {producer}'s changes and move to major {newest.major} (inputPorts "
                        f"major: {newest.major})", product.path, line, format_location(location), domain.name)]
    return []


def _line(product: DataProduct, location: list[str | int]) -> int | None:
    try:
        return load_yaml(product.path).line_of(location)
    except MeshError:
        return None
