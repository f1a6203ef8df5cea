"""The Spark engine on a real cluster (docs/scaling.md): a standalone Spark master and one worker on loopback,
started from the installed pyspark distribution, and ``mesh run`` with
``MESH_SPARK_MASTER=spark://127.0.0.1:<port>``. The executors are JVMs of their own, started by the worker: they
read the landing zone and the input ports and write the new data files, so finance reports equal to the DuckDB
run's prove the path works off the driver.

The reference mesh runs mixed: ``finance`` on the cluster, its five reports joining the other domains' ports
DuckDB published (a copy of the DuckDB run's lake), with shuffles on the executor; the whole mesh on one
executor core takes several times longer and adds no path. The tiny mesh runs wholly on the cluster: bronze
CSV ingestion with rejects, silver SQL, and a Python transform whose ``pandas_udf`` needs pandas on the
executors.

Each ``mesh run`` is a child process, so its SparkContext is its own (a ``local[*]`` context left in this
process by another test module would otherwise be reused). The master's, the worker's and each executor's logs
are kept under the test's temporary folder and shown when something fails.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pyspark
import pytest

from conftest import REPO, ReferenceRun, make_tiny_root, restored
from mesh_assets import connect

pytestmark = [pytest.mark.spark, pytest.mark.slow]

MESH = str(Path(sys.executable).parent / "mesh")
SPARK_HOME = Path(pyspark.__file__).parent
FINANCE = ("forecasting_revenue_change", "local_supplier_volume", "pricing_summary_report",
           "returned_item_reporting", "shipping_priority")
START_TIMEOUT = 120  # seconds for the master to lead and the worker to register, on a busy machine
RUN_TIMEOUT = 1800  # seconds for the whole mesh on the cluster


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Cluster:
    """A running standalone cluster: its master URL, the master's web UI (JSON at ``/json/``) and its logs."""

    master: str
    web_ui: str
    logs: Path

    def state(self) -> dict:
        """The master's view of the cluster: ``aliveworkers``, ``activeapps``, ``completedapps``…"""
        with urllib.request.urlopen(f"{self.web_ui}/json/", timeout=10) as response:
            return json.load(response)

    def tails(self, lines: int = 40) -> str:
        """The last ``lines`` lines of every log of the cluster (daemons and executors), for a failure message."""
        parts = []
        for log in sorted(p for p in self.logs.rglob("*") if p.is_file() and p.name.endswith(("log", "stderr"))):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.relative_to(self.logs)}\n" + "\n".join(text))
        return "\n".join(parts)


