"""``python -m benchmarks``: the reference mesh against plain DuckDB and the minimal pipeline (docs/performance.md).

The benchmarks stand beside the framework, never inside it: they import ``mesh_assets`` and the reference mesh's
TPC-H landing (``domains.tpch``), and the ``mesh`` command imports neither.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from benchmarks.incremental import bench_incremental
from benchmarks.mesh_bench import bench_tpch, report
from benchmarks.synthetic import bench_synthetic
from mesh_assets.errors import MeshError
from mesh_assets.settings import find_mesh_root

err = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
out = Console(width=None if sys.stdout.isatty() else 200)


def bench(
    root: Annotated[Path | None, typer.Option("--root", help="The mesh folder (default: around the current one).")
                    ] = None,
    sf: Annotated[float, typer.Option("--sf", help="TPC-H scale factor.")] = 1.0,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Runs; medians are reported.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on the last line.")] = False,
    synthetic_domains: Annotated[int, typer.Option("--synthetic-domains", min=0,
                                                   help="Generate a synthetic mesh of this many domains.")] = 0,
    products_per_domain: Annotated[int, typer.Option("--products-per-domain", min=1)] = 20,
    incremental: Annotated[bool, typer.Option(
        "--incremental", help="Partitioned builds: all months in one range run against the unpartitioned build, "
                              "then one new month and one month landed again (benchmarks.incremental).")] = False,
) -> None:
    """Benchmark the reference mesh against plain DuckDB running the same SQL and against the minimal pipeline
    (its own SQL only, no checks, profile, rejects, masking or Dagster), or a synthetic mesh's load,
    validate and per-asset overhead with --synthetic-domains, or with --incremental what a partitioned build
    costs (a full range run, a new month, a month landed again). Exit code 1 when a run fails."""
    try:
        mesh_root = find_mesh_root(root)
        (mesh_root / ".mesh" / "bench").mkdir(parents=True, exist_ok=True)
        if synthetic_domains:
            result = bench_synthetic(mesh_root, synthetic_domains, products_per_domain, err)
        elif incremental:
            result = bench_incremental(mesh_root, int(sf) if sf == int(sf) else sf, err)
        else:
            result = bench_tpch(mesh_root, int(sf) if sf == int(sf) else sf, repeat, err)
    except (MeshError, RuntimeError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
        raise typer.Exit(1) from None
    report(result, as_json, out)


if __name__ == "__main__":
    typer.run(bench)
