"""``mesh validate`` for dbt models bound to data contracts, and ``mesh dbt sync`` (docs/dbt.md).

The data contract is the single source of truth of a dbt-built table:

- the model's dbt contract (``dbt/models/<domain>/<model>.yml``: ``contract: {enforced: true}``, columns,
  ``data_type``) is generated from it by :func:`sync_properties`; a file out of sync is an error;
- the model's SQL must select every contracted column and no other: sqlglot reads the rendered model (stars
  expanded from the input tables' contracts), so a dropped column is found before anything runs;
- every dbt source a domain declares names, in ``meta.dagster.asset_key``, the port its ``schema`` resolves to.
"""

from __future__ import annotations

from pathlib import Path

import sqlglot
import yaml
from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

from mesh_assets.contract.dbt_project import domain_sources, project_dir, properties_file, properties_text
from mesh_assets.contract.mesh import Domain, Mesh
from mesh_assets.contract.model import DataProduct, Table
from mesh_assets.errors import ContractError, MeshError
from mesh_assets.findings import Finding, contract_findings
from mesh_assets.sql.inputs import find_inputs
from mesh_assets.yaml_source import read_yaml_text

SYNC_FIX = "run `mesh dbt sync` (then `make dbt-manifest`); change columns in the data contract, not in dbt"


def dbt_tables(domain: Domain) -> list[tuple[DataProduct, Table]]:
    """The tables of ``domain`` that dbt models build."""
    return [(p, t) for p in domain.products for t in p.tables if t.dbt_model is not None and t.transform]


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _expected(mesh: Mesh, table: Table) -> tuple[Path, str]:
    """The model's properties file and the text it should have (its dbt tests kept)."""
    assert table.transform is not None
    path = properties_file(table.transform)
    existing = yaml.safe_load(read_yaml_text(path)) if path.is_file() else None
    return path, properties_text(table, _relative(table.contract_path, mesh.root), existing)


def sync_properties(mesh: Mesh) -> list[Path]:
    """Write the dbt properties of every dbt-built table of the mesh from its data contract; return the files
    that changed."""
    changed = []
    for domain in mesh.domains():
        for _, table in dbt_tables(domain):
            path, text = _expected(mesh, table)
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                path.write_text(text, encoding="utf-8")
                changed.append(path)
    return changed


def dbt_findings(mesh: Mesh, domain: Domain) -> list[Finding]:
    """Every problem of ``domain``'s dbt models against their data contracts (see the module docstring)."""
    findings: list[Finding] = []
    for _, table in dbt_tables(domain):
        assert table.transform is not None
        try:
            path, text = _expected(mesh, table)
        except ContractError as exc:  # its properties file cannot be read safely
            findings += contract_findings(exc, domain.name)
            continue
        actual = path.read_text(encoding="utf-8") if path.is_file() else None
        if actual != text:
            what = "is missing" if actual is None else "differs from the data contract"
            findings.append(Finding("error", "dbt/contract_sync", f"the dbt contract of model {table.dbt_model} "
                                    f"{what} ({_relative(table.contract_path, mesh.root)})", SYNC_FIX, path,
                                    _first_difference(actual, text), f"models[{table.dbt_model}]", domain.name))
        findings += _column_findings(mesh, domain, table)
    folder = project_dir(mesh.root) / "models" / domain.name
    if folder.is_dir():
        try:
            findings += _source_findings(domain, folder)
        except ContractError as exc:
            findings += contract_findings(exc, domain.name)
    return findings


def _first_difference(actual: str | None, expected: str) -> int | None:
    """The 1-based line where ``actual`` first differs from ``expected`` (``None`` for a missing file)."""
    if actual is None:
        return None
    ours, theirs = actual.splitlines(), expected.splitlines()
    return next((i + 1 for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)) + 1)


def _column_findings(mesh: Mesh, domain: Domain, table: Table) -> list[Finding]:
    """A finding per contracted column the model does not select, and per column it selects beyond them."""
    assert table.transform is not None
    try:
        selected, line = _selected_columns(mesh, domain, table.sql or "")
    except (MeshError, sqlglot.errors.SqlglotError):
        return []  # models whose SQL does not parse are reported when their asset is built (structure/asset)
    if selected is None:
        return []
    findings = []
    where = f"dbt model {table.dbt_model} ({_relative(table.transform, mesh.root)})"
    for column in table.columns:
        if column.name not in selected:
            findings.append(Finding(
                "error", "dbt/dropped_column", f"{where} does not select column {column.name}, which the data "
                f"contract of {'/'.join(table.key)} declares", f"select {column.name} in the model, or remove it "
                "from the contract (a breaking change: new major version)", table.transform, line,
                column.name, domain.name))
    for name in selected:
        if name not in {c.name for c in table.columns}:
            findings.append(Finding(
                "error", "dbt/extra_column", f"{where} selects column {name}, which the data contract of "
                f"{'/'.join(table.key)} does not declare", f"drop {name} from the model or add it to the contract",
                table.transform, line, name, domain.name))
    return findings


def _selected_columns(mesh: Mesh, domain: Domain, sql: str) -> tuple[list[str] | None, int | None]:
    """The output column names of ``sql`` (``None`` when a star cannot be expanded) and the line of its last
    selected expression (where a missing column would go)."""
    tree = sqlglot.parse_one(sql, dialect="duckdb")
    schema: dict[str, dict[str, dict[str, str]]] = {}
    for ref in find_inputs(sql, domain.name):
        source = mesh.output_port(ref.schema, ref.table) if ref.cross_domain else domain.table(ref.schema, ref.table)
        if source is not None:
            schema.setdefault(ref.schema, {})[ref.table] = source.output_columns
    if any(isinstance(s, exp.Star) or (isinstance(s, exp.Column) and s.is_star) for s in tree.selects):
        try:
            tree = qualify(tree, schema=schema, dialect="duckdb", validate_qualify_columns=False)
        except sqlglot.errors.SqlglotError:
            return None, None
    lines = [n.meta.get("line") for n in tree.selects[-1].find_all(exp.Identifier)] if tree.selects else []
    return list(tree.named_selects), max((n for n in lines if n), default=None)


def _source_findings(domain: Domain, folder: Path) -> list[Finding]:
    """A finding per dbt source whose ``meta.dagster.asset_key`` is not the port its ``schema`` names."""
    findings = []
    for source in domain_sources(folder).values():
        try:
            expected = find_inputs(f"SELECT * FROM {source.schema}.{source.table}", domain.name)[0].key
        except (MeshError, ValueError) as exc:
            findings.append(Finding("error", "dbt/source", f"source {source.source}.{source.table}: {exc}",
                                    "set the source's schema to a layer (silver, gold) or to the domain of the port",
                                    source.file, source.line, f"sources[{source.source}]", domain.name))
            continue
        if source.asset_key != expected:
            findings.append(Finding(
                "error", "dbt/source", f"source {source.source}.{source.table} reads {source.schema}.{source.table}, "
                f"the port {'/'.join(expected)}, but its meta.dagster.asset_key is {list(source.asset_key or [])}",
                f"set meta: {{dagster: {{asset_key: {list(expected)}}}}} so lineage joins the port's asset",
                source.file, source.line, f"sources[{source.source}].tables[{source.table}]", domain.name))
    return findings
