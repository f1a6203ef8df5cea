"""The ``mesh`` command line: run the mesh, query its ports, validate its contracts.

Every command works on any mesh folder (``--root``, default: the mesh around the current directory).
Exit codes: 0 success, 1 a failed run, check or validation, 2 bad input (a malformed contract, bad SQL).
"""

from __future__ import annotations

import csv
import enum
import json
import sys
from pathlib import Path
from typing import Annotated

import duckdb
import typer
from rich.console import Console
from rich.table import Table as RichTable

from mesh_assets.errors import MeshError
from mesh_assets.mesh import Mesh, load_mesh
from mesh_assets.settings import find_mesh_root

app = typer.Typer(help="Data products as data contracts, built into a data mesh on Dagster.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
err = Console(stderr=True)
out = Console(width=None if sys.stdout.isatty() else 200)  # scripts and CI get whole lines
RootOption = Annotated[Path | None, typer.Option("--root", help="Mesh folder (holding mesh.yaml).")]


class OutputFormat(str, enum.Enum):
    table = "table"
    csv = "csv"
    json = "json"


def _mesh(root: Path | None) -> Mesh:
    return load_mesh(find_mesh_root(root))


def _fail(exc: Exception, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
    return typer.Exit(code)


@app.command()
def run(
    root: RootOption = None,
    domain: Annotated[list[str] | None, typer.Option("--domain", "-d", help="Only these domains (repeat).")] = None,
) -> None:
    """Materialize every asset of the mesh (or of --domain) in dependency order, then print a summary."""
    from mesh_assets.runner import open_instance, run_mesh, summary_table

    try:
        mesh = _mesh(root)
        instance = open_instance(mesh.root)
        summary = run_mesh(mesh, instance, domain or None, console=err)
    except MeshError as exc:
        raise _fail(exc) from None
    out.print(summary_table(summary))
    if not summary.success:
        failed = [a.key for a in summary.assets if a.status != "materialized"]
        err.print(f"[bold red]{len(failed)} asset(s) not materialized[/]; see the run in the UI (make ui) "
                  f"or: dagster run logs — run id {summary.run_id}")
        raise typer.Exit(1)


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="One read-only query over <domain>.<table> output ports.")],
    root: RootOption = None,
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format.")] = OutputFormat.table,
) -> None:
    """Query the current snapshots of the output ports, e.g. select * from finance.pricing_summary_report."""
    from mesh_assets.query import connect, read_only_query

    try:
        statement = read_only_query(query)
        con = connect(root)
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


@app.command()
def validate(root: RootOption = None) -> None:
    """Load every domain's contracts and build its assets; report every problem (file, field, fix)."""
    from mesh_assets.assets import domain_assets

    try:
        mesh = _mesh(root)
    except MeshError as exc:
        raise _fail(exc, 1) from None
    problems = 0
    for name in mesh.domain_names:
        try:
            assets = domain_assets(mesh, mesh.domain(name))
            checks = sum(len(list(a.check_specs)) for a in assets)
            err.print(f"[green]ok[/] {name}: {len(assets)} assets, {checks} checks")
        except MeshError as exc:
            problems += 1
            err.print(f"[bold red]error[/] {name}: {exc}", highlight=False)
    if problems:
        raise typer.Exit(1)


@app.command()
def ports(root: RootOption = None, output: Annotated[OutputFormat, typer.Option("--format", "-f")] =
          OutputFormat.table) -> None:
    """List every table's port (and bronze rejects port): current snapshot, rows, publication time."""
    from mesh_assets.ingestion import rejects_key
    from resources import PortStorage

    try:
        mesh = _mesh(root)
        storage = PortStorage(root=mesh.settings.storage_url)
        rows = []
        for domain in mesh.domains():
            for t in domain.tables:
                keys = [t.key, rejects_key(t)] if t.layer == "bronze" else [t.key]
                for key in keys:
                    info = storage.port(key).current() or {}
                    rows.append({"port": "/".join(key), "visibility": t.visibility, "snapshot": info.get("snapshot"),
                                 "rows": info.get("rows"), "published_at": info.get("published_at")})
    except MeshError as exc:
        raise _fail(exc) from None
    if output is OutputFormat.json:
        print(json.dumps(rows, indent=2))
        return
    if output is OutputFormat.csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    table = RichTable("port", "visibility", "snapshot", "rows", "published at")
    for r in rows:
        table.add_row(r["port"], r["visibility"], r["snapshot"] or "—", f"{r['rows']:,}" if r["rows"] is not None else "",
                      r["published_at"] or "")
    out.print(table)


@app.command()
def bench(
    root: RootOption = None,
    sf: Annotated[float, typer.Option("--sf", help="TPC-H scale factor.")] = 1.0,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Runs; medians are reported.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on the last line.")] = False,
    synthetic_domains: Annotated[int, typer.Option("--synthetic-domains", min=0,
                                                   help="Generate a synthetic mesh of this many domains.")] = 0,
    products_per_domain: Annotated[int, typer.Option("--products-per-domain", min=1)] = 20,
) -> None:
    """Benchmark the reference mesh against plain DuckDB running the same SQL (or a synthetic mesh's load,
    validate and per-asset overhead with --synthetic-domains)."""
    from benchmarks.mesh_bench import bench_tpch, report
    from benchmarks.synthetic import bench_synthetic

    try:
        mesh_root = find_mesh_root(root)
        (mesh_root / ".mesh" / "bench").mkdir(parents=True, exist_ok=True)
        if synthetic_domains:
            result = bench_synthetic(mesh_root, synthetic_domains, products_per_domain, err)
        else:
            result = bench_tpch(mesh_root, int(sf) if sf == int(sf) else sf, repeat, err)
    except (MeshError, RuntimeError) as exc:
        raise _fail(exc, 1) from None
    report(result, as_json, out)


if __name__ == "__main__":
    app()
