"""``python -m benchmarks --incremental``: what a partitioned mesh costs to build whole and to keep up to date.

At TPC-H scale factor ``sf``, with the orders and lines landed by month (``domains.tpch``), each a process
measured whole (``benchmarks.measure``), in fresh Dagster instances and storage roots:

1. ``unpartitioned``: the mesh's unpartitioned twin (every contract without ``partitioning`` and
   ``partitioned``, its source paths reading every month: :func:`unpartitioned_twin`) built by a plain
   ``mesh run`` on every month but the last;
2. ``full``: the mesh itself, built by a plain ``mesh run`` on the same months: every landed month of the
   partitioned tables as one single-run range, then the unpartitioned tables;
3. ``new_month``: the last month landed, then ``mesh run --partition <it>``: that month's partitions from
   landing to the gold port, and the unpartitioned consumers (finance) once;
4. ``relanded``: a past month landed again, then ``mesh run --partition <it>``.

The ratios are ``new_month / full`` (issue target: at most 0.10), ``full / unpartitioned`` (at most 1.3) and
``relanded / full``; for each run, the run's own seconds and its five slowest steps (``*_slowest_steps``: what
a month costs beyond the process start; where a full build's time goes). Landing copies files by hard link, so it
costs nothing measurable.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from benchmarks.measure import Measurement, environment, measure
from domains.tpch import BY_MONTH, copy_months, land_tpch, months

MESH_FILES = ("mesh.yaml", "dagster.yaml", "domains", "dbt")  # the twin runs on the same instance settings


def unpartitioned_twin(root: Path, target: Path) -> Path:
    """A copy of the mesh at ``root`` in ``target`` whose contracts declare no partitioning: each table's
    ``partitioning`` custom property and each property's ``partitioned``/``partitionKeyPosition`` removed, and
    ``{month}``/``{date}`` in a source path read as ``*`` (every partition's files). Returns ``target``."""
    target.mkdir(parents=True)
    for name in MESH_FILES:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "logs"))
        elif source.is_file():
            shutil.copy(source, target / name)
    for path in (target / "domains").glob("*/products/*.yaml"):
        contract = yaml.safe_load(path.read_text(encoding="utf-8"))
        if _strip_partitioning(contract):
            path.write_text(yaml.safe_dump(contract, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return target


def _strip_partitioning(contract: dict[str, Any]) -> bool:
    changed = False
    for table in contract.get("schema") or []:
        custom = table.get("customProperties") or []
        kept = [c for c in custom if c.get("property") != "partitioning"]
        for entry in kept:
            value = entry.get("value")
            if entry.get("property") == "source" and isinstance(value, dict):
                value["path"] = str(value["path"]).replace("{month}", "*").replace("{date}", "*")
        changed |= len(kept) != len(custom)
        table["customProperties"] = kept
        for prop in table.get("properties") or []:
            changed |= prop.pop("partitioned", None) is not None
            changed |= prop.pop("partitionKeyPosition", None) is not None
    return changed


def _link_landing(full: Path, target: Path, keep: list[str]) -> None:
    """``target``: the landing zone ``full`` with only the months ``keep`` of the by-month tables, hard-linked."""
    shutil.copytree(full, target, copy_function=os.link, ignore=shutil.ignore_patterns(*BY_MONTH))
    for table in BY_MONTH:
        for key in keep:
            shutil.copytree(full / "tpch" / table / key, target / "tpch" / table / key, copy_function=os.link)


def _run(root: Path, work: Path, landing: Path, name: str, *args: str) -> Measurement:
    env = environment(DAGSTER_HOME=str(work / "dagster_home"), MESH_STORAGE_ROOT=str(work / "lake"),
                      MESH_LANDING_ZONE=str(landing))
    return measure([sys.executable, "-m", "mesh_assets.cli.main", "run", "--root", str(root),
                    "--results", str(work / f"{name}.json"), *args], env, work / f"{name}.log")


def _slowest_steps(results: Path, count: int = 5) -> str:
    """The ``count`` slowest steps of a run's results file (``mesh run --results``), e.g. ``"sales/gold/x 4.9 s,
    …"``, and the run's own seconds (the rest of the process's wall time is its start and the definitions' load)."""
    run = json.loads(results.read_text())
    steps = {r["asset"]: r["seconds"] for r in run["results"]  # a rejects asset repeats its bronze step's time
             if r.get("seconds") and not r["asset"].endswith("__rejects")}
    slowest = sorted(steps.items(), key=lambda item: -item[1])[:count]
    return f"run {run['seconds']:.1f} s; " + ", ".join(f"{asset} {seconds:.1f} s" for asset, seconds in slowest)


def bench_incremental(root: Path, sf: float, console: Console) -> dict[str, Any]:
    """The four measured runs (module docstring) at scale factor ``sf``, as the JSON fields of ``--json``:
    each run's wall and CPU seconds and peak RSS, the months built, and the ratios.

    Raises:
        RuntimeError: a run failed (the message ends with its log's last lines).
    """
    full_landing = root / ".mesh" / "bench" / f"landing-sf{sf}"
    if land_tpch(full_landing, sf):
        console.print(f"landed TPC-H SF {sf} in {full_landing}")
    landed = months(full_landing)
    new, past = landed[-1], landed[len(landed) // 2]
    results: dict[str, Any] = {"sf": sf, "months": len(landed) - 1, "new_month": new, "relanded_month": past}
    with tempfile.TemporaryDirectory(prefix="mesh-bench-incremental-", dir=root / ".mesh" / "bench") as tmp:
        work = Path(tmp)
        landing = work / "landing"
        _link_landing(full_landing, landing, landed[:-1])
        twin = unpartitioned_twin(root, work / "twin")
        (work / "unpartitioned").mkdir()
        runs = {"unpartitioned": _run(twin, work / "unpartitioned", landing, "unpartitioned")}
        console.print(f"unpartitioned full build: {runs['unpartitioned'].wall_s:.1f} s")
        (work / "partitioned").mkdir()
        runs["full"] = _run(root, work / "partitioned", landing, "full")
        console.print(f"partitioned full build ({len(landed) - 1} months, one range run): {runs['full'].wall_s:.1f} s")
        copy_months(full_landing, landing, [new])
        runs["new_month"] = _run(root, work / "partitioned", landing, "new_month", "--partition", new)
        console.print(f"one new month ({new}): {runs['new_month'].wall_s:.1f} s")
        copy_months(full_landing, landing, [past])
        runs["relanded"] = _run(root, work / "partitioned", landing, "relanded", "--partition", past)
        console.print(f"a past month landed again ({past}): {runs['relanded'].wall_s:.1f} s")
        results.update({f"{name}_slowest_steps": _slowest_steps(work / folder / f"{name}.json")
                        for name, folder in (("unpartitioned", "unpartitioned"), ("full", "partitioned"),
                                             ("new_month", "partitioned"), ("relanded", "partitioned"))})
    for name, run in runs.items():
        results.update({f"{name}_wall_s": round(run.wall_s, 2), f"{name}_cpu_s": round(run.cpu_s, 2),
                        f"{name}_peak_rss_bytes": run.peak_rss_bytes})
    results["ratio_new_month_to_full"] = round(runs["new_month"].wall_s / runs["full"].wall_s, 3)
    results["ratio_relanded_to_full"] = round(runs["relanded"].wall_s / runs["full"].wall_s, 3)
    results["ratio_full_to_unpartitioned"] = round(runs["full"].wall_s / runs["unpartitioned"].wall_s, 3)
    return results
