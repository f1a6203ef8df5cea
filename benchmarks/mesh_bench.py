"""``python -m benchmarks``: the mesh against the physical limit — plain DuckDB running the very same SQL.

For the reference mesh at TPC-H scale factor ``sf``, each repetition:

1. runs ``mesh run`` in a fresh Dagster instance and storage root, recording every DuckDB statement
   (``MESH_DUCKDB_QUERY_LOG``): ingestion, transforms, checks, profiles, publishing;
2. replays those statements with plain DuckDB in a new process (``benchmarks.raw_replay``): the same SQL with
   no Dagster and no framework;
3. runs the minimal pipeline (``benchmarks.minimal``) in a new process: the mesh's own bronze→silver→gold SQL
   once, into plain Parquet files, with no checks, profile, rejects, masking or Dagster.

All three are measured as whole process trees (wall and CPU seconds, peak RSS); the medians and the ratios
mesh/raw (what the framework costs over the SQL it runs) and mesh/minimal (what quality and governance cost
over the data work) are reported, with the median duration of one step's Iceberg commit (the
``commit_seconds`` of every materialization the mesh run recorded), and ``--json`` prints them as one JSON
object on the last line. TPC-H data is landed
once per scale factor under ``<root>/.mesh/bench/``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import dagster as dg

from rich.console import Console
from rich.table import Table as RichTable

from benchmarks.measure import Measurement, environment, measure, median
from benchmarks.minimal import plan
from domains.tpch import land_tpch
from mesh_assets.contract.mesh import load_mesh


def commit_seconds(dagster_home: Path) -> list[float]:
    """The ``commit_seconds`` (seconds, one Iceberg commit) of the latest materialization of every asset recorded
    in the Dagster instance at ``dagster_home``, read through Dagster's public instance API."""
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            events = [instance.get_latest_materialization_event(key) for key in instance.get_asset_keys()]
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = previous
    values = [event.asset_materialization.metadata.get("commit_seconds") for event in events
              if event is not None and event.asset_materialization is not None]
    return [float(v.value) for v in values if v is not None]


def run_pair(root: Path, work: Path, landing: Path, domains: list[str] | None = None
             ) -> tuple[Measurement, Measurement, int]:
    """One mesh run and its raw replay in ``work``; returns both measurements and the statement count."""
    log = work / "queries"
    env = environment(DAGSTER_HOME=str(work / "dagster_home"), MESH_STORAGE_ROOT=str(work / "lake"),
                      MESH_LANDING_ZONE=str(landing), MESH_DUCKDB_QUERY_LOG=str(log))
    selection = [arg for d in domains or [] for arg in ("--domain", d)]
    mesh = measure([sys.executable, "-m", "mesh_assets.cli.main", "run", "--root", str(root), *selection], env,
                   work / "mesh.log")
    raw = measure([sys.executable, "-m", "benchmarks.raw_replay", str(log)], env, work / "raw.log")
    statements = int((work / "raw.log").read_text().split()[0])
    return mesh, raw, statements


def run_minimal(root: Path, work: Path, landing: Path) -> Measurement:
    """The minimal pipeline of the mesh at ``root`` over ``landing``, planned here and run (measured) in a new
    process, its Parquet files under ``work/minimal``."""
    out = work / "minimal"
    script = work / "minimal.json"
    script.write_text(json.dumps(plan(load_mesh(root), str(landing), out)))
    return measure([sys.executable, "-m", "benchmarks.minimal", str(script)], environment(), work / "minimal.log")


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def bench_tpch(root: Path, sf: float, repeat: int, console: Console) -> dict[str, float | int]:
    """The medians of ``repeat`` mesh/raw/minimal runs at scale factor ``sf``, as the JSON fields of ``--json``
    (seconds, bytes, and the ratios mesh/raw and mesh/minimal)."""
    landing = root / ".mesh" / "bench" / f"landing-sf{sf}"
    if land_tpch(landing, sf):
        console.print(f"landed TPC-H SF {sf} in {landing}")
    pairs, commits = [], []
    for i in range(repeat):
        with tempfile.TemporaryDirectory(prefix="mesh-bench-", dir=root / ".mesh" / "bench") as tmp:
            mesh, raw, statements = run_pair(root, Path(tmp), landing)
            commits += commit_seconds(Path(tmp) / "dagster_home")
            minimal = run_minimal(root, Path(tmp), landing)
        console.print(f"run {i + 1}/{repeat}: mesh {mesh.wall_s:.1f} s, raw {raw.wall_s:.1f} s "
                      f"({statements} statements), minimal {minimal.wall_s:.1f} s")
        pairs.append((mesh, raw, minimal))
    mesh, raw, minimal = (median([p[i] for p in pairs]) for i in range(3))
    return {
        "sf": sf, "repeat": repeat, "statements": statements,
        "mesh_wall_s": round(mesh.wall_s, 2), "raw_wall_s": round(raw.wall_s, 2),
        "ratio_wall": round(mesh.wall_s / raw.wall_s, 3),
        "mesh_cpu_s": round(mesh.cpu_s, 2), "raw_cpu_s": round(raw.cpu_s, 2),
        "ratio_cpu": round(mesh.cpu_s / raw.cpu_s, 3),
        "mesh_peak_rss_bytes": mesh.peak_rss_bytes, "raw_peak_rss_bytes": raw.peak_rss_bytes,
        "ratio_rss": round(mesh.peak_rss_bytes / raw.peak_rss_bytes, 3),
        "minimal_wall_s": round(minimal.wall_s, 2), "minimal_cpu_s": round(minimal.cpu_s, 2),
        "minimal_peak_rss_bytes": minimal.peak_rss_bytes,
        "ratio_minimal_wall": _ratio(mesh.wall_s, minimal.wall_s),
        "ratio_minimal_cpu": _ratio(mesh.cpu_s, minimal.cpu_s),
        "ratio_minimal_rss": _ratio(mesh.peak_rss_bytes, minimal.peak_rss_bytes),
        "commits": len(commits),
        "commit_median_s": round(statistics.median(commits), 3) if commits else float("nan"),
    }


def report(result: dict[str, float | int], as_json: bool, console: Console) -> None:
    """Print ``result`` as a table, then (``as_json``) as one JSON object on the last line."""
    table = RichTable("measure", "value", title="mesh bench")
    for key, value in result.items():
        shown = f"{value / 2**30:.2f} GiB" if key.endswith("_bytes") else str(value)
        table.add_row(key, shown)
    console.print(table)
    if as_json:
        print(json.dumps(result))
