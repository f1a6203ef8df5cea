"""The ``mesh`` command line: run the mesh, query its ports, validate its contracts.

Every command works on any mesh folder (``--root``, default: the mesh around the current directory).
Exit codes: 0 success, 1 a failed run, check or validation, 2 bad input (a malformed contract, bad SQL).
"""

from __future__ import annotations

import csv
import enum
import importlib.metadata
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import duckdb
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from mesh_assets.contract.mesh import Mesh, load_mesh
from mesh_assets.errors import MeshError
from mesh_assets.settings import find_mesh_root

app = typer.Typer(help="Data products as data contracts, built into a data mesh on Dagster.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
out = Console(width=None if sys.stdout.isatty() else 200)  # scripts and CI get whole lines
RootOption = Annotated[Path | None, typer.Option("--root", help="Mesh folder (holding mesh.yaml).")]


def _print_version(value: bool) -> None:
    if value:
        version = importlib.metadata.version
        out.print(f"mesh-assets {version('mesh-assets')} (dagster {version('dagster')}, duckdb {duckdb.__version__})",
                  markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the versions of mesh-assets, Dagster and DuckDB.")] = False
         ) -> None:
    """Data products as data contracts, built into a data mesh on Dagster."""


class Engine(str, enum.Enum):
    duckdb = "duckdb"
    spark = "spark"


class OutputFormat(str, enum.Enum):
    """``--format`` of every command that prints rows: ``text`` (a table, for people), ``json`` (for tools), or
    ``csv``."""

    text = "text"
    json = "json"
    csv = "csv"


FormatOption = Annotated[OutputFormat, typer.Option("--format", "-f", help="text for people, json or csv for tools.")]


def _mesh(root: Path | None) -> Mesh:
    return load_mesh(find_mesh_root(root))


@contextmanager
def _progress_bar(quiet: bool = False) -> Iterator[Callable[[int, int, str], None] | None]:
    """A progress bar on stderr, erased when done, for a command that can take more than a few seconds: yields
    ``progress(done, total, what)`` for the command's work (``total`` 0 while unknown). None, and no bar, when
    stdout is not a terminal (a script, a pipe, CI) or ``quiet`` (JSON output)."""
    if quiet or not sys.stdout.isatty():
        yield None
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        task = bar.add_task("starting", total=None)

        def progress(done: int, total: int, what: str) -> None:
            bar.update(task, completed=done, total=total or None, description=escape(what))

        yield progress


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True)
    return typer.Exit(code)


