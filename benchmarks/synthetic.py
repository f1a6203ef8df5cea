"""The synthetic-scale benchmark: a generated mesh of ``domains × products`` data products on small data.

Measures (each in a new process, as Dagster and CI would see it):

- the framework's import time, and the definitions build time of every code location (each with a fresh
  mesh, so nothing is shared between locations);
- ``mesh validate`` over the whole mesh;
- the in-process materialization overhead per step: ``mesh run`` of one domain and of two domains, each against
  its plain-DuckDB replay; the growth from one to two domains, per added step, is the overhead per step.

Every product has a bronze table (CSV, 4 columns, primary key, bounds) and a gold table (SQL); every fourth
product of a domain also reads the same product's gold port of the previous domain (a cross-domain edge).
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from benchmarks.measure import environment, measure

_BRONZE = """apiVersion: v3.1.0
kind: DataContract
id: {domain}-{product}
name: {product}
version: 1.0.0
status: active
domain: {domain}
team: {{name: team-{domain}}}
description: {{purpose: Synthetic product {product} of {domain}.}}
slaProperties:
  - {{property: latency, value: 1, unit: d}}
schema:
  - name: events_{product}
    physicalType: table
    description: Events as landed.
    customProperties:
      - {{property: layer, value: bronze}}
      - {{property: source, value: {{path: {domain}/events.csv, format: csv}}}}
    properties:
      - {{name: event_id, logicalType: integer, physicalType: BIGINT, primaryKey: true, description: Event.}}
      - {{name: account, logicalType: string, physicalType: VARCHAR, required: true, description: Account.}}
      - {{name: amount, logicalType: number, physicalType: "DECIMAL(12,2)", description: Amount.,
          logicalTypeOptions: {{minimum: 0}}}}
      - {{name: happened_on, logicalType: date, physicalType: DATE, required: true, description: Day.}}
  - name: summary_{product}
    physicalType: table
    description: Totals per account.
    customProperties:
      - {{property: layer, value: gold}}
    properties:
      - {{name: account, logicalType: string, physicalType: VARCHAR, primaryKey: true, description: Account.}}
      - {{name: events, logicalType: integer, physicalType: BIGINT, required: true, description: Events.,
          logicalTypeOptions: {{minimum: 1}}}}
      - {{name: total, logicalType: number, physicalType: "DECIMAL(38,2)", required: true, description: Total.}}
    quality:
      - {{id: has_rows, metric: rowCount, mustBeGreaterThan: 0}}
"""


def generate(root: Path, domains: int, products: int, rows: int = 50) -> list[str]:
    """Write the synthetic mesh into ``root`` (empty folder); return the domain names."""
    names = [f"d{i:03d}" for i in range(domains)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "mesh.yaml").write_text("name: synthetic\nstorage_root: .mesh/lake\nlanding_zone: .mesh/landing\n")
    for i, domain in enumerate(names):
        folder = root / "domains" / domain
        (folder / "products").mkdir(parents=True)
        (folder / "sql" / "gold").mkdir(parents=True)
        (folder / "domain.yaml").write_text(f"name: {domain}\nteam: team-{domain}\n"
                                            f"members: [owner-{domain}@example.com]\n"
                                            f"description: Synthetic domain {domain}.\n"
                                            "ingestion_schedule: '0 1 * * *'\n")
        for j in range(products):
            product = f"p{j:03d}"
            (folder / "products" / f"{product}.yaml").write_text(_BRONZE.format(domain=domain, product=product))
            sql = (f"select account, count(*) as events, sum(amount)::DECIMAL(38,2) as total "
                   f"from bronze.events_{product}")
            if i and j % 4 == 0:
                sql += f" where account in (select account from {names[i - 1]}.summary_{product})"
            (folder / "sql" / "gold" / f"summary_{product}.sql").write_text(sql + " group by account\n")
        landing = root / ".mesh" / "landing" / domain
        landing.mkdir(parents=True)
        lines = [f"{k},acct{k % 7},{k}.50,2024-01-{1 + k % 28:02d}" for k in range(1, rows + 1)]
        (landing / "events.csv").write_text("event_id,account,amount,happened_on\n" + "\n".join(lines) + "\n")
    return names


def load_times(root: Path) -> dict[str, object]:
    """In this process: the framework's import seconds, then each code location's build seconds."""
    started = time.perf_counter()
    from mesh_assets.orchestration.definitions import build_domain_definitions  # noqa: PLC0415 - the import is measured

    imported = time.perf_counter() - started
    seconds = {}
    for folder in sorted((root / "domains").iterdir()):
        started = time.perf_counter()
        build_domain_definitions(folder)
        seconds[folder.name] = time.perf_counter() - started
    return {"import_s": imported, "build_s": seconds}


def bench_synthetic(mesh_root: Path, domains: int, products: int, console: Console) -> dict[str, float | int]:
    """Generate the mesh under ``<mesh_root>/.mesh/bench`` with ``mesh_root``'s Dagster instance settings
    (``dagster.yaml``) and measure it; the JSON fields of ``--json``."""
    from benchmarks.mesh_bench import run_pair  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="mesh-synthetic-", dir=mesh_root / ".mesh" / "bench") as tmp:
        root = Path(tmp) / "mesh"
        names = generate(root, domains, products)
        if (mesh_root / "dagster.yaml").is_file():
            shutil.copyfile(mesh_root / "dagster.yaml", root / "dagster.yaml")
        console.print(f"generated {domains} domains × {products} products in {root}")
        loaded = json.loads(subprocess.run(
            [sys.executable, "-m", "benchmarks.synthetic", "load", str(root)], check=True, capture_output=True,
            text=True).stdout.splitlines()[-1])
        build = list(loaded["build_s"].values())
        console.print(f"import {loaded['import_s']:.2f} s; build per location: median {statistics.median(build):.3f} s,"
                      f" max {max(build):.3f} s")
        validate = measure([sys.executable, "-m", "mesh_assets.cli.main", "validate", "--root", str(root)],
                           environment(), Path(tmp) / "validate.log")
        console.print(f"mesh validate: {validate.wall_s:.2f} s")
        steps = {}
        for count in (1, 2):
            work_dir = Path(tmp) / f"run{count}"
            work_dir.mkdir()
            mesh, raw, _ = run_pair(root, work_dir, root / ".mesh" / "landing", names[:count])
            steps[count] = (mesh.wall_s, raw.wall_s)
            console.print(f"mesh run of {count} domain(s): {mesh.wall_s:.1f} s, raw {raw.wall_s:.1f} s")
    per_domain_steps = 2 * products  # a bronze step (with its rejects asset) and a gold step per product
    overhead = ((steps[2][0] - steps[2][1]) - (steps[1][0] - steps[1][1])) / per_domain_steps
    return {
        "domains": domains, "products": domains * products,
        "import_s": round(loaded["import_s"], 3),
        "location_build_median_s": round(statistics.median(build), 3),
        "location_build_max_s": round(max(build), 3),
        "location_load_max_s": round(loaded["import_s"] + max(build), 3),
        "all_locations_build_s": round(sum(build), 2),
        "validate_s": round(validate.wall_s, 2),
        "run_1_domain_mesh_s": round(steps[1][0], 2), "run_1_domain_raw_s": round(steps[1][1], 2),
        "run_2_domains_mesh_s": round(steps[2][0], 2), "run_2_domains_raw_s": round(steps[2][1], 2),
        "overhead_per_step_s": round(overhead, 3),
    }


if __name__ == "__main__" and sys.argv[1:2] == ["load"]:
    print(json.dumps(load_times(Path(sys.argv[2]))))
