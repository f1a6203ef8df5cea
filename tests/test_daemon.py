"""The mesh under the Dagster daemon, end to end, each test with its own ``DAGSTER_HOME`` and mesh folder:

- new TPC-H files dropped into the landing zone start ingestion from the landing-zone sensors, and the
  automation sensors re-materialize every domain in turn, up to the finance reports in their own code location;
- the freshness daemon judges a tiny SLA FAIL when time passes without a materialization and PASS after one,
  and the freshness alert reaches the owning team's webhook both times;
- a run `mesh run --via` launched is re-executed from the UI, and a backfill launched as the UI does builds a
  range of months of the partitioned tables in one run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest
import yaml

from domains.tpch import land_tpch, raw_files
from mesh_assets.cli.scaffold import domain_package, write_dg_project
from mesh_assets.engine.ports import Port
from mesh_assets.orchestration.definitions import build_domain_definitions
from mesh_assets.orchestration.runner import dagster_home
from mesh_assets.orchestration.sensors import LANDING_FILES_TAG, TRIGGER_TAG

from conftest import REPO, VALID_ORDERS, land_orders
from test_partitions import MONTHS, PARTITIONED, expected_totals, make_root, port_rows

pytestmark = pytest.mark.daemon  # an integration tier: `make test-fast` leaves it out

BIN = Path(sys.executable).parent
FINANCE = ["forecasting_revenue_change", "local_supplier_volume", "pricing_summary_report",
           "returned_item_reporting", "shipping_priority"]


def _workspace(root: Path, domains: list[str]) -> None:
    """``workspace.yaml`` loading each domain's dg project (``<domain>_domain.definitions``) from ``root`` (a copy
    of a mesh)."""
    entries = [{"python_module": {"module_name": f"{domain_package(d)}.definitions", "location_name": d,
                                  "working_directory": f"domains/{d}"}} for d in domains]
    (root / "workspace.yaml").write_text(yaml.safe_dump({"load_from": entries}))


def _settings(root: Path, **changes: Any) -> None:
    path = root / "mesh.yaml"
    data = yaml.safe_load(path.read_text()) or {}
    path.write_text(yaml.safe_dump({**data, **changes}))


def _mesh_run(root: Path) -> None:
    done = subprocess.run([str(BIN / "mesh"), "run", "--root", str(root)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def _wait(what: str, condition: Callable[[], Any], timeout: float, processes: list[subprocess.Popen]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        for process in processes:
            assert process.poll() is None, f"{process.args} exited with {process.returncode} while waiting for {what}"
        time.sleep(2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def _running(command: list[str], root: Path, log: Path,
             env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """``command`` started in ``root`` in its own process group, stopped (SIGTERM, then SIGKILL) at the end."""
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=root, stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _dagster_dev(root: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``dagster dev`` on ``root``'s ``workspace.yaml`` at a free port, once its webserver answers: its URL and
    process (output to ``log``)."""
    url = f"http://127.0.0.1:{_free_port()}"
    with _running([str(BIN / "dagster"), "dev", "-w", "workspace.yaml", "-p", url.rsplit(":", 1)[1]], root,
                  log) as dev:
        _wait("the webserver", lambda: _answers(f"{url}/server_info"), 240, [dev])
        yield url, dev


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    return tmp_path / "dagster"


def _latest(instance: dg.DagsterInstance, key: list[str]) -> dg.EventLogEntry | None:
    return instance.get_latest_materialization_event(dg.AssetKey(key))


