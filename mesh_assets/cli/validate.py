"""``mesh validate``: every check the governance group runs on the mesh, as one list of :class:`Finding`.

1. structure — ``mesh.yaml``, domain descriptors and contracts parse; every table builds into an asset (its SQL
   parses, its inputs exist and may be read); the query of every SQL rule plans against the columns of the
   tables it reads (mesh_assets.engine.planning); no dependency cycle crosses domains;
2. policies — ``governance.policies`` of ``mesh.yaml`` on every contract (mesh_assets.governance.policies);
3. access — grants name existing domains; each grant rests on a valid approved request file and every request
   file is valid (mesh_assets.governance.access_requests); every domain lists its members and ``CODEOWNERS`` is in sync
   (mesh_assets.governance.codeowners); readers of deprecated ports are warned;
4. security — no secret-looking literal in the mesh's files (mesh_assets.governance.secrets); every column computed
   from a sensitive column is classified sensitive or declassified with a reason
   (mesh_assets.governance.classification);
5. change management — with a base git ref, breaking changes of output ports need a major version bump
   (mesh_assets.governance.changes); the output ports keep what every consumer registered it relies on, and
   each product's pinned majors of other domains' ports are current (mesh_assets.governance.expectations);
6. dbt — each dbt model selects its contract's columns, its dbt contract is in sync, its sources name their
   ports (mesh_assets.governance.dbt_checks).

The assets of dbt-built tables load from the dbt manifest (``dbt/target/manifest.json``), which is generated and
not committed: on a fresh clone it is missing, so validation makes it first (``dbt parse``, what ``make
dbt-manifest`` runs) and says so in a note. If dbt cannot make it, that is one finding of the dbt project, and the
dbt-built tables are left out of the asset checks, so no domain is blamed for a file it does not own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from mesh_assets.contract.dbt_project import MANIFEST, parse_project, project_dir, project_yaml_files
from mesh_assets.contract.graph import cycle_message, find_cycle
from mesh_assets.contract.mesh import Domain, Mesh, load_mesh
from mesh_assets.contract.model import Table
from mesh_assets.contract.rules import rule_inputs, rule_query
from mesh_assets.engine.planning import plan_query
from mesh_assets.errors import ContractError, ContractsError, MeshError
from mesh_assets.findings import Finding, contract_findings
from mesh_assets.governance.access import AccessError, authorize_input
from mesh_assets.governance.access_requests import grant_findings, read_requests
from mesh_assets.governance.classification import classification_findings
from mesh_assets.governance.codeowners import codeowners_findings
from mesh_assets.governance.dbt_checks import dbt_findings
from mesh_assets.governance.expectations import expectation_findings, pin_findings
from mesh_assets.governance.policies import policy_findings
from mesh_assets.orchestration.assets import table_asset
from mesh_assets.sql.inputs import PREVIOUS
from mesh_assets.yaml_source import format_location, load_yaml, read_yaml_text



@dataclass
class Report:
    """The findings of one validation, per domain that loaded its asset and check counts, and notes on what
    validation did besides checking (e.g. made the dbt manifest)."""

    findings: list[Finding] = field(default_factory=list)
    domains: dict[str, tuple[int, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]


def _error_finding(exc: MeshError, domain: str | None) -> list[Finding]:
    if isinstance(exc, ContractError):
        return contract_findings(exc, domain)
    rule = f"access/{exc.reason}" if isinstance(exc, AccessError) else "structure/asset"
    return [Finding("error", rule, str(exc), "", None, None, None, domain)]


def validate(root: Path, base: str | None = None,
             progress: Callable[[int, int, str], None] | None = None) -> Report:
    """Validate the mesh at ``root`` (see the module docstring); ``base`` a git ref to compare contracts with.
    ``progress(done, total, stage)`` is called before each domain is loaded, before each is checked, and before
    the checks of the whole mesh (total: twice the domains plus 1).

    Raises:
        MeshError: ``base`` is given but is no git ref of ``root``'s repository.
    """
    report = Report()
    try:
        mesh = load_mesh(root)
    except ContractError as exc:
        report.findings += contract_findings(exc, None)
        return report
    report_progress = progress or (lambda done, total, stage: None)
    total = 2 * len(mesh.domain_names) + 1
    loaded: list[Domain] = []
    for done, name in enumerate(mesh.domain_names):
        report_progress(done, total, f"loading {name}")
        try:
            loaded.append(mesh.domain(name))
        except ContractError as exc:
            report.findings += contract_findings(exc, name)
        except ContractsError as exc:
            report.findings += [f for error in exc.errors for f in contract_findings(error, name)]
        except MeshError as exc:
            report.findings.append(Finding("error", "structure/contract", str(exc), "", None, None, None, name))
    dbt_ready = _dbt_manifest(mesh, loaded, report)
    for done, domain in enumerate(loaded, start=len(mesh.domain_names)):
        report_progress(done, total, f"checking {domain.name}")
        report.findings += _domain_findings(mesh, domain, report, dbt_ready)
    report_progress(total - 1, total, "grants, owners, classifications, secrets")
    requests = read_requests(mesh)
    report.findings += [p for r in requests for p in r.problems]
    for domain in loaded:
        report.findings += grant_findings(mesh, domain, requests)
    report.findings += codeowners_findings(mesh)
    report.findings += classification_findings(mesh, loaded)
    report.findings += expectation_findings(mesh, loaded)
    report.findings += pin_findings(mesh, loaded)
    cycle = find_cycle(mesh, [d.name for d in loaded])
    if cycle:
        report.findings.append(Finding("error", "structure/cycle", f"dependency cycle: {cycle_message(cycle)}",
                                       "read an earlier layer, put a SQL rule that reads a later table on that "
                                       "table, or split the product", domain=cycle[0][0]))
    reported = {f.file for f in report.findings}
    for path in project_yaml_files(mesh.root):  # dbt reads them all in a step; an alias bomb would stop it
        if path in reported:  # a domain's dbt check read it already
            continue
        try:
            read_yaml_text(path)
        except ContractError as exc:
            report.findings += contract_findings(exc, None)
    from mesh_assets.governance.secrets import mesh_files, scan_secrets  # detect-secrets: only when validating

    report.findings += scan_secrets(mesh_files(mesh.root, mesh.settings.domains_dir))
    if base:
        from mesh_assets.governance.changes import breaking_change_findings

        current = {p.path: p for d in loaded for p in d.products}
        report.findings += breaking_change_findings(mesh.root, mesh.settings.domains_dir, base, current,
                                                    mesh.settings.governance.sensitive_classifications)
    report.findings = list(dict.fromkeys(report.findings))  # one unreadable file is reached by several checks
    failed = {f.domain for f in report.errors}
    report.domains = {name: counts for name, counts in report.domains.items() if name not in failed}
    return report


def _dbt_manifest(mesh: Mesh, domains: list[Domain], report: Report) -> bool:
    """Whether the dbt manifest the assets of dbt-built tables load from is there, made now if it was missing
    (a fresh clone: ``dbt/target`` is not committed) with a note in ``report``. When dbt parse fails, its error is
    one finding of the dbt project (no domain), and ``False`` says to leave the dbt-built tables out."""
    if not any(t.dbt_model is not None for d in domains for t in d.tables):
        return True
    manifest = project_dir(mesh.root) / MANIFEST
    if manifest.is_file():
        return True
    shown = manifest.relative_to(mesh.root) if manifest.is_relative_to(mesh.root) else manifest
    started = time.monotonic()
    try:
        parse_project(mesh.root)
    except (MeshError, OSError) as exc:
        level = "error" if isinstance(exc, MeshError) else "warning"  # dbt failed, or could not start at all
        report.findings.append(Finding(level, "dbt/parse", f"there is no dbt manifest ({shown}) and dbt parse could "
                                       f"not make it: {exc}", "fix the dbt project as dbt says, then run `make "
                                       "dbt-manifest` (or `mesh dbt parse`)", project_dir(mesh.root)))
        report.notes.append("the tables built by dbt models were not checked: there is no dbt manifest")
        return False
    report.notes.append(f"made the dbt manifest {shown} with dbt parse ({time.monotonic() - started:.0f} s), as "
                        "`make dbt-manifest` does: a fresh clone has none")
    return True


def _domain_findings(mesh: Mesh, domain: Domain, report: Report, dbt_ready: bool) -> list[Finding]:
    findings: list[Finding] = []
    assets = checks = 0
    for product in domain.products:
        findings += policy_findings(product, mesh.settings.governance)
        for grant in product.grants:
            if grant.domain not in mesh.domain_names and grant.domain not in _registered_domains(mesh):
                findings.append(Finding("warning", "access/grant", f"grant '{grant.role}' names domain "
                                        f"'{grant.domain}', which is neither in the mesh nor in its contract "
                                        "registry", "fix or remove the grant", product.path, None, "roles",
                                        domain.name))
        for table in product.tables:
            if table.dbt_model is not None and not dbt_ready:
                continue  # no manifest to build its asset from: reported once, as the dbt project's finding
            try:
                asset = table_asset(mesh, domain, product, table)
            except MeshError as exc:
                findings += _error_finding(exc, domain.name)
                continue
            assets, checks = assets + 1, checks + len(list(asset.check_specs))
            findings += rule_query_findings(mesh, domain, table)
            notices = asset.specs_by_key[dg.AssetKey(list(table.key))].metadata.get("deprecated_inputs")
            for notice in notices.split("\n") if notices else []:
                findings.append(Finding("warning", "access/deprecated", f"{'/'.join(table.key)} reads {notice}",
                                        "move to the successor port before the end of support",
                                        table.transform or table.contract_path, None, None, domain.name))
    findings += dbt_findings(mesh, domain)
    report.domains[domain.name] = (assets, checks)
    return findings


def _registered_domains(mesh: Mesh) -> set[str]:
    """The domains that published contracts or expectations to the mesh's contract registry (none when it
    cannot be read: its entries' problems are reported by the expectation checks)."""
    try:
        return {*mesh.registry.contract_domains(), *(e.consumer for e in mesh.registry.expectations())}
    except MeshError:
        return set()