@app.command()
def run(
    root: RootOption = None,
    domain: Annotated[list[str] | None, typer.Option("--domain", "-d", help="Only these domains (repeat).")] = None,
    select: Annotated[str | None, typer.Option(
        "--select", "-s", help="Only the assets this Dagster asset selection picks, e.g. "
                               "'+key:\"shop/gold/order_totals\"' (with its upstream), 'tag:mesh/layer=gold', "
                               "'group:shop', 'owner:\"team:shop-team\"' (docs/operations.md).")] = None,
    engine: Annotated[Engine | None, typer.Option(
        "--engine", help="Run every table on this engine, whatever mesh.yaml, domains and contracts choose "
                         "(tables built by dbt models stay on dbt-duckdb).")] = None,
    results: Annotated[Path | None, typer.Option(
        "--results", help="Where to write the run's results as JSON (default: <mesh>/.mesh/run_results.json).")
    ] = None,
    partition: Annotated[str | None, typer.Option(
        "--partition", help="Only this partition of the partitioned tables (YYYY-MM, YYYY-MM-DD, YYYY-MM-DDTHH, a "
                            "static value such as EUROPE, or a time and static key such as '1992-01|EUROPE'), and "
                            "what reads them unpartitioned.")] = None,
    first: Annotated[str | None, typer.Option("--from", help="With --to: a range of partitions in one run.")] = None,
    last: Annotated[str | None, typer.Option("--to", help="The range's last partition (inclusive).")] = None,
    via: Annotated[str | None, typer.Option(
        "--via", envvar="MESH_WEBSERVER_URL",
        help="Launch the runs through the Dagster webserver at this URL (e.g. http://127.0.0.1:3000), one per "
             "domain in dependency order, each in its code location, so the UI can re-execute them; without it "
             "(and without MESH_WEBSERVER_URL) the mesh runs in this process.")] = None,
) -> None:
    """Materialize every asset of the mesh (or of --domain, or those --select picks) in dependency order, then
    print a summary and write the results as JSON (docs/operations.md, "Run results"). --partition, or --from
    and --to, materialize partitions of the partitioned tables (docs/partitions.md)."""
    from mesh_assets.engine.choice import ENGINE_ENV, ENGINE_EXTRAS
    from mesh_assets.extras import require_installed
    from mesh_assets.orchestration.runner import open_instance, run_mesh, summary_table

    if engine is not None:
        os.environ[ENGINE_ENV] = engine.value  # read when the definitions load, by mesh_assets.engine.choice
    try:
        if engine is not None and engine.value in ENGINE_EXTRAS:  # every table would fail on it: say so at once
            require_installed(ENGINE_EXTRAS[engine.value], f"mesh run --engine {engine.value}")
        if partition is not None and (first or last) or (first is None) != (last is None):
            raise MeshError("give --partition P, or both --from A and --to B")
        partitions = (partition, partition) if partition else (first, last) if first and last else None
        mesh = _mesh(root)
        instance = open_instance(mesh.root)
        if via is not None:
            if partitions is not None:
                raise MeshError("--via launches unpartitioned runs only; launch a backfill of the partitions from "
                                "the UI, or leave out --via (docs/partitions.md)")
            from mesh_assets.orchestration.launch import launch_mesh
            summary = launch_mesh(mesh, instance, via, domain or None, selection=select, console=err)
        else:
            summary = run_mesh(mesh, instance, domain or None, console=err, selection=select, partitions=partitions)
    except MeshError as exc:
        raise _fail(exc) from None
    summary.write_results(results or mesh.root / ".mesh" / "run_results.json")
    out.print(summary_table(summary))
    warned = sum(len(a.warnings) for a in summary.assets)
    if warned:
        err.print(f"[yellow]{warned} check(s) failed as warnings[/] (recorded, not blocking); their counts and "
                  "samples: mesh checks --failed", highlight=False)
    if not summary.success:
        failed = [a.key for a in summary.assets if a.status != "materialized"]
        err.print(f"[bold red]{len(failed)} asset(s) not materialized[/]; see the run in the UI (make ui) "
                  f"or: dagster run logs — run id {summary.run_id}")
        raise typer.Exit(1)


@app.command()
def instance(root: RootOption = None) -> None:
    """Write the Dagster instance configuration into DAGSTER_HOME (default <root>/.dagster) and open it: SQLite,
    or Postgres when MESH_POSTGRES_URL is set. Then run dagster dev, or dagster-daemon run and dagster-webserver,
    with the same DAGSTER_HOME."""
    from mesh_assets.orchestration.instance_config import describe_server, get_instance, postgres_url
    from mesh_assets.orchestration.runner import dagster_home

    try:
        home = dagster_home(find_mesh_root(root))
        url = postgres_url()
        with get_instance() as inst:
            queue = inst.get_concurrency_config().run_queue_config
            storages = [type(s).__name__ for s in (inst.run_storage, inst.event_log_storage, inst.schedule_storage)]
            monitoring = inst.run_monitoring_enabled
    except MeshError as exc:
        raise _fail(exc) from None
    storage = f"Postgres {describe_server(url)} (MESH_POSTGRES_URL)" if url else "SQLite in DAGSTER_HOME"
    out.print(f"Dagster instance {home} (DAGSTER_HOME): {storage}", highlight=False)
    out.print(f"  runs, event log, schedules: {', '.join(storages)}", highlight=False)
    limit = queue.max_concurrent_runs if queue else "none"
    out.print(f"  run queue: at most {limit} runs in progress; run monitoring: {'on' if monitoring else 'off'}",
              highlight=False)
    out.print("next, with this DAGSTER_HOME: dagster dev -w workspace.yaml (or dg dev --use-active-venv), or "
              "dagster-daemon run -w workspace.yaml and dagster-webserver -w workspace.yaml", highlight=False)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only query over <domain>.<table> output ports.")],
    root: RootOption = None,
    output: FormatOption = OutputFormat.text,
    as_domain: Annotated[str | None, typer.Option("--domain", "-d", help="Read as this domain: its own ports "
                                                  "and its grants (default: public ports, PII masked). A local "
                                                  "convenience, not an identity check: who may read which files "
                                                  "is enforced by the storage's permissions.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Read earlier snapshots: an Iceberg snapshot id "
                                              "(mesh ports --history) or an ISO 8601 time such as "
                                              "2026-01-02T03:04:05Z (each port's snapshot current then).")] = None,
) -> None:
    """Query the current snapshots of the output ports, e.g. select * from finance.pricing_summary_report.

    --domain is believed as given (anyone with the files can pass any domain); docs/governance.md says what is
    enforced where."""
    from mesh_assets.consumption.query import connect, read_only_query

    try:
        statement = read_only_query(query)
        con = connect(root, as_domain, sandbox=True, as_of=as_of)
        relation = con.sql(statement)
        if output is OutputFormat.json:
            rows = con.execute(f"SELECT to_json(q)::VARCHAR FROM ({statement}) q").fetchall()
            sys.stdout.write("[" + ",\n".join(r[0] for r in rows) + "]\n")
            return
        columns, rows = relation.columns, relation.fetchall()
    except duckdb.Error as exc:
        raise _fail(MeshError(str(exc).strip())) from None
    except MeshError as exc:
        raise _fail(exc) from None
    if output is OutputFormat.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        return
    table = RichTable(*columns, caption=f"{len(rows)} row(s)")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


