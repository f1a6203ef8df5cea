"""Public Dagster APIs only, beyond imports (the import-linter contract, tests/test_layout.py): the framework and
the benchmarks call only the ``DagsterInstance`` methods Dagster marks ``@public``, and what they replaced still
works — check results read back from the steps' audit observations, freshness judged from the latest
materialization, and runs whose ``mesh run`` process is gone reported, not edited (docs/operations.md)."""

from __future__ import annotations

import ast
import inspect
import socket
import subprocess
import textwrap
import time
from functools import cache
from pathlib import Path

import dagster as dg
from rich.console import Console

from mesh_assets.catalog.checks import latest_check_records
from mesh_assets.contract.mesh import Mesh, load_mesh
from mesh_assets.orchestration.runner import HOST_TAG, PROCESS_TAG, abandoned_runs, run_mesh

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("mesh_assets", "benchmarks")
SILVER, GOLD = "shop/silver/orders", "shop/gold/order_totals"


@cache
def public_instance_methods() -> frozenset[str]:
    """The methods of ``DagsterInstance`` and of the Dagster classes it inherits from that are decorated
    ``@public``, read from Dagster's own source."""
    names = set()
    for cls in dg.DagsterInstance.__mro__:
        if not cls.__module__.startswith("dagster"):
            continue
        for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(cls)))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
                    (d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")) == "public"
                    for d in node.decorator_list):
                names.add(node.name)
    return frozenset(names)


def instance_calls(root: Path) -> list[tuple[str, int, str]]:
    """Every call ``<x>.<method>(…)`` in the Python files under ``root``/mesh_assets and ``root``/benchmarks
    whose object is named like a Dagster instance (``instance``, ``context.instance``, ``self.instance``,
    ``dg.DagsterInstance``: a name ending in ``instance``), as ``(file, line, method)``."""
    calls = []
    for package in SCANNED:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                owner = node.func.value
                name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if name.lower().endswith("instance"):
                    calls.append((str(path.relative_to(root)), node.lineno, node.func.attr))
    return calls


def test_the_public_list_is_read_from_dagster() -> None:
    public = public_instance_methods()
    assert {"get", "get_asset_records", "fetch_observations", "get_run_records"} <= public
    assert not {"get_records_for_run", "report_run_failed", "get_freshness_state_records",
                "get_latest_materialization_events", "all_logs"} & public


def test_the_scan_finds_calls_on_instances(tmp_path: Path) -> None:
    (tmp_path / "mesh_assets").mkdir()
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "mesh_assets" / "x.py").write_text(
        "def f(instance, context, self):\n"
        "    instance.get_records_for_run('r')\n"
        "    context.instance.report_run_failed(None)\n"
        "    self.instance.get_asset_records([])\n"
        "    isinstance(instance, object)\n")
    assert [m for _, _, m in instance_calls(tmp_path)] == ["get_records_for_run", "report_run_failed",
                                                          "get_asset_records"]


def test_only_public_instance_methods_are_called() -> None:
    public = public_instance_methods()
    calls = instance_calls(ROOT)
    assert calls, "the scan found no call on a Dagster instance: it no longer sees the code"
    private = [f"{path}:{line}: {method}" for path, line, method in calls if method not in public]
    assert not private, ("DagsterInstance methods that are not @public in Dagster "
                         f"{dg.__version__}: {', '.join(private)}")


def _by_check(instance: dg.DagsterInstance, mesh: Mesh, asset: str) -> dict[str, object]:
    tables = [t for t in mesh.domain("shop").tables if "/".join(t.key) == asset]
    return {r.check: r for r in latest_check_records(instance, tables)}


def test_check_results_are_read_from_the_audit_of_the_latest_evaluating_run(tiny_mesh: Mesh, tiny_root: Path,
                                                                           instance: dg.DagsterInstance,
                                                                           land) -> None:
    first = run_mesh(tiny_mesh, instance)
    assert first.success
    silver = _by_check(instance, tiny_mesh, SILVER)
    assert silver and all(r.passed and r.published and r.run_id == first.run_id for r in silver.values())

    land("order_id,customer,amount\n1,ann,10.00\n2,bob,-5.00\n3,cy,20.00\n4,dee,-7.25\n")
    blocked = run_mesh(tiny_mesh, instance)
    minimum = _by_check(instance, tiny_mesh, SILVER)["amount_minimum"]
    assert (minimum.run_id, minimum.published, minimum.passed) == (blocked.run_id, False, False)
    assert (minimum.failing_rows, minimum.rows_checked, minimum.pass_rate) == (2, 4, 0.5)
    assert sorted(r["order_id"] for r in minimum.sample) == [2, 4]
    gold = _by_check(instance, tiny_mesh, GOLD)  # skipped: its published run's checks, the skipping run named
    assert {(r.run_id, r.published, r.stale_run) for r in gold.values()} == {(first.run_id, True, blocked.run_id)}
    # the run summary has the same counts, reported by the step itself
    summary = {a.key: a for a in blocked.assets}[SILVER]
    assert summary.status == "failed" and summary.blocking == ["amount_minimum (2 rows)"]

    sql = tiny_root / "domains" / "shop" / "sql" / "silver" / "orders.sql"
    sql.write_text("select order_id, customer, no_such_column as amount from bronze.raw_orders")
    broken = run_mesh(load_mesh(tiny_root), instance)  # silver fails before its audit
    assert {a.key: a.status for a in broken.assets}[SILVER] == "failed"
    silver = _by_check(instance, tiny_mesh, SILVER)
    assert {(r.run_id, r.published, r.stale_run) for r in silver.values()} == {(first.run_id, True, broken.run_id)}


def test_a_run_whose_process_is_gone_is_reported_with_the_way_out(tiny_mesh: Mesh,
                                                                   instance: dg.DagsterInstance) -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()
    run = dg.DagsterRun(job_name="__ASSET_JOB", status=dg.DagsterRunStatus.STARTED,
                        tags={HOST_TAG: socket.gethostname(),
                              PROCESS_TAG: f"{gone.pid}:{time.time()}"})
    instance.add_run(run)  # what a `mesh run` killed with SIGKILL leaves behind
    assert [r.run_id for r in abandoned_runs(instance)] == [run.run_id]
    console = Console(record=True, width=400)
    assert run_mesh(tiny_mesh, instance, console=console).success
    said = console.export_text()
    assert run.run_id in said and "Terminate" in said and "max_runtime_seconds" in said