def test_landed_files_flow_through_every_domain_to_the_finance_reports(tmp_path: Path, home: Path,
                                                                       tpch_landing: Path) -> None:
    root = tmp_path / "mesh"
    root.mkdir()
    for name in ("mesh.yaml", "dagster.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "domains", root / "domains", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "dbt", root / "dbt", ignore=shutil.ignore_patterns("logs"))  # two gold models
    domains = [e["python_module"]["location_name"]
               for e in yaml.safe_load((REPO / "workspace.yaml").read_text())["load_from"]]
    _workspace(root, domains)
    _settings(root, automation={"landing_interval_seconds": 5, "automation_interval_seconds": 5,
                                "landing_settle_seconds": 3})
    landing = root / ".mesh" / "landing"
    shutil.copytree(tpch_landing, landing)  # SF 0.01, landed once for the test session
    _mesh_run(root)  # the mesh as published before new data lands
    dagster_home(root)
    instance = dg.DagsterInstance.get()
    before = {name: _latest(instance, ["finance", "gold", name]).timestamp for name in FINANCE}

    with _dagster_dev(root, tmp_path / "dagster-dev.log") as (_, dev):
        _wait("the daemon", lambda: instance.get_daemon_heartbeats(), 240, [dev])
        landed = time.time()
        land_tpch(landing, 0.02)  # a new data set, twice the size
        lineitems = sum(sum(1 for _ in f.open()) - 1 for f in landing.glob(raw_files("lineitem")))

        wide = Port(str(root / ".mesh" / "lake"), ("sales", "gold", "order_lines_wide"))

        def finance_updated() -> bool:
            """Every month of sales' gold port rebuilt from the new data set, then every finance report after it
            (the landing sensor's range run builds the silver months; automation the gold ones, once customers and
            supply are published, then the reports)."""
            sales = _latest(instance, ["sales", "gold", "order_lines_wide"])
            if sales is None or sales.timestamp <= landed or (wide.current() or {}).get("rows") != lineitems:
                return False
            return all((e := _latest(instance, ["finance", "gold", n])) is not None and e.timestamp > sales.timestamp
                       for n in FINANCE)

        _wait("the sales months, then the finance reports, to be re-materialized", finance_updated, 900, [dev])

        runs = instance.get_runs(dg.RunsFilter(tags={TRIGGER_TAG: "landing_zone"}))
        by_location = {r.remote_job_origin.location_name: r for r in runs}
        assert set(by_location) == {"customers", "supply", "sales"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in by_location.values())
        assert "tpch/lineitem/" in by_location["sales"].tags[LANDING_FILES_TAG]  # a month's runs (partitioned)
        selected = {k.to_user_string() for k in by_location["sales"].asset_selection}
        assert "sales/silver/order_lines" in selected  # the same months, in the same run
        assert "sales/gold/order_lines_wide" not in selected  # reads customers and supply: after them, by automation
        assert "tpch/customer.csv" in by_location["customers"].tags[LANDING_FILES_TAG]

        report = _latest(instance, ["finance", "gold", "pricing_summary_report"])
        run = instance.get_run_by_id(report.run_id)
        assert run.remote_job_origin.location_name == "finance"
        assert run.tags.get("dagster/sensor_name") == "finance_automation"
        assert report.timestamp > before["pricing_summary_report"]

    port = Port(str(root / ".mesh" / "lake"), ("sales", "bronze", "lineitem"))
    assert port.current()["rows"] == lineitems  # the new data set, every row
    with duckdb.connect() as con:
        assert con.execute(f"SELECT count(*) FROM {port.current_snapshot().read_sql}").fetchall()[0][0] == lineitems


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def test_tiny_sla_fails_without_materialization_and_passes_after_one(tiny_root: Path, home: Path, webhook) -> None:
    contract = tiny_root / "domains" / "shop" / "products" / "orders.yaml"
    contract.write_text(contract.read_text().replace("value: 2\n    unit: h", "value: 1\n    unit: m"))
    write_dg_project(tiny_root / "domains" / "shop", "shop")
    _workspace(tiny_root, ["shop"])
    _settings(tiny_root, automation={"automation_interval_seconds": 3600, "landing_interval_seconds": 3600,
                                     "alert_interval_seconds": 2},
              alerts={"webhooks": {"shop-team": {"url": webhook.url}}})
    gold = dg.AssetKey(["shop", "gold", "order_totals"])
    _mesh_run(tiny_root)
    dagster_home(tiny_root)
    instance = dg.DagsterInstance.get()

    def state() -> str | None:
        record = instance.get_freshness_state_records([gold]).get(gold)
        return record.freshness_state.value if record else None

    def alerted(kind: str) -> bool:
        return any(b["kind"] == kind and b["details"]["asset"] == "shop/gold/order_totals" for b in webhook.bodies)

    with _running([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], tiny_root,
                  tiny_root / "daemon.log", {"FRESHNESS_DAEMON_INTERVAL_SECONDS": "2"}) as daemon:
        _wait("freshness FAIL", lambda: state() == "FAIL", 300, [daemon])
        _wait("the freshness alert", lambda: alerted("freshness"), 120, [daemon])
        body = next(b for b in webhook.bodies if b["kind"] == "freshness")
        assert body["team"] == "shop-team" and "missed its SLA" in body["text"]
        _mesh_run(tiny_root)
        _wait("freshness PASS", lambda: state() == "PASS", 120, [daemon])
        _wait("the recovery alert", lambda: alerted("freshness_recovered"), 120, [daemon])


def _graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """POST one GraphQL request to the webserver, as its UI does; the ``data`` of the answer."""
    request = urllib.request.Request(f"{url}/graphql", data=json.dumps({"query": query, "variables": variables})
                                     .encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer
    return answer["data"]


REEXECUTE = """mutation Reexecute($parentRunId: String!) {
  launchRunReexecution(reexecutionParams: {parentRunId: $parentRunId, strategy: ALL_STEPS}) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""


def test_a_failed_run_launched_by_mesh_run_is_re_executed_from_the_ui(tiny_root: Path, home: Path) -> None:
    """`mesh run --via` launches its runs in the domain's code location: after the bad input is fixed, the UI's
    "re-execute all steps" (its GraphQL mutation; the landed file is read again from bronze) runs the failed run
    again, and it succeeds."""
    write_dg_project(tiny_root / "domains" / "shop", "shop")
    _workspace(tiny_root, ["shop"])
    land_orders(tiny_root, "order_id,customer,amount\n1,ann,10.00\n2,bob,-5.00\n")  # a negative amount blocks silver
    dagster_home(tiny_root)
    instance = dg.DagsterInstance.get()
    with _dagster_dev(tiny_root, tiny_root / "dagster-dev.log") as (url, dev):
        failed = subprocess.run([str(BIN / "mesh"), "run", "--via", url, "--root", str(tiny_root)],
                                capture_output=True, text=True, timeout=600)
        assert failed.returncode == 1, failed.stdout + failed.stderr
        results = json.loads((tiny_root / ".mesh" / "run_results.json").read_text())
        status = {r["asset"]: r["status"] for r in results["results"]}
        assert status["shop/silver/orders"] == "failed" and status["shop/gold/order_totals"] == "skipped"
        parent = instance.get_run_by_id(results["run_id"])
        assert parent is not None and parent.status == dg.DagsterRunStatus.FAILURE
        assert parent.remote_job_origin is not None  # it belongs to the code location: the UI can re-execute it
        assert parent.remote_job_origin.location_name == "shop"

        land_orders(tiny_root, VALID_ORDERS)
        launched = _graphql(url, REEXECUTE, {"parentRunId": parent.run_id})["launchRunReexecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        child_id = launched["run"]["runId"]

        def finished() -> dg.DagsterRun | None:
            run = instance.get_run_by_id(child_id)
            return run if run is not None and run.is_finished else None

        child = _wait("the re-executed run", finished, 300, [dev])
        assert child.status == dg.DagsterRunStatus.SUCCESS and child.parent_run_id == parent.run_id
        gold = instance.get_latest_materialization_event(dg.AssetKey(["shop", "gold", "order_totals"]))
        assert gold is not None and gold.run_id == child_id


BACKFILL = """mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""


def test_a_backfill_launched_as_the_ui_does_builds_the_range_in_one_run(tpch_landing: Path, tmp_path: Path,
                                                                       home: Path) -> None:
    """The UI's "Materialize → backfill" over four months of the partitioned tables (its GraphQL mutation, run by
    the daemon's backfill loop): the single-run backfill policy makes it one run over the range, every month of
    every partitioned table is materialized, and the monthly revenue equals TPC-H's orders of those months."""
    root = make_root(tmp_path, tpch_landing)
    write_dg_project(root / "domains" / "shop", "shop")
    _workspace(root, ["shop"])
    _settings(root, automation={"automation_interval_seconds": 3600, "landing_interval_seconds": 3600,
                                "alert_interval_seconds": 3600})
    done = subprocess.run([str(BIN / "mesh"), "run", "--select", 'key:"shop/bronze/raw_customers"', "--root",
                           str(root)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    dagster_home(root)
    instance = dg.DagsterInstance.get()
    with _dagster_dev(root, root / "dagster-dev.log") as (url, dev):
        # the landing-zone sensor's first tick ingests the landed months: the backfill comes after its run
        _wait("the landing zone's run", lambda: [r for r in instance.get_run_records(
            dg.RunsFilter(tags={TRIGGER_TAG: "landing_zone"})) if r.dagster_run.is_finished], 300, [dev])
        selected = [*PARTITIONED, "shop/bronze/raw_orders__rejects"]  # the UI selects a multi-asset whole
        params = {"assetSelection": [{"path": key.split("/")} for key in selected], "partitionNames": list(MONTHS)}
        launched = _graphql(url, BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        tag = {"dagster/backfill": launched["backfillId"]}

        def finished() -> list[dg.RunRecord]:
            records = instance.get_run_records(dg.RunsFilter(tags=tag))
            return records if records and all(r.dagster_run.is_finished for r in records) else []

        [record] = _wait("the backfill's run", finished, 600, [dev])
        assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        assert (record.dagster_run.tags["dagster/asset_partition_range_start"],
                record.dagster_run.tags["dagster/asset_partition_range_end"]) == (MONTHS[0], MONTHS[-1])
    defs = build_domain_definitions(root / "domains" / "shop")
    for key in PARTITIONED:
        asset_key = dg.AssetKey(key.split("/"))
        months = next(a.partitions_def for a in defs.assets if asset_key in a.keys)  # type: ignore[union-attr]
        status = instance.get_status_by_partition(asset_key, list(MONTHS), months)
        assert set(status.values()) == {dg.AssetPartitionStatus.MATERIALIZED}, (key, status)
    revenue = port_rows(root, ("shop", "gold", "monthly_revenue"),
                        "SELECT segment, sum(revenue), sum(orders) FROM t GROUP BY 1 ORDER BY 1")
    assert revenue == expected_totals(tpch_landing, MONTHS)