class ReportFormat(str, enum.Enum):
    """``--format`` of the commands that print a report rather than rows (``validate``, ``checks``): ``text`` for
    people, ``json`` (one documented object) for tools."""

    text = "text"
    json = "json"


@app.command()
def validate(
    root: RootOption = None,
    output: Annotated[ReportFormat, typer.Option("--format", "-f", help="text for people, json for tools.")] =
    ReportFormat.text,
    base: Annotated[str | None, typer.Option("--base", help="Git ref to compare output-port contracts with: "
                                                            "breaking changes need a major version bump.")] = None,
) -> None:
    """Check every domain: contracts, assets, access, governance policies, secrets and, with --base, breaking
    changes. Exit code 1 on any error; warnings do not fail."""
    from mesh_assets.cli.validate import validate as run_validation

    logging.getLogger("mesh_assets").setLevel(logging.ERROR)  # deprecations are findings here, not log lines
    try:
        with _progress_bar(quiet=output is ReportFormat.json) as progress:
            report = run_validation(find_mesh_root(root).resolve(), base, progress)
    except MeshError as exc:
        raise _fail(exc, 1) from None
    mesh_root = find_mesh_root(root)
    if output is ReportFormat.json:
        print(json.dumps({"errors": len(report.errors), "warnings": len(report.warnings),
                          "domains": {n: {"assets": a, "checks": c} for n, (a, c) in report.domains.items()},
                          "findings": [f.to_dict(mesh_root) for f in report.findings], "notes": report.notes},
                         indent=2))
    else:
        for note in report.notes:
            err.print(f"note: {escape(note)}", highlight=False)
        for name, (assets, checks) in report.domains.items():
            err.print(f"[green]ok[/] {name}: {assets} assets, {checks} checks")
        for finding in report.findings:
            colour = "bold red" if finding.severity == "error" else "yellow"
            err.print(f"[{colour}]●[/] {escape(finding.describe(mesh_root))}", highlight=False, soft_wrap=True)
        err.print(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    if report.errors:
        raise typer.Exit(1)


access = typer.Typer(help="Access to restricted ports and PII: requests, decisions, grants.",
                     no_args_is_help=True)
app.add_typer(access, name="access")
ByOption = Annotated[str | None, typer.Option("--by", help="Who acts: an e-mail address or @handle of a team member "
                                                          "(default: git config user.email).")]


@access.command("request")
def access_request(
    port: Annotated[str, typer.Argument(help="The port, as <domain>.<table>.")],
    consumer: Annotated[str, typer.Option("--for", help="The domain that will read it.")],
    purpose: Annotated[str, typer.Option("--purpose", help="Why the domain needs it.")],
    pii: Annotated[bool, typer.Option("--pii", help="Ask for sensitive columns in clear.")] = False,
    by: ByOption = None,
    root: RootOption = None,
) -> None:
    """Ask the producer for read access: writes a request file in the producer's folder, for review."""
    from mesh_assets.governance.access_requests import request_access

    try:
        request = request_access(_mesh(root), port, consumer, purpose, pii, by)
    except MeshError as exc:
        raise _fail(exc) from None
    out.print(f"request {request.id} written to {request.path}; the owners of '{request.producer}' decide with "
              f"mesh access approve|deny {request.id} --reason \"…\"", highlight=False)


def _decide(request_id: str, approve: bool, reason: str, by: str | None, root: Path | None) -> None:
    from mesh_assets.governance.access_requests import decide_request

    try:
        request = decide_request(_mesh(root), request_id, approve, reason, by)
    except MeshError as exc:
        raise _fail(exc) from None
    grant = " and granted in the producer's contract" if approve else ""
    out.print(f"request {request.id} {request.status} by {request.decided_by}{grant}", highlight=False)


ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept with the decision).")]