def _daemon(cls: str, args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    """``spark-class <cls> <args>`` in a process group of its own (so the executors it starts stop with it)."""
    handle = log.open("wb")
    try:
        return subprocess.Popen([str(SPARK_HOME / "bin" / "spark-class"), cls, *args], stdout=handle,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    finally:
        handle.close()


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the daemon's process group (the worker stops its executors), SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=20)


def _wait(ready, processes: list[subprocess.Popen], cluster: Cluster, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            pytest.fail(f"the Spark {what} exited while starting:\n{cluster.tails()}")
        with contextlib.suppress(OSError, ValueError):
            if ready():
                return
        time.sleep(1)
    pytest.fail(f"the Spark {what} was not ready after {START_TIMEOUT} s:\n{cluster.tails()}")


@contextlib.contextmanager
def standalone_cluster(logs: Path) -> Iterator[Cluster]:
    """A master and one worker (1 core, 1 GiB for executors) bound to 127.0.0.1, on free ports; both stopped,
    with their executors, when the block ends, whatever happened in it."""
    port, ui = _free_port(), _free_port()
    cluster = Cluster(f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}", logs)
    java = Path(shutil.which("java") or "/usr/bin/java").parent
    env = {**os.environ, "PATH": f"{java}:/usr/bin:/bin", "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
           "SPARK_DAEMON_MEMORY": "256m", "SPARK_WORKER_DIR": str(logs / "work")}
    processes: list[subprocess.Popen] = []
    try:
        processes.append(_daemon("org.apache.spark.deploy.master.Master",
                                 ["--host", "127.0.0.1", "--port", str(port), "--webui-port", str(ui)],
                                 logs / "master.log", env))
        _wait(lambda: cluster.state()["status"] == "ALIVE", processes, cluster, "master")
        processes.append(_daemon("org.apache.spark.deploy.worker.Worker",
                                 [cluster.master, "--host", "127.0.0.1", "--cores", "1", "--memory", "1g",
                                  "--webui-port", str(_free_port())], logs / "worker.log", env))
        _wait(lambda: cluster.state()["aliveworkers"] >= 1, processes, cluster, "worker")
        yield cluster
    finally:
        for process in reversed(processes):
            _stop(process)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A standalone cluster for the module. Its worker's ``PATH`` holds only the system's folders, so its
    ``python3`` is the system's, without pandas or pyarrow: an executor has the mesh's Python only if the
    engine sends it (mesh_assets.engine.spark_engine.executor_python)."""
    logs = tmp_path_factory.mktemp("spark_cluster_logs")
    with standalone_cluster(logs) as running:
        yield running


def mesh_run(cluster: Cluster, root: Path, env: dict[str, str], home: Path, *args: str
             ) -> subprocess.CompletedProcess:
    """``mesh run --root root *args`` in a child process, its driver on ``cluster``; its output kept in the
    logs."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **env, "DAGSTER_HOME": str(home), "MESH_SPARK_MASTER": cluster.master,
           "PYTHONPATH": str(REPO), "COLUMNS": "200",
           # the driver is this process's machine: advertise loopback, not the host name's address; a small
           # driver and one executor of the worker's whole 1 GiB; one task per core needs few shuffle partitions
           "MESH_SPARK_CONF": json.dumps({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
                                          "spark.driver.memory": "1g", "spark.executor.memory": "1g",
                                          "spark.sql.shuffle.partitions": "2"})}
    env.pop("PYSPARK_PYTHON", None)
    done = subprocess.run([MESH, "run", "--root", str(root), *args], env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)
    (cluster.logs / f"mesh_run_{home.parent.name}.log").write_text(done.stdout + done.stderr)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{cluster.tails()}"
    return done


@pytest.fixture(scope="module")
def mixed_run(cluster: Cluster, reference_run: ReferenceRun, tmp_path_factory: pytest.TempPathFactory):
    """``mesh run --domain finance --engine spark`` on the cluster, over the DuckDB run's lake (put back as it
    was afterwards: its ports are Iceberg tables, which cannot be copied elsewhere): the five reports on Spark
    from the ports DuckDB published. The output of ``mesh run``, each report as DuckDB and then the cluster
    published it, and the applications the master saw during the run."""
    base = tmp_path_factory.mktemp("mixed_on_cluster")
    on_duckdb = {report: _report(reference_run.lake, report, reference_run.env()) for report in FINANCE}
    with restored(reference_run.lake) as lake:
        before = _applications(cluster)
        started = time.monotonic()
        done = mesh_run(cluster, REPO, reference_run.env(lake), base / "dagster", "--domain", "finance",
                        "--engine", "spark")
        print(f"\nfinance on the standalone cluster: mesh run {time.monotonic() - started:.0f} s")
        on_cluster = {report: _report(lake, report, reference_run.env()) for report in FINANCE}
    return done.stdout, on_duckdb, on_cluster, [app for app in _applications(cluster) if app["id"] not in before]


def _applications(cluster: Cluster) -> list[dict]:
    state = cluster.state()
    return state["activeapps"] + state["completedapps"]


def _report(lake: Path, report: str, env: dict[str, str]) -> list[tuple]:
    with pytest.MonkeyPatch.context() as mp:
        for name, value in env.items():
            mp.setenv(name, value)
        mp.setenv("MESH_STORAGE_ROOT", str(lake))
        rows = connect(REPO).sql(f"SELECT * FROM finance.{report}").fetchall()
    return sorted(rows, key=lambda row: tuple(str(v) for v in row))


def _same(a: list[tuple], b: list[tuple]) -> bool:
    return len(a) == len(b) and all(
        math.isclose(float(u), float(v), rel_tol=1e-9) if isinstance(u, float) or isinstance(v, float) else u == v
        for x, y in zip(a, b) for u, v in zip(x, y, strict=True))


def _rows(summary: str) -> dict[str, int]:
    """Each asset's rows in the summary table ``mesh run`` prints."""
    rows = {}
    for line in summary.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) > 2 and cells[1] == "materialized":
            rows[cells[0]] = int(cells[2].replace(",", ""))
    return rows


def test_the_cluster_s_executor_ran_the_spark_steps(cluster: Cluster, mixed_run) -> None:
    apps = mixed_run[3]
    assert len(apps) == 1, apps  # one driver for the run: the `mesh run` process
    executors = list((cluster.logs / "work" / apps[0]["id"]).glob("*/stderr"))
    assert executors, cluster.tails()
    # the executor, a JVM of its own, ran the tasks: reading the input ports, writing the reports' data files
    assert any("Finished task" in log.read_text(errors="replace") for log in executors), cluster.tails()


@pytest.mark.parametrize("report", FINANCE)
def test_finance_report_on_the_cluster_equals_the_duckdb_run(mixed_run, report: str) -> None:
    _, on_duckdb, on_cluster, _ = mixed_run
    assert on_duckdb[report]
    assert _same(on_cluster[report], on_duckdb[report])


def test_every_report_has_the_duckdb_row_count(mixed_run, reference_run) -> None:
    rows = _rows(mixed_run[0])
    assert rows == {a.key: a.rows for a in reference_run.summary.assets if a.key.startswith("finance/")}
    assert len(rows) == len(FINANCE)


PANDAS_UDF = '''
import pandas as pd
from pyspark.sql import functions as F


@F.pandas_udf("string")
def initial_capital(names: pd.Series) -> pd.Series:  # runs on the executors: pandas and pyarrow needed there
    return names.str.strip().str.capitalize()


def transform(inputs, session):
    orders = inputs["silver.orders"]
    return (orders.groupBy(initial_capital("customer").alias("customer"))
            .agg(F.sum("amount").alias("total")))
'''


def test_a_python_transform_s_pandas_udf_runs_on_the_executors(cluster: Cluster, tmp_path: Path) -> None:
    """Executors run Python with the driver's interpreter (pandas, pyarrow), not the worker's ``python3``."""
    root = make_tiny_root(tmp_path)
    (root / "domains" / "shop" / "python" / "gold").mkdir(parents=True)
    (root / "domains" / "shop" / "python" / "gold" / "order_totals.py").write_text(PANDAS_UDF)
    contract = root / "domains" / "shop" / "products" / "orders.yaml"
    contract.write_text(contract.read_text().replace(
        "    description: Total amount per customer.\n    customProperties:\n",
        "    description: Total amount per customer.\n    customProperties:\n"
        "      - {property: transform, value: python/gold/order_totals.py}\n"
        "      - {property: inputs, value: [silver.orders]}\n"))
    mesh_run(cluster, root, {"MESH_ENGINE": "spark"}, tmp_path / "dagster")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MESH_ENGINE", raising=False)
        totals = connect(root, "shop").sql("SELECT * FROM shop.order_totals ORDER BY 1").fetchall()
    assert totals == [("Ann", Decimal("11.50")), ("Bob", Decimal("20.00"))]
