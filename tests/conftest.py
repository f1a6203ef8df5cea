"""Shared fixtures: a one-domain mesh copied into a temporary folder, a Dagster instance per test, and — once for
the whole test run — TPC-H landed at a small scale factor and the reference mesh materialized from it."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from domains.tpch import TABLES, land_tpch, raw_files
from mesh_assets.cli.main import app
from mesh_assets.contract.mesh import Mesh, load_mesh
from mesh_assets.engine.ports import Port
from mesh_assets.errors import PortError
from mesh_assets.orchestration.runner import RunSummary, run_mesh

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
TEST_SALT = "salt-of-the-tests-0123456789"
VALID_ORDERS = "order_id,customer,amount\n1,ann,10.00\n2,bob,20.00\n3, ann ,1.50\n"
CUSTOMERS = ("customer,segment,since\nann,retail,2020-01-15\nbob,retail,2021-06-01\ncy,wholesale,2019-03-03\n"
             "dee,wholesale,2022-12-31\nzoe,retail,2023-07-04\n")
TPCH_SCALE_FACTOR = 0.01  # about 87,000 rows: every TPC-H query still returns rows
# TPC-H specification §1.4.1 column types (as in dbgen's dss.ddl), so the reference never borrows our contracts.
RAW_DDL = {
    "nation": "n_nationkey INTEGER, n_name VARCHAR, n_regionkey INTEGER, n_comment VARCHAR",
    "region": "r_regionkey INTEGER, r_name VARCHAR, r_comment VARCHAR",
    "part": "p_partkey INTEGER, p_name VARCHAR, p_mfgr VARCHAR, p_brand VARCHAR, p_type VARCHAR, p_size INTEGER, "
            "p_container VARCHAR, p_retailprice DECIMAL(15,2), p_comment VARCHAR",
    "supplier": "s_suppkey INTEGER, s_name VARCHAR, s_address VARCHAR, s_nationkey INTEGER, s_phone VARCHAR, "
                "s_acctbal DECIMAL(15,2), s_comment VARCHAR",
    "partsupp": "ps_partkey INTEGER, ps_suppkey INTEGER, ps_availqty INTEGER, ps_supplycost DECIMAL(15,2), "
                "ps_comment VARCHAR",
    "customer": "c_custkey INTEGER, c_name VARCHAR, c_address VARCHAR, c_nationkey INTEGER, c_phone VARCHAR, "
                "c_acctbal DECIMAL(15,2), c_mktsegment VARCHAR, c_comment VARCHAR",
    "orders": "o_orderkey INTEGER, o_custkey INTEGER, o_orderstatus VARCHAR, o_totalprice DECIMAL(15,2), "
              "o_orderdate DATE, o_orderpriority VARCHAR, o_clerk VARCHAR, o_shippriority INTEGER, o_comment VARCHAR",
    "lineitem": "l_orderkey INTEGER, l_partkey INTEGER, l_suppkey INTEGER, l_linenumber INTEGER, "
                "l_quantity DECIMAL(15,2), l_extendedprice DECIMAL(15,2), l_discount DECIMAL(15,2), "
                "l_tax DECIMAL(15,2), l_returnflag VARCHAR, l_linestatus VARCHAR, l_shipdate DATE, "
                "l_commitdate DATE, l_receiptdate DATE, l_shipinstruct VARCHAR, l_shipmode VARCHAR, l_comment VARCHAR",
}


def isolate(mp: pytest.MonkeyPatch) -> None:
    """Through ``mp``: no storage root, landing zone or ``DAGSTER_HOME`` from the environment (never the
    repository's own lake or instance: a mesh run records in ``<mesh>/.dagster`` unless a test says otherwise),
    and PII masked with a known salt."""
    mp.delenv("DAGSTER_HOME", raising=False)
    mp.delenv("MESH_STORAGE_ROOT", raising=False)
    mp.delenv("MESH_LANDING_ZONE", raising=False)
    mp.setenv("MESH_PII_SALT", TEST_SALT)


def mesh_cli(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``mesh <args> --root <root>`` run in this process by typer's ``CliRunner``, with ``env`` set for the call:
    its exit code, stdout and stderr as a child process gives them, without the child's start (about 3 s of
    importing the framework each). An exception the command lets escape fails the test, as a person would see
    a bare traceback. The real entry point in a child process is tested in tests/test_cli.py."""
    result = CliRunner().invoke(app, [*args, "--root", str(root)], env={"COLUMNS": "200", **(env or {})},
                                catch_exceptions=False)
    return subprocess.CompletedProcess(["mesh", *args], result.exit_code, result.stdout, result.stderr)


@pytest.fixture(autouse=True)
def _isolated_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs :func:`isolate`d (module- and session-scoped fixtures call it themselves)."""
    isolate(monkeypatch)


@contextlib.contextmanager
def restored(folder: Path) -> Iterator[Path]:
    """``folder`` itself (a mesh folder with its lake, or a lake), put back as it was when the block ends. A
    mesh materialized once per module is restored after each test that changes it, much cheaper than running
    it again. It cannot be copied elsewhere instead: its ports are Iceberg tables, which name their metadata and
    data files by absolute path, so a copy would read, and commit into, the original."""
    pristine = folder.parent / f".{folder.name}.pristine"
    if not pristine.exists():
        shutil.copytree(folder, pristine, symlinks=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)
        shutil.copytree(pristine, folder, symlinks=True)


def make_tiny_root(parent: Path) -> Path:
    """A copy of ``tests/fixtures/tiny_mesh`` at ``parent/tiny`` (domain ``shop``: bronze raw_orders → silver
    orders → gold order_totals; bronze raw_customers, referenced by silver orders) with three valid orders landed."""
    root = parent / "tiny"
    shutil.copytree(FIXTURES / "tiny_mesh", root)
    land_orders(root, VALID_ORDERS)
    (root / ".mesh" / "landing" / "shop" / "customers.csv").write_text(CUSTOMERS)
    return root


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """The tiny mesh of :func:`make_tiny_root` in the test's own folder."""
    return make_tiny_root(tmp_path)


def edit_columns(root: Path, edit: Callable[[str, dict], None]) -> None:
    """Apply ``edit(table name, column)`` to every column (a contract's ``properties[]`` entry, edited in place)
    of every table of the tiny mesh's two contracts, and write them back."""
    for name in ("orders", "customers"):
        path = root / "domains/shop/products" / f"{name}.yaml"
        contract = yaml.safe_load(path.read_text())
        for table in contract["schema"]:
            for column in table["properties"]:
                edit(table["name"], column)
        path.write_text(yaml.safe_dump(contract, sort_keys=False))


def land_orders(root: Path, csv_text: str) -> None:
    """Replace the tiny mesh's landed orders file with ``csv_text``."""
    landing = root / ".mesh" / "landing" / "shop"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "orders.csv").write_text(csv_text)


