"""Attacks on failure handling (security issue, item 10): bad data is never retried as if it were transient, the
last failure is the real error (never only "Exceeded max_retries"), one classification holds for every stage
and engine, and what a killed step leaves behind (its private folder, its child processes) is cleaned by the
next run and out of the readers' reach (docs/operations.md "Failures and retries", "Recovery from a crash")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import psutil
import pytest

from mesh_assets.consumption.query import connect
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine import write_audit_publish
from mesh_assets.engine.duckdb_engine import DuckDBEngine
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.ports import WRITER, process_owner
from mesh_assets.engine.step_folders import FOLDER_ENV, steps_path
from mesh_assets.errors import TransformError, TransientError, failure_class, is_transient
from mesh_assets.orchestration.runner import run_mesh

from conftest import land_orders

ORDERS, SILVER = "shop__bronze__raw_orders", "shop__silver__orders"
LONG = 30_000_000  # characters of the long value: a 30 MB CSV record


def _settings(root: Path, text: str) -> None:
    with (root / "mesh.yaml").open("a") as handle:
        handle.write(text)


def _run(root: Path, instance: dg.DagsterInstance):
    summary = run_mesh(load_mesh(root), instance)
    retries = [e.step_key for e in instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)]
    failures = {}
    for entry in instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data
        description = data.user_failure_data.description if data.user_failure_data else None
        failures[entry.step_key] = (data.error.message if data.error else "", description or "")
    return {a.key: (a.status, a.rows) for a in summary.assets}, retries, failures


def _land_long_record(root: Path) -> None:
    land_orders(root, "order_id,customer,amount\n1,ann,10.00\n2," + "x" * LONG + ",3.00\n3,bob,2.00\n")


def test_a_30_mb_csv_record_is_rejected_at_once_and_the_valid_rows_are_kept(tiny_root: Path, instance) -> None:
    _settings(tiny_root, "retries: {max_retries: 3, delay_seconds: 0}\n")
    _land_long_record(tiny_root)
    status, retries, failures = _run(tiny_root, instance)
    assert retries == [] and failures == {}
    assert status["shop/bronze/raw_orders"] == ("materialized", 2)  # the valid records are published
    assert status["shop/bronze/raw_orders__rejects"] == ("materialized", 1)
    port = PortStorage(root=load_mesh(tiny_root).settings.storage_url).port(("shop", "bronze", "raw_orders__rejects"))
    (line, file, kinds, reason, raw), = duckdb.sql(
        "SELECT line_number, _source_file, error_types, reason, length(raw_line) FROM "
        f"read_parquet('{port.current_snapshot().glob}')").fetchall()
    assert (line, Path(file).name, kinds) == (3, "orders.csv", "LINE SIZE OVER MAXIMUM")
    assert "ingestion.max_line_size" in reason and raw < 100_000  # the fix is named; the record is not copied whole


def test_a_30_mb_csv_record_fails_once_naming_the_file_line_and_fix_when_rejects_are_errors(
        tiny_root: Path, instance) -> None:
    _settings(tiny_root, "retries: {max_retries: 3, delay_seconds: 0}\ningestion: {rejects: error}\n")
    _land_long_record(tiny_root)
    status, retries, failures = _run(tiny_root, instance)
    assert retries == [] and list(failures) == [ORDERS]
    message, description = failures[ORDERS]
    assert "Exceeded max_retries" not in message
    assert "orders.csv line 3" in description and "ingestion.max_line_size" in description
    assert len(description) < 5_000  # the 30 MB record is not pasted into the event log

    (tiny_root / "mesh.yaml").write_text((tiny_root / "mesh.yaml").read_text().replace(
        "ingestion: {rejects: error}", "ingestion: {rejects: error, max_line_size: 40000000}"))
    status, retries, failures = _run(tiny_root, instance)
    assert ORDERS not in failures and status["shop/bronze/raw_orders"] == ("materialized", 3)  # the fix works


def test_a_permanent_error_fails_at_once_in_every_stage(tiny_root: Path, instance, monkeypatch) -> None:
    _settings(tiny_root, "retries: {max_retries: 2, delay_seconds: 0}\n")
    sql = tiny_root / "domains" / "shop" / "sql" / "silver" / "orders.sql"
    sql.write_text("select order_id, trim(customer) as customer, cast(customer as decimal(10,2)) as amount "
                   "from bronze.raw_orders")  # a conversion error in the SQL transform
    status, retries, failures = _run(tiny_root, instance)
    assert retries == [] and list(failures) == [SILVER]
    assert "Conversion Error" in failures[SILVER][1] and "sql/silver/orders.sql" in failures[SILVER][1]

    sql.write_text("select order_id, trim(customer) as customer, amount from bronze.raw_orders")
    for stage in ("run_rules", "profile_relation"):  # the checks and the profile, where DuckDB's errors are raw
        def broken(*args, **kwargs):
            raise duckdb.ConversionException("Conversion Error: Could not convert string 'x' to INT32")

        with monkeypatch.context() as patch:
            patch.setattr(write_audit_publish, stage, broken)
            status, retries, failures = _run(tiny_root, instance)
        assert retries == [], stage
        assert "Conversion Error" in failures[ORDERS][1] and "products/orders.yaml" in failures[ORDERS][1], stage


def test_a_transient_error_is_retried_and_the_last_failure_is_the_real_error(tiny_root: Path, instance,
                                                                             monkeypatch) -> None:
    _settings(tiny_root, "retries: {max_retries: 2, delay_seconds: 0}\n")
    original, calls = write_audit_publish.profile_relation, []

    def flaky(con, relation, **options):
        calls.append(relation)
        if relation == "silver.orders" and (calls.count(relation) == 1 or always):
            raise duckdb.IOException("IO Error: Could not read from file: connection reset by peer")
        return original(con, relation, **options)

    always = False
    monkeypatch.setattr(write_audit_publish, "profile_relation", flaky)
    status, retries, failures = _run(tiny_root, instance)
    assert retries == [SILVER] and failures == {}
    assert status["shop/silver/orders"][0] == "materialized"

    always, calls[:] = True, []
    status, retries, failures = _run(tiny_root, instance)
    assert retries == [SILVER, SILVER] and calls.count("silver.orders") == 3  # the first attempt and 2 retries
    message, description = failures[SILVER]
    assert "Exceeded max_retries" not in message
    assert "IO Error: Could not read from file" in description and "3 attempt(s)" in description


class Py4JError(Exception):
    """Stand-ins for py4j's and pyspark's classes, matched by name: Spark need not start to classify."""


def _named(name: str, *bases: type) -> type:
    return type(name, bases or (Exception,), {})


Py4JNetworkError, Py4JJavaError = _named("Py4JNetworkError", Py4JError), _named("Py4JJavaError", Py4JError)
PySparkException = _named("PySparkException")
AnalysisException = _named("AnalysisException", PySparkException)
SPARK_CASES = [
    (Py4JNetworkError("An error occurred while trying to connect to the Java server"), True),
    (Py4JJavaError("An error occurred while calling o42.parquet.\n: java.io.IOException: Stream closed"), True),
    (Py4JJavaError("Job aborted: ExecutorLostFailure (executor 1 exited)"), True),
    (Py4JJavaError("An error occurred: java.lang.IllegalStateException: bad state"), False),
    (AnalysisException("[TABLE_OR_VIEW_NOT_FOUND] The table cannot be found"), False),
    (_named("ParseException", AnalysisException)("[PARSE_SYNTAX_ERROR] Syntax error"), False),
    (_named("NumberFormatException", PySparkException)("[CAST_INVALID_INPUT] 'x' cannot be cast"), False),
    (_named("PythonException", PySparkException)("ZeroDivisionError in a UDF"), False),
]
DUCKDB_CASES = [
    (duckdb.IOException, True), (duckdb.HTTPException, True), (duckdb.ConnectionException, True),
    (duckdb.OutOfMemoryException, True), (duckdb.InterruptException, True),
    (duckdb.InvalidInputException, False), (duckdb.ConversionException, False), (duckdb.BinderException, False),
    (duckdb.ParserException, False), (duckdb.CatalogException, False), (duckdb.ConstraintException, False),
    (duckdb.PermissionException, False), (duckdb.InternalException, False),
]


@pytest.mark.parametrize(("cls", "transient"), DUCKDB_CASES, ids=[c.__name__ for c, _ in DUCKDB_CASES])
def test_every_duckdb_error_class_is_classified_as_documented(cls: type, transient: bool) -> None:
    assert is_transient(cls("message")) is transient
    assert failure_class(cls("message")) is (TransientError if transient else TransformError)


@pytest.mark.parametrize(("error", "transient"), SPARK_CASES, ids=[f"{type(e).__name__}-{i}" for i, (e, _) in
                                                                   enumerate(SPARK_CASES)])
def test_spark_and_py4j_errors_are_classified_by_name_without_spark(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


@pytest.mark.parametrize(("error", "transient"), [
    (OSError("connection reset by the object store"), True), (TimeoutError("timed out"), True),
    (PermissionError("Permission denied"), False), (TransientError("lost"), True), (TransformError("bad"), False),
    (KeyError("a bug"), False), (ValueError("a Python transform's exception"), False),
    ("Runtime Error in model x\n  IO Error: Could not write file", True),  # dbt reports a model's failure as text
    ("Runtime Error in model x\n  Conversion Error: Could not convert string 'a' to INT32", False),
])
def test_python_and_text_errors_are_classified(error: BaseException | str, transient: bool) -> None:
    assert is_transient(error) is transient


def _dead_owner() -> dict:
    """The owner record of a process that has exited (what a killed step leaves in its folder)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    owner = {**process_owner(), "pid": child.pid, "process_started": psutil.Process(child.pid).create_time()}
    child.wait()
    return owner