@access.command("approve")
def access_approve(request_id: str, reason: ReasonOption, by: ByOption = None, root: RootOption = None) -> None:
    """Approve a pending request (an owner of the producing domain): the grant is written into its contract."""
    _decide(request_id, True, reason, by, root)


@access.command("deny")
def access_deny(request_id: str, reason: ReasonOption, by: ByOption = None, root: RootOption = None) -> None:
    """Deny a pending request, keeping who, when and why."""
    _decide(request_id, False, reason, by, root)


@access.command("revoke")
def access_revoke(
    port: Annotated[str, typer.Argument(help="The port, as <domain>.<table>.")],
    consumer: Annotated[str, typer.Option("--for", help="The domain losing access.")],
    reason: ReasonOption,
    by: ByOption = None,
    root: RootOption = None,
) -> None:
    """Remove a domain's grants to a port; its next run no longer reads it."""
    from mesh_assets.governance.access_requests import revoke_access

    try:
        roles = revoke_access(_mesh(root), port, consumer, reason, by)
    except MeshError as exc:
        raise _fail(exc) from None
    out.print(f"revoked {', '.join(roles)}", highlight=False)


@access.command("list")
def access_list(root: RootOption = None, output: FormatOption = OutputFormat.text) -> None:
    """Every request file, valid or not (its status as written, and its problem), and every grant no valid
    approved request stands behind, with who decided, when and why."""
    from mesh_assets.governance.access_requests import grant_findings, read_requests

    try:
        mesh = _mesh(root)
        files = read_requests(mesh)
        rows = []
        for checked in files:
            r = checked.request
            problem = "; ".join(f"{p.field}: {p.message}" for p in checked.problems)
            rows.append({"port": r.port if r else "", "consumer": r.consumer if r else "",
                         "pii": r.pii if r else None, "status": r.status if r else "",
                         "id": r.id if r and r.id else checked.path.stem, "purpose": r.purpose if r else "",
                         "who": (r.decided_by or r.requested_by) if r else "",
                         "when": (r.decided_at or r.requested_at) if r else "", "reason": r.reason if r else "",
                         "valid": checked.valid, "problem": problem,
                         "file": str(checked.path.relative_to(mesh.root))})
        for domain in mesh.domains():
            for finding in grant_findings(mesh, domain, files):
                if finding.rule == "access/grant":
                    rows.append({"port": domain.name, "consumer": "", "pii": None, "status": "granted", "id": "",
                                 "purpose": "", "who": "", "when": "", "reason": "", "valid": False,
                                 "problem": finding.message, "file": str(finding.file.relative_to(mesh.root))
                                 if finding.file else ""})
    except MeshError as exc:
        raise _fail(exc) from None
    _emit(rows, output, ["port", "consumer", "pii", "status", "id", "who", "when", "valid", "problem"])