@pytest.fixture
def land(tiny_root: Path):
    """``land(csv_text)`` replaces the landed orders of the tiny mesh."""
    return lambda csv_text: land_orders(tiny_root, csv_text)


@pytest.fixture
def tiny_mesh(tiny_root: Path) -> Mesh:
    return load_mesh(tiny_root)


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        yield inst


class _Receiver:
    """An HTTP server on loopback recording the JSON body of every POST (``bodies``) and answering 200."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        bodies = self.bodies = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def webhook():
    """A webhook receiver on loopback: ``webhook.url`` to POST to, ``webhook.bodies`` what it received."""
    receiver = _Receiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="session")
def tpch_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A landing zone holding TPC-H at :data:`TPCH_SCALE_FACTOR` (``tpch/<table>.csv``, the orders and lines by
    month: domains.tpch), generated once for the whole test run. Read-only: a test that lands other files copies
    it first."""
    landing = tmp_path_factory.mktemp("tpch_landing")
    land_tpch(landing, TPCH_SCALE_FACTOR)
    return landing


@pytest.fixture(scope="session")
def tpch_raw(tpch_landing: Path) -> duckdb.DuckDBPyConnection:
    """The landed TPC-H files as DuckDB tables typed by the TPC-H specification (:data:`RAW_DDL`), the reference
    the mesh's results are compared with."""
    con = duckdb.connect()
    for table in TABLES:
        con.execute(f"CREATE TABLE {table} ({RAW_DDL[table]})")
        typed = ", ".join(f"CAST({name} AS {kind})" for name, kind in
                          (column.split(" ", 1) for column in RAW_DDL[table].split(", ")))
        con.execute(f"INSERT INTO {table} SELECT {typed} FROM read_csv('{tpch_landing / raw_files(table)}', "
                    "header = true, all_varchar = true)")  # the TPC-H columns (a line's o_orderdate left out)
    return con


def _reference_env(landing: Path, lake: Path) -> dict[str, str]:
    return {"MESH_LANDING_ZONE": str(landing), "MESH_STORAGE_ROOT": str(lake), "MESH_PII_SALT": TEST_SALT,
            "MESH_ENGINE": "duckdb"}