def _step_folder(root: Path, name: str, owner: dict) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / WRITER).write_text(json.dumps(owner))
    (folder / "profiles.yml").write_text("mesh: {}\n")
    return folder


def test_a_killed_steps_folder_and_children_are_cleaned_by_the_next_run(tiny_root: Path, instance) -> None:
    settings = load_mesh(tiny_root).settings
    dead = _step_folder(steps_path(settings), "dbt-killed-abc", _dead_owner())
    live = _step_folder(steps_path(settings), "dbt-running-def", process_owner())  # a step running now
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                             env={"PATH": "/usr/bin:/bin", FOLDER_ENV: str(dead)})
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"],
                                 env={"PATH": "/usr/bin:/bin", FOLDER_ENV: str(live)})
    try:
        status, _, failures = _run(tiny_root, instance)
        assert failures == {}
        assert not dead.exists() and live.is_dir()
        assert child.wait(timeout=30) is not None  # the killed step's dbt process was terminated
        assert bystander.poll() is None  # the running step's is left alone
    finally:
        for process in (child, bystander):
            process.kill()
            process.wait()


def test_mesh_sql_cannot_read_step_folders_or_the_spill_folder(tiny_root: Path) -> None:
    settings = load_mesh(tiny_root).settings
    folder = _step_folder(steps_path(settings), "dbt-running-abc", process_owner())
    spill = Path(settings.duckdb_temp_path)
    spill.mkdir(parents=True, exist_ok=True)
    (spill / "dbt-old-xyz").mkdir()
    (spill / "dbt-old-xyz" / "profiles.yml").write_text("mesh: {}\n")
    con = connect(tiny_root, sandbox=True)
    for path in (folder / "profiles.yml", spill / "dbt-old-xyz" / "profiles.yml"):
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT * FROM read_text('{path}')").fetchall()