@app.command()
def codeowners(
    root: RootOption = None,
    check: Annotated[bool, typer.Option("--check", help="Only check that CODEOWNERS is in sync (exit code 1 if "
                                                        "not); mesh validate checks it too.")] = False,
) -> None:
    """Write the mesh's block of the repository's CODEOWNERS: each domain folder (and its access/ folder) owned
    by its domain.yaml members, so the git host requires their review of every change."""
    from mesh_assets.governance.codeowners import BEGIN, codeowners_findings, codeowners_path, write_codeowners
    from mesh_assets.findings import Finding

    try:
        mesh = _mesh(root)
        if check:
            problems = [f for f in codeowners_findings(mesh) if f.severity == "error"]
            path = codeowners_path(mesh.root)
            if not path.is_file() or BEGIN not in path.read_text(encoding="utf-8"):
                problems.append(Finding("error", "access/codeowners", f"{path} has no mesh block",
                                        "run mesh codeowners and commit the file"))
            for finding in problems:
                err.print(f"[bold red]●[/] {escape(finding.describe(mesh.root))}", highlight=False, soft_wrap=True)
            if problems:
                raise typer.Exit(1)
            out.print("CODEOWNERS is in sync with the domains' members", highlight=False)
            return
        path = write_codeowners(mesh)
    except MeshError as exc:
        raise _fail(exc) from None
    out.print(f"wrote {path}; commit it and require code owners' review in the branch protection", highlight=False)


def _emit(rows: list[dict], output: OutputFormat, columns: list[str], caption: str | None = None) -> None:
    """Print ``rows`` as JSON, CSV or a table of ``columns`` (with ``caption`` under it)."""
    if output is OutputFormat.json:
        print(json.dumps(rows, indent=2, default=str))
        return
    if output is OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    table = RichTable(*columns, caption=caption)
    for r in rows:
        table.add_row(*("" if r[c] is None else str(r[c]) for c in columns))
    out.print(table)


@app.command()
def ports(root: RootOption = None, output: FormatOption = OutputFormat.text,
          history: Annotated[bool, typer.Option("--history", help="Every kept snapshot, not only the current "
                                                "one (rollback and --as-of candidates).")] = False) -> None:
    """List every table's port (and bronze rejects port) with its Iceberg table identifier: the current
    snapshot (Iceberg snapshot id, publication), rows, commit time."""
    from mesh_assets.engine.ingestion import table_ports
    from mesh_assets.engine.port_storage import PortStorage

    try:
        mesh = _mesh(root)
        storage = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
        rows = []
        for domain in mesh.domains():
            for t in domain.tables:
                for key in table_ports(t):
                    port = storage.port(key)
                    snapshots = port.history() if history else [port.current() or {}]
                    for info in snapshots or [{}]:
                        rows.append({"port": "/".join(key), "iceberg_table": port.identifier,
                                     "visibility": t.visibility, "snapshot_id": info.get("iceberg_snapshot_id"),
                                     "publication": info.get("snapshot"), "rows": info.get("rows"),
                                     "committed_at": info.get("published_at"),
                                     **({"current": info.get("current")} if history else {})})
    except MeshError as exc:
        raise _fail(exc) from None
    _emit(rows, output, ["port", "iceberg_table", "visibility", "snapshot_id", "publication", "rows", "committed_at",
                         *(["current"] if history else [])])


@app.command()
def status(root: RootOption = None, output: FormatOption = OutputFormat.text) -> None:
    """Every output port: freshness (its latest materialization and its port's snapshot, each judged against the
    SLA now), last update, rows and the last check results from the Dagster instance at DAGSTER_HOME (default
    <root>/.dagster), failed warnings and blocking checks apart, with their counts; a partitioned port's partitions
    (materialized, failed, missing; its freshness is its latest partition's), and those built against an older
    version of an unpartitioned input (docs/partitions.md). Exit code 1 when a port is stale, failed its freshness
    policy or a blocking check, has a failed partition or partitions to rebuild; failed warnings and partitions
    kept (onInputChange keep) are listed and exit 0."""
    from mesh_assets.catalog import find_instance
    from mesh_assets.consumption.status import COLUMNS, as_text, port_status

    try:
        mesh = _mesh(root)
        rows = port_status(mesh, find_instance(mesh.root))
    except MeshError as exc:
        raise _fail(exc) from None
    _emit(rows if output is OutputFormat.json else [as_text(r) for r in rows], output, COLUMNS)
    warned = [r["port"] for r in rows if r["warnings"]]
    if warned:
        err.print(f"[yellow]{len(warned)} port(s) with failed warnings (not blocking):[/] {', '.join(warned)}",
                  highlight=False)
    unhealthy = [r["port"] for r in rows if r["freshness"] == "FAIL" or r["sla_state"] not in ("fresh", "no SLA")
                 or r["blocking"] or (r["partitions"] or {}).get("failed")
                 or any(s["policy"] == "rebuild" for s in r["stale_partitions"])]
    if unhealthy:
        err.print(f"[bold red]{len(unhealthy)} port(s) need attention:[/] {', '.join(unhealthy)}", highlight=False)
        raise typer.Exit(1)


