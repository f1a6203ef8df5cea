"""Attacks through SQL text a domain writes (issue "Security that holds", items 4–6), on the tiny mesh:

4. a transform, a contract ``sql`` rule or a ``mesh sql`` reader query reading raw landing files with a table
   function — refused by the function allow-list (mesh_assets.sql.functions) at validate, load and run; and a
   step's DuckDB sandbox holds exactly its declared inputs, so even unvalidated SQL reads no other file;
5. ``reflect`` (a JVM call on Spark) in a transform — refused before translation, without starting Spark;
6. SQL injection through a column's ``physicalType`` — a finding with the file, the line and the field, never
   a traceback, and no injected SQL runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from mesh_assets.cli.main import app
from mesh_assets.cli.validate import validate
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.duckdb_engine import DuckDBEngine
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.sql_session import to_spark
from mesh_assets.engine.write_audit_publish import step_sandbox, write_audit_publish
from mesh_assets.errors import MeshError, TransformError
from mesh_assets.orchestration.definitions import build_mesh_definitions
from mesh_assets.sql.functions import FunctionNotAllowed, check_sql

SHOP = Path("domains") / "shop"
ORDERS = SHOP / "products" / "orders.yaml"
SILVER_ORDERS = SHOP / "sql" / "silver" / "orders.sql"
GOLD_TOTALS = SHOP / "sql" / "gold" / "order_totals.sql"
FIX = "read a port or table by name; declare a source for landing files"
CUSTOMER_PII = "c_custkey,c_name,c_phone\n1,Customer#000000001,25-989-741-2988\n"


def _land_other_domains_pii(root: Path) -> Path:
    """Another domain's raw landing file (TPC-H customers with names and phones), in the same landing zone."""
    path = root / ".mesh" / "landing" / "tpch" / "customer.csv"
    path.parent.mkdir(parents=True)
    path.write_text(CUSTOMER_PII)
    return path


def _edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _errors(root: Path) -> list:
    return validate(root).errors