def rule_query_findings(mesh: Mesh, domain: Domain, table: Table) -> list[Finding]:
    """One error per SQL rule of ``table`` whose query does not plan (an unknown table or column, a type error)
    against empty relations of the contracts' columns: ``{object}`` the table, ``previous.<table>`` for silver
    and gold, and each table the rule reads, with the columns its domain reads masked as VARCHAR (the masked
    copy's type). The table's asset must have built (its rules' inputs exist and may be read)."""
    findings: list[Finding] = []
    doc = None
    for rule in table.rules:
        if rule.kind != "sql":
            continue
        relations = {(table.layer, table.name): table.output_columns}
        if table.layer != "bronze":
            relations[(PREVIOUS, table.name)] = table.output_columns
        for ref in rule_inputs(rule, table):
            read = domain.table(ref.schema, ref.table) if not ref.cross_domain else \
                mesh.output_port(ref.schema, ref.table)
            masked = authorize_input(mesh, domain, ref, str(table.contract_path)).masked
            relations[(ref.schema, ref.table)] = {c: "VARCHAR" if c in masked else t
                                                  for c, t in read.output_columns.items()}
        error = plan_query(rule_query(rule, f"{table.layer}.{table.name}"), relations)
        if error is None:
            continue
        doc = doc or load_yaml(table.contract_path)
        readable = ", ".join(f"{s}.{n}" for s, n in relations)
        findings.append(Finding(
            "error", "structure/quality_rule",
            f"quality rule '{rule.name}' of table {table.name}: its query cannot run on the tables it reads: {error}",
            f"the query may read {readable}, with their contracts' columns ({{object}} is "
            f"{table.layer}.{table.name}, {{property}} the rule's column)",
            table.contract_path, doc.line_of(list(rule.location)), format_location(list(rule.location)),
            domain.name))
    return findings