@app.command()
def checks(
    root: RootOption = None,
    port: Annotated[str | None, typer.Option("--port", "-p", help="Only this table: <domain>.<table> (an output "
                                             "port), <domain>/<layer>/<table>, or <domain>.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only the checks that failed (warnings and "
                                                          "blocking).")] = False,
    output: Annotated[ReportFormat, typer.Option("--format", "-f", help="text for people, json for tools "
                                                 "(shape: docs/operations.md).")] = ReportFormat.text,
) -> None:
    """Every asset check of each table's latest run, from the Dagster instance at DAGSTER_HOME (default
    <root>/.dagster): severity (ERROR blocks, WARN does not), passed, failing rows, distinct failing keys, pass
    rate and a sample of failing rows (sensitive columns masked). Exit code 1 only when a blocking check failed."""
    from mesh_assets.catalog import find_instance
    from mesh_assets.catalog.checks import describe_counts, latest_check_records, select_tables

    try:
        mesh = _mesh(root)
        tables = select_tables(mesh, port)
        instance = find_instance(mesh.root)
        records = latest_check_records(instance, tables)
    except MeshError as exc:
        raise _fail(exc) from None
    shown = [r for r in records if not r.passed] if failed else records
    blocking = [r for r in records if r.blocking_failure]
    warnings = [r for r in records if r.warning]
    if output is ReportFormat.json:
        print(json.dumps({"checks": [r.to_json() for r in shown]}, indent=2, default=str))
    else:
        table = RichTable("asset", "check", "severity", "result", "counts", "sample")
        for r in shown:
            result = "passed" if r.passed else ("[bold red]FAILED[/]" if r.blocking_failure else "[yellow]warning[/]")
            sample = json.dumps(r.sample[0], default=str) if r.sample else ""
            table.add_row(r.asset, r.check, r.severity, result, escape(describe_counts(r) or (r.error or "")),
                          escape(sample[:80] + ("…" if len(sample) > 80 else "")))
        out.print(table)
        if instance is None:
            err.print("no Dagster instance found (DAGSTER_HOME, default .dagster/): run mesh run first",
                      highlight=False)
        err.print(f"{len(records)} check(s): {sum(r.passed for r in records)} passed, {len(warnings)} warning(s), "
                  f"{len(blocking)} blocking failure(s)", highlight=False)
    if blocking:
        raise typer.Exit(1)


export = typer.Typer(help="Export the output ports for other tools.", no_args_is_help=True)
app.add_typer(export, name="export")


@export.command("duckdb")
def export_duckdb_file(
    path: Annotated[Path, typer.Argument(help="The DuckDB file to write (replaced if it exists).")],
    as_domain: Annotated[str | None, typer.Option("--domain", "-d", help="Export what this domain may read "
                                                  "(default: public ports, PII masked).")] = None,
    root: RootOption = None,
) -> None:
    """Write a DuckDB file with a <domain>.<table> view per readable port, for BI tools (docs/consuming.md)."""
    from mesh_assets.consumption.query import export_duckdb

    try:
        with _progress_bar() as progress:
            ports = export_duckdb(path, root, as_domain, progress)
    except MeshError as exc:
        raise _fail(exc) from None
    out.print(f"{path}: {len(ports)} port(s): {', '.join(ports)}", highlight=False)


dbt = typer.Typer(help="dbt models as data products (docs/dbt.md).", no_args_is_help=True)
app.add_typer(dbt, name="dbt")


@dbt.command("sync")
def dbt_sync(root: RootOption = None) -> None:
    """Write each dbt model's contract (columns, data_type, enforced) from its data contract."""
    from mesh_assets.governance.dbt_checks import sync_properties

    try:
        mesh = _mesh(root)
        changed = sync_properties(mesh)
    except MeshError as exc:
        raise _fail(exc) from None
    for path in changed:
        out.print(f"wrote {path.relative_to(mesh.root)}", highlight=False)
    out.print(f"{len(changed)} dbt properties file(s) changed", highlight=False)


