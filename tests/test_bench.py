"""The benchmark machinery: process-tree measurement, the statement log and its plain-DuckDB replay, and the
synthetic mesh. (The figures themselves come from `make bench`, not from tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from benchmarks.measure import environment, measure
from conftest import mesh_cli
from benchmarks.mesh_bench import commit_seconds
from benchmarks.minimal import plan, run
from benchmarks.raw_replay import replay
from benchmarks.synthetic import generate
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.orchestration.runner import run_mesh


def test_measure_sees_the_memory_of_a_child_process(tmp_path: Path) -> None:
    code = ("import subprocess, sys; subprocess.run([sys.executable, '-c', "
            "'b = bytearray(300 * 2**20); import time; time.sleep(0.6)'], check=True)")
    result = measure([sys.executable, "-c", code], environment(), tmp_path / "log")
    assert result.peak_rss_bytes > 300 * 2**20  # the grandchild's 300 MiB count
    assert result.wall_s >= 0.6 and result.cpu_s > 0


def test_measure_reports_a_failing_command(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="exited with 3"):
        measure([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], environment(), tmp_path / "log")


def test_recorded_statements_replay_to_the_same_ports(tiny_root: Path, tmp_path: Path, instance,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "queries"
    monkeypatch.setenv("MESH_DUCKDB_QUERY_LOG", str(log))
    mesh = load_mesh(tiny_root)
    assert run_mesh(mesh, instance).success
    ports = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
    (gold,) = ports.port(("shop", "gold", "order_totals")).current_snapshot().files
    before = duckdb.sql(f"SELECT * FROM '{gold}' ORDER BY ALL").fetchall()
    Path(gold).unlink()
    assert replay(log) > 20
    assert duckdb.sql(f"SELECT * FROM '{gold}' ORDER BY ALL").fetchall() == before


def test_minimal_pipeline_writes_what_the_mesh_publishes(tiny_root: Path, tmp_path: Path, instance) -> None:
    """The minimal pipeline runs the mesh's own SQL: every silver and gold table holds the rows the mesh
    published, and bronze the same accepted records (the lineage columns aside)."""
    mesh = load_mesh(tiny_root)
    assert run_mesh(mesh, instance).success
    out = tmp_path / "minimal"
    (tmp_path / "script.json").write_text(json.dumps(plan(mesh, mesh.settings.landing_path, out)))
    assert run(tmp_path / "script.json") > 4
    ports = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
    for table in [t for d in mesh.domains() for t in d.tables]:
        published = ports.port(table.key).current_snapshot().read_sql
        columns = ", ".join(f'"{c.name}"' for c in table.columns) if table.layer == "bronze" else "*"
        minimal = out / table.domain / table.layer / f"{table.name}.parquet"
        assert (duckdb.sql(f"SELECT {columns} FROM '{minimal}' ORDER BY ALL").fetchall()
                == duckdb.sql(f"SELECT {columns} FROM {published} ORDER BY ALL").fetchall()), table.key


def test_synthetic_mesh_validates_with_cross_domain_edges(tmp_path: Path) -> None:
    names = generate(tmp_path / "mesh", 3, 4)
    assert names == ["d000", "d001", "d002"]
    mesh = load_mesh(tmp_path / "mesh")
    assert sum(len(d.tables) for d in mesh.domains()) == 3 * 4 * 2
    result = mesh_cli(tmp_path / "mesh", "validate")
    assert result.returncode == 0, result.stderr
    sql = (tmp_path / "mesh" / "domains" / "d001" / "sql" / "gold" / "summary_p000.sql").read_text()
    assert "d000.summary_p000" in sql


@pytest.mark.slow
def test_mesh_bench_synthetic_prints_json(tmp_path: Path) -> None:
    (tmp_path / "mesh.yaml").write_text("name: bench\n")
    result = subprocess.run([sys.executable, "-m", "benchmarks", "--root", str(tmp_path),
                             "--synthetic-domains", "2", "--products-per-domain", "2", "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["products"] == 4 and figures["validate_s"] > 0
    # benchmarks measure, tests check behaviour: every run was measured (no ordering of timings, which a loaded
    # machine can invert)
    runs = ("run_1_domain_mesh_s", "run_1_domain_raw_s", "run_2_domains_mesh_s", "run_2_domains_raw_s")
    assert all(isinstance(figures[k], float | int) and figures[k] > 0 for k in runs), figures


def test_commit_seconds_reads_every_table_s_iceberg_commit(tiny_root: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    mesh = load_mesh(tiny_root)
    with dg.DagsterInstance.get() as instance:
        assert run_mesh(mesh, instance).success
    commits = commit_seconds(home)
    assert len(commits) >= sum(len(d.tables) for d in mesh.domains())  # every table, plus the rejects tables
    assert all(c > 0 for c in commits)


def test_the_unpartitioned_twin_of_the_reference_mesh_reads_every_month_unpartitioned(tmp_path: Path) -> None:
    from benchmarks.incremental import unpartitioned_twin
    from conftest import REPO

    twin = load_mesh(unpartitioned_twin(REPO, tmp_path / "twin"))
    tables = {t.key: t for d in twin.domains() for p in d.products for t in p.tables}
    assert not [k for k, t in tables.items() if t.partitioning is not None]
    assert tables[("sales", "bronze", "orders")].source.path == "tpch/orders/*/*.csv"
    original = load_mesh(REPO)
    assert original.domain("sales").table("gold", "order_lines_wide").partitioning is not None  # untouched
    assert [c.name for c in tables[("sales", "gold", "order_lines_wide")].columns] == [
        c.name for c in original.domain("sales").table("gold", "order_lines_wide").columns]