def test_each_step_spills_to_a_folder_of_its_own(tiny_root: Path, instance, monkeypatch) -> None:
    """DuckDB lets a sandboxed connection read its spill folder: a step's is its own (inside
    ``duckdb.temp_directory``), deleted after the step, and another step's spilled data is out of its reach."""
    settings = load_mesh(tiny_root).settings
    made = []
    original = write_audit_publish.new_spill_folder
    monkeypatch.setattr(write_audit_publish, "new_spill_folder", lambda s: made.append(original(s)) or made[-1])
    status, _, failures = _run(tiny_root, instance)
    steps = [key for key in status if not key.endswith("__rejects")]  # a bronze step also writes its rejects
    assert failures == {} and len(made) == len(steps) == 4
    temp = Path(settings.duckdb_temp_path).resolve()
    assert len(set(made)) == len(made) and all(f.parent == temp and f.name.startswith("spill-") for f in made)
    assert not any(f.exists() for f in made)
    other = original(settings)  # a step running now, with data spilled
    (other / "spilled.bin").write_text("Customer#000000001")
    mine = original(settings)
    con = DuckDBEngine().connect(str(tiny_root), allowed_directories=[str(mine)], spill_directory=str(mine))
    try:
        assert con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] == str(mine)
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT * FROM read_text('{other / 'spilled.bin'}')").fetchall()
    finally:
        con.close()