@dbt.command("parse")
def dbt_parse(root: RootOption = None) -> None:
    """Run dbt parse: the manifest (dbt/target/manifest.json) each domain's code location loads."""
    from mesh_assets.contract.dbt_project import parse_project

    try:
        out.print(str(parse_project(find_mesh_root(root))), highlight=False)
    except MeshError as exc:
        raise _fail(exc) from None


new = typer.Typer(help="Self-serve: scaffold a domain, or a data product inferred from a file.",
                  no_args_is_help=True)
app.add_typer(new, name="new")


def _report_created(created) -> None:
    for file in created.files:
        out.print(f"created {file}", highlight=False)
    for note in created.notes:
        out.print(f"  {note}", highlight=False)


@new.command("domain")
def new_domain(
    name: Annotated[str, typer.Argument(help="The domain's name (snake_case, at most 63 characters).")],
    team: Annotated[str, typer.Option("--team", help="The owner team, e.g. customer-success.")],
    description: Annotated[str | None, typer.Option("--description", help="What the domain is about.")] = None,
    member: Annotated[list[str] | None, typer.Option("--member", help="A team member's e-mail address or @handle "
                                                     "(repeat; default: git config user.email).")] = None,
    repo: Annotated[Path | None, typer.Option(
        "--repo", help="Create the domain as a repository of its own in this new folder: a project on mesh-assets "
                       "with its code location, a starter product, tests and ci.sh.")] = None,
    registry: Annotated[str | None, typer.Option(
        "--registry", help="With --repo: the mesh's contract registry, a folder or an fsspec URL (default: "
                           ".mesh/registry).")] = None,
    root: RootOption = None,
) -> None:
    """Create a domain: a dg project, its code location in dg.toml and workspace.yaml, a test that it loads; or,
    with --repo, a standalone domain repository (docs/domain-repos.md)."""
    from mesh_assets.cli.scaffold import create_domain, create_domain_repo

    try:
        if repo is not None:
            created = create_domain_repo(repo, name, team, description, member, registry)
        elif registry is not None:
            raise MeshError("--registry goes with --repo: a domain of this mesh uses its mesh.yaml registry")
        else:
            created = create_domain(find_mesh_root(root), name, team, description, member)
    except MeshError as exc:
        raise _fail(exc) from None
    _report_created(created)


@new.command("product")
def new_product(
    domain: Annotated[str, typer.Argument(help="The domain that owns the product.")],
    name: Annotated[str, typer.Argument(help="The product's name (snake_case).")],
    source: Annotated[str, typer.Option("--from", help="A CSV, Parquet or JSON file, or a quoted glob.")],
    root: RootOption = None,
) -> None:
    """Create a data product from a file: land it, infer a draft contract (types, keys, rules) and its SQL."""
    from mesh_assets.cli.scaffold import create_product

    try:
        with _progress_bar() as progress:
            created = create_product(find_mesh_root(root), domain, name, source, progress=progress)
    except MeshError as exc:
        raise _fail(exc) from None
    _report_created(created)


@app.command()
def catalog(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the catalog into (index.html, …).")],
    root: RootOption = None,
) -> None:
    """Write a static catalog of every data product: open <out>/index.html from disk or publish the folder.
    Run state comes from the ports and the Dagster instance at DAGSTER_HOME (default <root>/.dagster), if any."""
    from mesh_assets.catalog import build_catalog, find_instance

    try:
        mesh = _mesh(root)
        instance = find_instance(mesh.root)
        with _progress_bar() as progress:
            result = build_catalog(mesh, out_dir, instance, progress=progress)
    except MeshError as exc:
        raise _fail(exc) from None
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if instance is None:
        err.print("no Dagster instance found (DAGSTER_HOME, default .dagster/): check results say "
                  "'no run recorded'", highlight=False)
    out.print(f"catalog of {len(result.pages)} data product(s) written: {result.index}", highlight=False)


