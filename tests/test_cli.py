"""The `mesh` command line on any mesh folder: run, sql in three formats, validate, ports; exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from conftest import isolate, land_orders, make_tiny_root, restored

MESH = str(Path(sys.executable).parent / "mesh")
pytestmark = pytest.mark.slow  # every test runs `mesh` sessions in child processes


def mesh(root: Path, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([MESH, *args, "--root", str(root)], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def ran_once(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny mesh after one `mesh run`, once for the module: its folder and its DAGSTER_HOME (read only)."""
    base = tmp_path_factory.mktemp("ran")
    root, home = make_tiny_root(base), base / "dagster_home"
    with pytest.MonkeyPatch.context() as mp:
        isolate(mp)
        result = mesh(root, "run", home=home)
    assert result.returncode == 0, result.stderr
    return root, home


@pytest.fixture
def ran(ran_once: tuple[Path, Path], tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """:func:`ran_once`'s mesh folder with its lake (restored after the test), and a copy of its DAGSTER_HOME."""
    with restored(ran_once[0]) as root:
        yield root, Path(shutil.copytree(ran_once[1], tmp_path / "dagster_home", symlinks=True))


@pytest.fixture
def land(ran: tuple[Path, Path]):
    """``land(csv_text)`` replaces the landed orders of :func:`ran`'s mesh."""
    return lambda csv_text: land_orders(ran[0], csv_text)


def test_run_prints_a_summary_and_records_in_dagster_home(ran) -> None:
    root, home = ran
    result = mesh(root, "run", home=home)
    assert result.returncode == 0
    lines = [ln for ln in result.stdout.splitlines() if "shop/" in ln]
    assert len(lines) == 6 and all("materialized" in ln for ln in lines)  # 4 tables, 2 rejects ports
    assert (home / "history" / "runs.db").is_file() or (home / "storage").is_dir()
    results = json.loads((root / ".mesh" / "run_results.json").read_text())  # like dbt's run_results.json
    assert results["success"] is True
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.get() as instance:
            assert instance.get_run_by_id(results["run_id"]) is not None  # the run the instance recorded
    assets = {r["asset"]: r for r in results["results"]}
    assert len(assets) == 6 and all(r["status"] == "materialized" and r["seconds"] > 0 for r in assets.values())
    assert assets["shop/gold/order_totals"]["rows"] == int(next(
        ln for ln in lines if "shop/gold/order_totals " in ln).split("│")[3].strip().replace(",", ""))
    rolled = mesh(root, "rollback", "shop/gold/order_totals", home=home)  # two runs: one snapshot to go back to
    assert rolled.returncode == 0 and "is current again" in rolled.stdout, rolled.stderr
    assert mesh(root, "rollback", "shop/gold/../x", home=home).returncode == 2


def test_run_exits_non_zero_when_a_blocking_check_fails(ran, land) -> None:
    root, home = ran
    land("order_id,customer,amount\n1,ann,-1.00\n")
    result = mesh(root, "run", home=home)
    assert result.returncode == 1
    assert "failed" in result.stdout and "amount_minimum" in result.stdout
    assert "Traceback" not in result.stderr


def test_sql_as_of_reads_the_snapshots_current_at_a_time_or_by_id(ran, land) -> None:
    root, home = ran
    query = "select customer, total from shop.order_totals order by customer"
    before = datetime.now(UTC).isoformat()
    first_id = json.loads(mesh(root, "ports", "--format", "json", home=home).stdout)
    first_id = next(p["snapshot_id"] for p in first_id if p["port"] == "shop/gold/order_totals")
    land("order_id,customer,amount\n1,ann,1.00\n")
    assert mesh(root, "run", home=home).returncode == 0
    now = json.loads(mesh(root, "sql", query, "--format", "json", home=home).stdout)
    assert now == [{"customer": "ann", "total": 1.0}]
    then = json.loads(mesh(root, "sql", query, "--format", "json", "--as-of", before, home=home).stdout)
    assert then == [{"customer": "ann", "total": 11.5}, {"customer": "bob", "total": 20.0}]
    by_id = mesh(root, "sql", query, "--format", "json", "--as-of", str(first_id), home=home)
    assert json.loads(by_id.stdout) == then  # the other ports have no such snapshot: left out, with a warning
    bad = mesh(root, "sql", query, "--as-of", "last tuesday", home=home)
    assert bad.returncode != 0 and "neither an Iceberg snapshot id" in bad.stderr and "Traceback" not in bad.stderr


def test_sql_formats(ran) -> None:
    root, home = ran
    query = "select customer, total from shop.order_totals order by customer"
    as_json = json.loads(mesh(root, "sql", query, "--format", "json", home=home).stdout)
    assert as_json == [{"customer": "ann", "total": 11.5}, {"customer": "bob", "total": 20.0}]
    as_csv = list(csv.reader(io.StringIO(mesh(root, "sql", query, "--format", "csv", home=home).stdout)))
    assert as_csv == [["customer", "total"], ["ann", "11.50"], ["bob", "20.00"]]
    table = mesh(root, "sql", query, home=home).stdout
    assert "ann" in table and "11.50" in table and "2 row(s)" in table


def test_sql_refuses_writes_other_files_and_unknown_ports(ran) -> None:
    root, home = ran
    refused = mesh(root, "sql", "copy (select 1) to 'x.csv'", home=home)
    assert refused.returncode == 2 and "one read-only query" in refused.stderr
    unknown = mesh(root, "sql", "select * from shop.nope", home=home)
    assert unknown.returncode == 2 and "nope" in unknown.stderr and "Traceback" not in unknown.stderr
    outside = mesh(root, "sql", "select * from read_csv('/etc/passwd')", home=home)
    assert outside.returncode == 2 and "read_csv() is not allowed" in outside.stderr
    private = mesh(root, "sql", f"select * from read_parquet('{root}/.mesh/lake/shop/silver/orders/*/*/*')", home=home)
    assert private.returncode == 2 and "read_parquet() is not allowed" in private.stderr


def test_validate_reports_a_broken_contract_without_traceback(tiny_root: Path, tmp_path: Path) -> None:
    assert mesh(tiny_root, "validate", home=tmp_path).returncode == 0
    sql = tiny_root / "domains" / "shop" / "sql" / "gold" / "order_totals.sql"
    sql.write_text("select customer, sum(amount) as total from silver.order group by customer")
    result = mesh(tiny_root, "validate", home=tmp_path)
    assert result.returncode == 1
    assert "reads silver.order, which no contract of domain 'shop' declares" in result.stderr
    assert "Traceback" not in result.stderr


def test_ports_lists_current_snapshots(ran) -> None:
    root, home = ran
    ports = json.loads(mesh(root, "ports", "--format", "json", home=home).stdout)
    assert {p["port"]: p["rows"] for p in ports} == {
        "shop/bronze/raw_customers": 5, "shop/bronze/raw_customers__rejects": 0, "shop/bronze/raw_orders": 3,
        "shop/bronze/raw_orders__rejects": 0, "shop/silver/orders": 3, "shop/gold/order_totals": 2}
    identifiers = {p["port"]: p["iceberg_table"] for p in ports}
    assert identifiers["shop/gold/order_totals"] == "shop.gold__order_totals"
    assert identifiers["shop/bronze/raw_orders__rejects"] == "shop.bronze__raw_orders__rejects"
    assert all(isinstance(p["snapshot_id"], int) and p["committed_at"] for p in ports)
    history = json.loads(mesh(root, "ports", "--history", "--format", "json", home=home).stdout)
    assert sum(p["current"] for p in history) == len(ports)
