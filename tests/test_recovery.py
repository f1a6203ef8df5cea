"""A run killed with SIGKILL during ingestion, transform, checks or publish leaves every port on a published
snapshot, readable (the killed table's port on its previous one); the next run succeeds and deletes the
orphaned staging snapshots (docs/architecture.md, docs/operations.md)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.port_storage import PortStorage

from conftest import FIXTURES, land_orders

pytestmark = pytest.mark.slow  # six `mesh run` child processes, four of them killed at a stage

KILLER = FIXTURES / "kill_at_stage.py"
STAGES = [("ingestion", "bronze"), ("transform", "silver"), ("checks", "gold"), ("publish", "gold")]
NEW_ORDERS = "order_id,customer,amount\n1,ann,10.00\n2,bob,20.00\n3,cy,5.00\n4,dee,7.50\n"


def _mesh_run(root: Path, *prefix: str) -> subprocess.CompletedProcess:
    command = [sys.executable, *prefix] if prefix else [str(Path(sys.executable).parent / "mesh"), "run"]
    return subprocess.run([*command, *([] if prefix else ["--root"]), str(root)], capture_output=True, text=True,
                          timeout=600)


def _rows(port) -> int:
    with duckdb.connect() as con:
        return con.execute(f"SELECT count(*) FROM {port.current_snapshot().read_sql}").fetchall()[0][0]


@pytest.fixture
def killable(tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny mesh, run once, with new orders landed for the runs to come."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    first = _mesh_run(tiny_root)
    assert first.returncode == 0, first.stderr
    land_orders(tiny_root, NEW_ORDERS)
    return tiny_root


def test_sigkill_at_every_stage_keeps_ports_readable_and_the_next_run_recovers(killable: Path) -> None:
    mesh = load_mesh(killable)
    storage = PortStorage(root=mesh.settings.storage_url)
    ports = {t.key: storage.port(t.key) for t in mesh.domain("shop").tables}

    for stage, layer in STAGES:
        before = {key: port.current() for key, port in ports.items()}
        killed = _mesh_run(killable, str(KILLER), stage, layer)
        assert killed.returncode == -signal.SIGKILL, f"{stage}: {killed.stdout}\n{killed.stderr}"
        key = tuple(re.search(r"KILLED (\S+)", killed.stdout).group(1).split("/"))
        assert key[1] == layer
        assert ports[key].current() == before[key], f"{stage}: the killed port moved"
        for port in ports.values():  # every port (the killed one and those published before it) reads whole
            assert _rows(port) == port.current()["rows"]
        # killed before its Iceberg commit, the staging folder is an orphan: never committed, its writer gone
        assert len(ports[key].orphans()) == 1, stage

    instance = dg.DagsterInstance.get()
    # nothing could tell the instance: each killed run stays started (no public Dagster API may end it)
    killed_runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    assert len(killed_runs) == len(STAGES)
    recovery = _mesh_run(killable)
    assert recovery.returncode == 0, recovery.stderr
    for run in killed_runs:  # the next `mesh run` names each, with the way out
        assert run.run_id in recovery.stderr
    for key, port in ports.items():
        assert port.orphans() == [], key
        assert all(port.finished(s) for s in port.snapshot_ids()), key
    assert _rows(ports[("shop", "gold", "order_totals")]) == 4  # the new orders, all of them


def test_sigterm_stops_the_run_and_dagster_records_it_failed(killable: Path) -> None:
    """SIGTERM (like Ctrl-C) reaches the step running in `mesh run`'s main thread: Dagster fails it, no later step
    runs (not even its retry), and Dagster records the run failed; the ports stay where they were."""
    storage = PortStorage(root=load_mesh(killable).settings.storage_url)
    ports = {t.key: storage.port(t.key) for t in load_mesh(killable).domain("shop").tables}
    before = {key: port.current() for key, port in ports.items()}
    stopped = _mesh_run(killable, str(KILLER), "ingestion", "bronze", "TERM")
    assert stopped.returncode == 1, f"{stopped.stdout}\n{stopped.stderr}"
    assert "KILLED shop/bronze/" in stopped.stdout and "materialized" not in stopped.stdout
    runs = dg.DagsterInstance.get().get_runs()  # the stopped one, then the first
    assert [r.status for r in runs] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
    assert {key: port.current() for key, port in ports.items()} == before