def _run_refused(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """``mesh run`` exits with an error, without a traceback, and publishes no port."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    result = CliRunner().invoke(app, ["run", "--root", str(root)])
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert not list((root / ".mesh" / "lake").rglob("*.parquet")), "a port was written"
    return result.output


# ------------------------------------------------------------------- 4. raw landing files in SQL


def test_a_transform_reading_another_domains_landing_file_is_refused(tiny_root: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    """The issue's attack: a silver SQL file joining ``read_csv('<landing>/tpch/customer.csv')`` passed
    validate, ran, and published another domain's raw PII."""
    landed = _land_other_domains_pii(tiny_root)
    (tiny_root / SILVER_ORDERS).write_text(
        "select o.order_id, trim(o.customer) as customer, o.amount\n"
        "from bronze.raw_orders o\n"
        f"left join read_csv('{landed}') c on c.c_name = o.customer\n")
    errors = _errors(tiny_root)
    assert len(errors) == 1, errors
    message = errors[0].message
    assert str(tiny_root / SILVER_ORDERS) in message and "line 3" in message, message
    assert "read_csv()" in message and FIX in message, message
    with pytest.raises(MeshError, match=r"line 3: function read_csv\(\) is not allowed"):
        build_mesh_definitions(load_mesh(tiny_root))
    output = _run_refused(tiny_root, tmp_path, monkeypatch)
    assert "read_csv" in output
    assert "Customer#000000001" not in output


@pytest.mark.parametrize("call", ["read_parquet('x/*.parquet')", "read_text('/etc/passwd')", "glob('*')",
                                  "read_json('x.json')", "read_blob('x')", "parquet_scan('x')", "sniff_csv('x')",
                                  "query_table('silver.orders')", "'/etc/passwd'"])
def test_every_path_reader_is_refused_not_only_read_csv(call: str) -> None:
    """Allow-list, not deny-list: any table function but range/generate_series/unnest, and a file named as a
    table (DuckDB's replacement scan), is refused."""
    with pytest.raises(FunctionNotAllowed, match=FIX):
        check_sql(f"select * from silver.orders, {call}", "t.sql")
    check_sql("select * from silver.orders, range(3), generate_series(1, 2), unnest([1, 2])", "t.sql")


def test_a_steps_sandbox_is_exactly_its_declared_inputs(tiny_root: Path) -> None:
    """Even SQL that escaped validation cannot reach another domain's landing folder from a step: silver reads
    its input ports and writes its own; bronze reads its own source files only, not their neighbours."""
    landed = _land_other_domains_pii(tiny_root)
    mesh = load_mesh(tiny_root)
    storage = PortStorage(root=mesh.settings.storage_url)
    tables = {t.name: t for t in mesh.domain("shop").tables}
    raw_orders = storage.port(tables["raw_orders"].key)
    staged = raw_orders.new_snapshot("r1")
    duckdb.sql("COPY (SELECT 1 AS order_id) TO '" + staged.data_file + "' (FORMAT parquet)")
    raw_orders.publish(staged.id)
    input_file = raw_orders.current_snapshot().files[0]
    unpublished = raw_orders.new_snapshot("r2")  # staged beside it, never committed
    duckdb.sql("COPY (SELECT 2 AS order_id) TO '" + unpublished.data_file + "' (FORMAT parquet)")

    silver = tables["orders"]
    sandbox = step_sandbox(silver, storage, mesh.settings, [raw_orders.current_snapshot()])
    con = DuckDBEngine().connect(storage.root, allowed_directories=sandbox.directories, allowed_files=sandbox.files)
    assert con.execute(f"SELECT * FROM read_parquet('{input_file}')").fetchall() == [(1,)]
    with pytest.raises(duckdb.PermissionException):  # exactly the snapshot's files, not its port's folder
        con.execute(f"SELECT * FROM read_parquet('{unpublished.data_file}')").fetchall()
    for path in (landed, tiny_root / ".mesh" / "landing" / "shop" / "orders.csv"):
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT * FROM read_csv('{path}')").fetchall()
    own = Path(storage.port(silver.key).path) / "x.parquet"
    own.parent.mkdir(parents=True)
    con.execute(f"COPY (SELECT 1) TO '{own}' (FORMAT parquet)")  # its own port: writable
    with pytest.raises(duckdb.PermissionException):  # another table's port of the same domain: not
        con.execute(f"COPY (SELECT 1) TO '{Path(storage.port(tables['order_totals'].key).path)}/x.parquet'")

    bronze = tables["raw_orders"]
    mine = str(tiny_root / ".mesh" / "landing" / "shop" / "orders.csv")
    sandbox = step_sandbox(bronze, storage, mesh.settings, [], [mine])
    con = DuckDBEngine().connect(storage.root, allowed_directories=sandbox.directories, allowed_files=sandbox.files)
    assert len(con.execute(f"SELECT * FROM read_csv('{mine}')").fetchall()) == 3
    for path in (landed, tiny_root / ".mesh" / "landing" / "shop" / "customers.csv"):
        with pytest.raises(duckdb.PermissionException):
            con.execute(f"SELECT * FROM read_csv('{path}')").fetchall()


def test_a_sql_rule_reading_a_landing_file_is_refused(tiny_root: Path) -> None:
    landed = _land_other_domains_pii(tiny_root)
    contract = tiny_root / ORDERS

    def change(data):
        data["schema"][1]["quality"].append({"id": "sneaky", "type": "sql", "mustBe": 0,
                                             "query": f"select count(*) from read_csv('{landed}')"})

    _edit_yaml(contract, change)
    errors = _errors(tiny_root)
    assert [(e.file, e.field) for e in errors] == [(contract, "schema[1].quality[1].query")], errors
    assert errors[0].line and "read_csv()" in errors[0].message and FIX in errors[0].message
    with pytest.raises(MeshError, match=r"read_csv\(\) is not allowed"):
        build_mesh_definitions(load_mesh(tiny_root))


def test_a_reader_query_reading_a_landing_file_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    landed = _land_other_domains_pii(tiny_root)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert CliRunner().invoke(app, ["run", "--root", str(tiny_root)]).exit_code == 0
    result = CliRunner().invoke(app, ["sql", "--root", str(tiny_root), f"select * from read_csv('{landed}')"])
    assert result.exit_code not in (0, None) and isinstance(result.exception, SystemExit), result.output
    assert "read_csv() is not allowed" in result.output and "Customer#" not in result.output
    result = CliRunner().invoke(app, ["sql", "--root", str(tiny_root), "select * from shop.order_totals"])
    assert result.exit_code == 0 and "ann" in result.output, result.output


# ---------------------------------------------------------------------------- 5. Spark reflection


def test_reflect_in_a_transform_is_refused_on_spark_without_starting_spark(tiny_root: Path) -> None:
    """The issue's attack published the salt: ``reflect`` calls any JVM method from Spark SQL."""
    contract = tiny_root / ORDERS

    def change(data):
        data["schema"][2]["customProperties"].append({"property": "engine", "value": "spark"})

    _edit_yaml(contract, change)
    attack = ("select customer, sum(amount) as total,\n"
              "  reflect('java.lang.System', 'getenv', 'MESH_PII_SALT') as salt\n"
              "from silver.orders group by customer")
    (tiny_root / GOLD_TOTALS).write_text(attack)
    errors = _errors(tiny_root)
    assert len(errors) == 1 and str(tiny_root / GOLD_TOTALS) in errors[0].message, errors
    assert "line 2: function reflect() is not allowed" in errors[0].message
    with pytest.raises(MeshError, match=r"reflect\(\) is not allowed"):
        build_mesh_definitions(load_mesh(tiny_root))
    for call in ("reflect('java.lang.System', 'getenv', 'MESH_PII_SALT')", "java_method('a', 'b')",
                 "try_reflect('a', 'b')"):
        with pytest.raises(FunctionNotAllowed, match=FIX):
            to_spark(f"select {call} from silver.orders")

    # at run, before a Spark session is asked for
    class NoSpark:
        name = "spark"

        def open(self, table, sandbox):
            raise AssertionError("Spark was started")

    mesh = load_mesh(tiny_root)
    table = next(t for t in mesh.domain("shop").tables if t.name == "order_totals")
    with pytest.raises(TransformError, match=r"order_totals.sql: line 2: function reflect\(\) is not allowed"):
        write_audit_publish(table, [], engine=NoSpark(), duckdb=DuckDBEngine(),
                                storage=PortStorage(root=mesh.settings.storage_url), settings=mesh.settings,
                                run_id="r1")


# -------------------------------------------------------------------- 6. physicalType injection


@pytest.mark.parametrize("physical", ["VARCHAR) AS c, (SELECT 42) AS zz, CAST(NULL AS VARCHAR", 'BIGINT" AS z'],
                         ids=["injected-select", "stray-quote"])
def test_a_physical_type_cannot_inject_sql(tiny_root: Path, tmp_path: Path, monkeypatch, physical: str) -> None:
    contract = tiny_root / ORDERS

    def change(data):
        data["schema"][2]["properties"][0]["physicalType"] = physical

    _edit_yaml(contract, change)
    errors = _errors(tiny_root)
    assert [(e.file, e.field) for e in errors] == [(contract, "schema[2].properties[0].physicalType")], errors
    assert errors[0].line and "is not a DuckDB type" in errors[0].message
    result = CliRunner().invoke(app, ["validate", "--root", str(tiny_root)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert re.search(r"schema\[2\]\.properties\[0\]\.physicalType", result.output), result.output
    assert "physicalType" in _run_refused(tiny_root, tmp_path, monkeypatch)  # refused at load: no step ran


def test_physical_types_are_stored_as_parsed(tiny_root: Path) -> None:
    """What reaches SQL is the type re-rendered from its parse, in DuckDB's spelling; nested types work."""
    contract = tiny_root / ORDERS

    def change(data):
        props = data["schema"][2]["properties"]
        props[0]["physicalType"] = "varchar  /* a comment */"
        props[1]["physicalType"] = "decimal( 38 , 2 )"

    _edit_yaml(contract, change)
    table = next(t for t in load_mesh(tiny_root).domain("shop").tables if t.name == "order_totals")
    assert table.output_columns == {"customer": "VARCHAR", "total": "DECIMAL(38,2)"}


def test_the_documented_allow_list_is_the_enforced_one() -> None:
    """docs/governance.md lists exactly the functions mesh_assets.sql.functions allows."""
    from mesh_assets.sql.functions import ALLOWED_FUNCTIONS

    text = (Path(__file__).parent.parent / "docs" / "governance.md").read_text()
    section = text.split("### Functions SQL may call", 1)[1].split("\n#", 1)[0]
    listed = set(re.findall(r"`([a-z0-9_]+)`", section.split("\n\n", 2)[2]))
    assert listed == set(ALLOWED_FUNCTIONS)