@dataclass(frozen=True)
class ReferenceRun:
    """The reference mesh (``REPO``) materialized once on DuckDB from :func:`tpch_landing`.

    Shared by every test of the run, so read-only: a test that runs anything does it in a ``restored(lake)``
    block (:func:`restored`) and records into an instance of its own."""

    summary: RunSummary
    landing: Path  # the landing zone, holding tpch/ (domains.tpch)
    lake: Path  # the storage root the run published into
    instance: dg.DagsterInstance  # the instance that recorded the run

    def env(self, lake: Path | None = None) -> dict[str, str]:
        """The environment the run had (with ``lake`` as the storage root, if given): set it to read its ports."""
        return _reference_env(self.landing, lake or self.lake)



@pytest.fixture(scope="session")
def reference_run(tpch_landing: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReferenceRun]:
    """The whole reference mesh run once per test run (see :class:`ReferenceRun`)."""
    lake = tmp_path_factory.mktemp("reference_lake")
    with dg.instance_for_test() as instance:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in _reference_env(tpch_landing, lake).items():
                mp.setenv(name, value)
            summary = run_mesh(load_mesh(REPO), instance)
        yield ReferenceRun(summary, tpch_landing, lake, instance)



def two_writers_never_tear(root: Path, rounds: int, catalog_uri: str | None = None) -> None:
    """Two writer processes publish the port ``d.gold__t`` under ``root`` ``rounds`` times each
    (tests/fixtures/concurrent_writer.py), through the catalog at ``catalog_uri`` (default: the embedded SQLite
    one), while this process reads it. Asserts that every round commits (after retries) or gives up with the
    clear message, that the table is always readable with a row count a writer published, and that no torn
    snapshot or orphan file is left."""
    env = {**os.environ, **({"MESH_CATALOG_URI": catalog_uri} if catalog_uri else {})}
    writer = FIXTURES / "concurrent_writer.py"
    procs = [subprocess.Popen([sys.executable, str(writer), str(root), name, str(rounds)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for name in ("a", "b")]
    published_counts = {100 + i for i in range(rounds)} | {200 + i for i in range(rounds)}
    port = Port(str(root), ("d", "gold", "t"), catalog_uri)
    reads = 0
    while any(p.poll() is None for p in procs):
        try:
            snapshot = port.current_snapshot()
        except PortError as exc:  # before the first commit only
            assert "no published snapshot yet" in str(exc)
            continue
        rows = duckdb.sql(f"SELECT count(*) FROM {snapshot.read_sql}").fetchall()[0][0]
        assert rows in published_counts and rows == port.snapshot_info(
            port.table().snapshot_by_id(snapshot.iceberg_id))["rows"]
        reads += 1
    outcomes = []
    for proc in procs:
        out, err = proc.communicate()
        assert proc.returncode == 0, err
        outcomes += [json.loads(line) for line in out.splitlines()]
    assert len(outcomes) == 2 * rounds and reads > 0
    assert all(o["outcome"] in ("published", "gave up") for o in outcomes), outcomes
    assert all("lost to other writers" in o["message"] for o in outcomes if o["outcome"] == "gave up")
    committed = [o["publication"] for o in outcomes if o["outcome"] == "published"]
    assert len(committed) >= rounds  # each round at least one writer gets through
    kept = {h["snapshot"] for h in port.history()}
    assert kept <= set(committed)  # no snapshot but the writers' publications, none torn
    last = port.current()
    assert duckdb.sql(f"SELECT count(*) FROM {port.current_snapshot().read_sql}").fetchall()[0][0] == last["rows"]
    assert port.orphans() == []


@pytest.fixture(scope="session")
def light_venv() -> Path:
    """A venv with ``pip install -e <repository>`` and no extra (plus pytest, which the tutorial runs), at the
    versions of constraints.txt: a user's clean install of the framework (tests/test_extras.py, and a scaffolded
    domain repository's CI in tests/test_domain_repos.py; each clean venv costs minutes, so there is one). Kept
    under ``.mesh/light-venv/<hash of constraints.txt and pyproject.toml>``, so a rerun reuses it; built under a
    lock (pytest-xdist workers share it)."""
    digest = hashlib.sha256((REPO / "constraints.txt").read_bytes() + (REPO / "pyproject.toml").read_bytes())
    cache = REPO / ".mesh" / "light-venv"
    venv = cache / digest.hexdigest()[:16]
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / "complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            for stale in cache.iterdir():  # venvs of older constraints
                if stale.is_dir():
                    shutil.rmtree(stale, ignore_errors=True)
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
            subprocess.run([*pip, "--upgrade", "pip"], check=True, capture_output=True)
            done = subprocess.run([*pip, "-c", str(REPO / "constraints.txt"), "-e", str(REPO), "pytest"],
                                  capture_output=True, text=True, check=False)
            assert done.returncode == 0, done.stdout + done.stderr
            (venv / "complete").write_text(f"built in {time.monotonic() - started:.0f} s\n")
    return venv