@app.command()
def publish(
    domain: Annotated[str | None, typer.Argument(help="The domain to publish (default: every domain of the mesh).")]
    = None,
    root: RootOption = None,
    output: FormatOption = OutputFormat.text,
) -> None:
    """Register the domain's output-port contracts (at their version) and what it relies on in other domains'
    ports in the contract registry (mesh.yaml registry.path); refused when a version is registered with
    another contract, or when the contracts break a consumer's registered expectation (docs/domain-repos.md)."""
    from mesh_assets.cli.publish import publish as run_publish

    try:
        rows = [vars(p) for p in run_publish(find_mesh_root(root).resolve(), domain)]
    except MeshError as exc:
        raise _fail(exc, 1) from None
    _emit(rows, output, ["domain", "what", "name", "version", "outcome"],
          caption=f"published to {_mesh(root).settings.registry_url}")


@app.command()
def impact(
    target: Annotated[str, typer.Argument(help="<domain>.<table> or <domain>.<table>.<column>: an output port or "
                                               "one of its columns.")],
    root: RootOption = None,
    output: FormatOption = OutputFormat.text,
) -> None:
    """Every downstream data product, table and column of an output port (or one of its columns), across the
    mesh and the consumers registered in the contract registry, with the owner team of each."""
    from mesh_assets.governance.impact import impact as find_impact

    try:
        mesh = _mesh(root)
        rows = [i.to_dict() for i in find_impact(mesh, target, mesh.domains())]
    except MeshError as exc:
        raise _fail(exc) from None
    _emit(rows, output, ["depth", "domain", "product", "team", "table", "column", "via", "output_port"],
          caption=f"{len(rows)} downstream column(s) of {target}; column empty: read (filter, join) without a "
                  "column computed from it")


@app.command()
def metrics(
    root: RootOption = None,
    output: FormatOption = OutputFormat.text,
) -> None:
    """List every metric the mesh's gold tables declare, with its definition; values are in the port
    <domain>.<table>__metrics."""
    try:
        rows = [m.definition(f"{d.name}.{p.name}", t.name)
                for d in _mesh(root).domains() for p in d.products for t in p.tables for m in t.metrics]
    except MeshError as exc:
        raise _fail(exc) from None
    if output is OutputFormat.json:
        print(json.dumps(rows, indent=2))
        return
    columns = ["product", "table", "name", "description", "owner", "expression", "dimensions", "time", "grain",
               "unit"]
    _emit([{c: ", ".join(r[c]) if isinstance(r[c], list) else r[c] for c in columns} for r in rows], output, columns,
          caption=f"{len(rows)} metric(s)")


@app.command()
def migrate(root: RootOption = None) -> None:
    """Import every port of a storage root written before ports were Iceberg tables (snapshots/<id>/ plus
    _current.json): each port's current snapshot becomes the first snapshot of its Iceberg table, its files
    registered where they are (docs/operations.md)."""
    from mesh_assets.engine.ingestion import table_ports
    from mesh_assets.engine.port_storage import PortStorage

    try:
        mesh = _mesh(root)
        storage = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
        imported = []
        for domain in mesh.domains():
            for t in domain.tables:
                for key in table_ports(t):
                    port = storage.port(key)
                    snapshot = port.migrate()
                    if snapshot is not None:
                        imported.append(f"{'/'.join(key)} → {port.identifier} (snapshot {snapshot})")
    except MeshError as exc:
        raise _fail(exc) from None
    out.print("\n".join(imported) or "nothing to import: no port of the previous layout", highlight=False)


@app.command()
def rollback(
    port: Annotated[str, typer.Argument(help="The port, as <domain>/<layer>/<table>.")],
    to: Annotated[str | None, typer.Option("--to", help="Iceberg snapshot id or publication (mesh ports --history; "
                                           "default: the snapshot committed before the current one).")] = None,
    root: RootOption = None,
) -> None:
    """Make an earlier published snapshot of a port current again (readers see it at once)."""
    from mesh_assets.engine.port_storage import PortStorage

    try:
        mesh = _mesh(root)
        key = tuple(port.split("/"))
        if len(key) != 3:
            raise MeshError(f"'{port}' is not a port; write <domain>/<layer>/<table>, e.g. sales/gold/order_lines_wide")
        storage = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
        snapshot = storage.port(key).rollback(to)
    except MeshError as exc:
        raise _fail(exc) from None
    out.print(f"{port}: snapshot {snapshot} is current again", highlight=False)


if __name__ == "__main__":
    app()
