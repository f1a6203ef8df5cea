"""Hostile identifiers never reach SQL or a path: every name from a contract, a domain folder or a SQL reference
is refused with an error naming the file and the field, and a refused `mesh run` writes nothing outside the
storage root. Ports refuse unsafe key parts themselves (defence in depth)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from mesh_assets.cli.main import app
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.duckdb_engine import DuckDBEngine
from mesh_assets.engine.ports import REJECTS_SUFFIX, Port
from mesh_assets.errors import MeshError, PortError
from mesh_assets.orchestration.definitions import build_mesh_definitions

HOSTILE = {
    "double quote": 'a"b',
    "single quote": "a'b",
    "semicolon": "x; drop table y",
    "traversal": "../../etc",
    "dot dot": "..",
    "slash": "a/b",
    "300 characters": "a" * 300,
    "64 characters": "a" * 64,
    "cyrillic look-alike": "ѕhop",  # U+0455, not an ASCII s
    "fullwidth look-alike": "ｓhop",
    "empty": "",
    "trailing newline": "order_totals\n",
    "upper case": "Shop",
}
# Names a folder can carry (no '/', not '..', not empty, at most 255 bytes).
FOLDER_SAFE = ["double quote", "single quote", "semicolon", "64 characters", "cyrillic look-alike",
               "fullwidth look-alike", "trailing newline", "upper case"]
SHOP = Path("domains") / "shop"
ORDERS = SHOP / "products" / "orders.yaml"


# ---------------------------------------------------------------------------------------------- helpers


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


def _edit_yaml(path: Path, change) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def _refused(root: Path, file: Path, field: str | None) -> str:
    """Load the mesh as ``mesh run`` does and return the error, which must name ``file`` and, as a problem line
    ``<field> (line N): …``, the ``field``."""
    with pytest.raises(MeshError) as caught:
        build_mesh_definitions(load_mesh(root))
    message = str(caught.value)
    assert str(file) in message, message
    if field is not None:
        assert re.search(rf"(^|\s){re.escape(field)}( \(line \d+\))?: ", message), message
    return message


def _run_writes_nothing_outside_the_lake(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          *args: str) -> str:
    """``mesh run`` (in process) fails cleanly and creates no file outside the storage root, the Dagster
    instance, the OpenLineage event file and its run results (``.mesh/run_results.json``); returns its output."""
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    before = _files(tmp_path)
    result = CliRunner().invoke(app, ["run", "--root", str(root), *args])
    outputs = [root / ".mesh" / "lake", home, root / ".mesh" / "openlineage"]
    new = {p for p in _files(tmp_path) - before
           if not any(o in p.parents for o in outputs) and p != root / ".mesh" / "run_results.json"}
    assert result.exit_code not in (0, None), result.output
    assert isinstance(result.exception, SystemExit), result.exception  # an exit code, not a crash
    assert "Traceback" not in result.output
    assert new == set(), sorted(map(str, new))
    return result.output


# ------------------------------------------------------------------------------- domain names


@pytest.mark.parametrize("case", FOLDER_SAFE)
def test_hostile_domain_folder_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch, case: str) -> None:
    name = HOSTILE[case]
    folder = tiny_root / "domains" / name
    (tiny_root / SHOP).rename(folder)
    _edit_yaml(folder / "domain.yaml", lambda d: d.update(name=name))
    for contract in (folder / "products").glob("*.yaml"):
        _edit_yaml(contract, lambda d: d.update(domain=name))
    _refused(tiny_root, folder / "domain.yaml", "name")
    _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_domain_name_field_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch, case: str) -> None:
    descriptor = tiny_root / SHOP / "domain.yaml"
    _edit_yaml(descriptor, lambda d: d.update(name=HOSTILE[case]))
    _refused(tiny_root, descriptor, "name")
    _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_contract_domain_field_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch, case: str) -> None:
    contract = tiny_root / ORDERS
    _edit_yaml(contract, lambda d: d.update(domain=HOSTILE[case]))
    _refused(tiny_root, contract, "domain")
    _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch)


@pytest.mark.parametrize("case", ["traversal", "dot dot", "semicolon", "double quote"])
def test_run_of_a_hostile_domain_option_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch, case: str) -> None:
    output = _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch, "--domain", HOSTILE[case])
    assert "unknown domain" in output


# -------------------------------------------------------------------------------- table and column names


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_table_name_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch, case: str) -> None:
    contract = tiny_root / ORDERS
    _edit_yaml(contract, lambda d: d["schema"][2].update(name=HOSTILE[case]))  # the gold table order_totals
    _refused(tiny_root, contract, "schema[2].name")
    _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch)


@pytest.mark.parametrize("case", sorted(set(HOSTILE) - {"upper case"}))  # columns may be upper case, quoted
def test_hostile_column_name_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch, case: str) -> None:
    contract = tiny_root / ORDERS
    _edit_yaml(contract, lambda d: d["schema"][2]["properties"][1].update(name=HOSTILE[case]))  # gold total
    _refused(tiny_root, contract, "schema[2].properties[1].name")
    _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch)


# --------------------------------------------------------------------------------- references in SQL


@pytest.mark.parametrize("sql", [
    'select * from "../x".y',
    'select * from "../../etc".passwd',
    'select * from silver."../../etc"',
    'select * from silver."a""b"',
    "select * from \"x; drop table y\".t",
    'select * from "a/b".t',
    'select * from "ѕhop".order_totals',
    'select * from silver."orders\n"',
])
def test_hostile_input_reference_in_sql_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch, sql: str) -> None:
    transform = tiny_root / SHOP / "sql" / "gold" / "order_totals.sql"
    transform.write_text(sql)
    message = _refused(tiny_root, transform, None)
    assert "which no contract of domain 'shop' declares" in message or "no domain" in message
    _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch)


# ------------------------------------------------------------------------------- paths in contracts


@pytest.mark.parametrize("path", ["../" * 30 + "etc/passwd", "/etc/passwd", "shop/../../../outside.csv"],
                         ids=["dotdot-etc-passwd", "absolute", "dotdot-inside-the-glob"])
def test_source_path_outside_the_landing_zone_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch,
                                                          path: str) -> None:
    """A bronze ``source.path`` is a glob *in* the landing zone; an absolute path or ``..`` would ingest any
    file the process can read (``os.path.join`` drops the landing zone before an absolute path)."""
    (tiny_root / "outside.csv").write_text("order_id,customer,amount\n1,ann,1.00\n")
    contract = tiny_root / ORDERS

    def change(data):
        data["schema"][0]["customProperties"][1]["value"]["path"] = path

    _edit_yaml(contract, change)
    _refused(tiny_root, contract, "schema[0].customProperties")
    _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch)


@pytest.mark.parametrize("path", ["../" * 30 + "etc/passwd", "/etc/hostname", "../../outside.sql"],
                         ids=["dotdot-etc-passwd", "absolute", "sql-outside-the-domain"])
def test_transform_outside_the_domain_folder_is_refused(tiny_root: Path, tmp_path: Path, monkeypatch,
                                                         path: str) -> None:
    """A ``transform`` is a SQL file of the domain: another file may be anyone's, and its text would be echoed
    in error messages."""
    (tiny_root / "outside.sql").write_text("select customer, sum(amount) as total from silver.orders group by 1")
    contract = tiny_root / ORDERS

    def change(data):
        data["schema"][2]["customProperties"].append({"property": "transform", "value": path})

    _edit_yaml(contract, change)
    _refused(tiny_root, contract, "schema[2].customProperties")
    _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch)


# -------------------------------------------------------------------------------- names in landed data


def test_a_csv_header_cannot_inject_sql(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    """A landed file's header is data, not an identifier the contract vouched for: it must be quoted before it
    reaches SQL. This header closes ``read_csv``'s ``columns`` struct and appends a ``COPY … TO`` of its own."""
    target = tmp_path / "pwned.csv"
    header = ("order_id,customer,amount,\"x': 'VARCHAR'}, auto_detect=false) LIMIT 1); "
              f"COPY (SELECT 42 AS pwned) TO '{target}'; SELECT * FROM (SELECT 1 AS y, {{'z\"")
    (tiny_root / ".mesh" / "landing" / "shop" / "orders.csv").write_text(header + "\n1,ann,10.00,q\n")
    output = _run_writes_nothing_outside_the_lake(tiny_root, tmp_path, monkeypatch)
    assert not target.exists()
    assert "raw_orders" in output


# ----------------------------------------------------------------------------------- ports themselves


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.parametrize("position", [0, 1, 2])
def test_port_refuses_an_unsafe_key_part_before_building_a_path(tmp_path: Path, case: str, position: int) -> None:
    key = ["shop", "gold", "order_totals"]
    key[position] = HOSTILE[case]
    root = tmp_path / "lake"
    with pytest.raises(PortError, match=r"(domain|layer|table) .* is not a safe identifier"):
        Port(str(root), tuple(key))
    assert not root.exists() and _files(tmp_path) == set()


@pytest.mark.parametrize("table", ["t", "raw_orders__rejects", "a" * 63, "a" * 63 + REJECTS_SUFFIX, "a_1__b"])
def test_port_accepts_safe_keys_and_rejects_ports(tmp_path: Path, table: str) -> None:
    port = Port(str(tmp_path), ("shop", "bronze", table))
    assert port.path.endswith(f"/shop/bronze/{table}")


@pytest.mark.parametrize("table", ["a" * 64, "a" * 64 + REJECTS_SUFFIX, "__rejects", "t__rejects\n", "t__Rejects"])
def test_port_refuses_near_misses(tmp_path: Path, table: str) -> None:
    with pytest.raises(PortError):
        Port(str(tmp_path), ("shop", "bronze", table))


def test_port_keys_from_lists_and_wrong_shapes(tmp_path: Path) -> None:
    assert Port(str(tmp_path), ["shop", "gold", "t"]).key == ("shop", "gold", "t")  # Dagster AssetKey.path
    for bad in [("shop", "gold"), ("shop", "gold", "t", "x"), ("shop", "gold", 3), "shop/gold/t"]:
        with pytest.raises(PortError):
            Port(str(tmp_path), bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("named", ["../../../../etc", "..", "20260101T000000000000Z-abc/../../x", ""])
def test_a_snapshot_id_naming_a_path_is_refused(tmp_path: Path, named) -> None:
    port = Port(str(tmp_path / "lake"), ("shop", "gold", "t"))
    staged = port.new_snapshot("run-1")
    duckdb.sql(f"COPY (SELECT 1 AS v) TO '{staged.data_file}' (FORMAT parquet)")
    port.publish(staged.id)
    with pytest.raises(PortError, match="not a snapshot id"):
        port.snapshot(named)
    with pytest.raises(PortError, match="not a snapshot id"):
        port.new_snapshot("run-2", named or "..")
    with pytest.raises(PortError, match="neither an Iceberg snapshot id"):  # time travel: an id or a time only
        port.current_snapshot(as_of=named)


def test_storage_root_is_the_only_place_ports_write(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    port = Port(str(root), ("shop", "bronze", "raw_orders" + REJECTS_SUFFIX))
    snapshot = port.new_snapshot("run-1")
    duckdb.sql(f"COPY (SELECT 1 AS v) TO '{snapshot.data_file}' (FORMAT parquet)")
    port.publish(snapshot.id)
    assert all(root in p.parents for p in _files(tmp_path))
    assert os.path.commonpath([snapshot.path, str(root)]) == str(root)


def test_the_tiny_mesh_itself_runs(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    """The checks above do not refuse a well-formed mesh."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    result = CliRunner().invoke(app, ["run", "--root", str(tiny_root)])
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------ DuckDB file-system lockdown


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    out = {name: tmp_path / name for name in ("lake", "landing", "tmp", "elsewhere")}
    for folder in out.values():
        folder.mkdir()
    (out["landing"] / "orders.csv").write_text("order_id,amount\n1,10.5\n2,3.0\n")
    (out["elsewhere"] / "secret.csv").write_text("k,v\nsecret,42\n")
    return out


def _locked(places: dict[str, Path], **engine) -> duckdb.DuckDBPyConnection:
    return DuckDBEngine(temp_directory=str(places["tmp"]), **engine).connect(
        str(places["lake"]), allowed_directories=[str(places["lake"]), str(places["landing"])])


def test_a_locked_connection_cannot_read_etc_passwd(places) -> None:
    con = _locked(places)
    with pytest.raises(duckdb.PermissionException, match=r'Cannot access file "/etc/passwd"'):
        con.execute("SELECT * FROM read_csv('/etc/passwd')")
    for sql in ["SELECT * FROM read_text('/etc/passwd')", "SELECT * FROM glob('/etc/*')",
                f"SELECT * FROM read_csv('{places['elsewhere']}/secret.csv')",
                f"SELECT * FROM read_csv('{places['landing']}/../elsewhere/secret.csv')",
                f"COPY (SELECT 1 AS v) TO '{places['elsewhere']}/out.csv'",
                f"ATTACH '{places['elsewhere']}/x.duckdb'", "INSTALL httpfs", "LOAD httpfs",
                "SELECT * FROM read_csv('https://example.com/x.csv')"]:
        with pytest.raises(duckdb.PermissionException):
            con.execute(sql)
    assert not (places["elsewhere"] / "out.csv").exists()


def test_a_locked_connection_still_does_a_steps_work(places) -> None:
    """read_csv of landing files, COPY of a new snapshot into the lake, read_parquet of ports, Python
    functions, Ibis (the checks) and spilling beyond the memory limit into temp_directory."""
    import ibis
    import pyarrow as pa

    con = _locked(places, memory_limit="40MB", threads=1)
    snapshot = places["lake"] / "shop" / "bronze" / "orders" / "snapshots" / "s1"
    snapshot.mkdir(parents=True)  # ports create snapshot folders through fsspec, not DuckDB
    rows = con.execute(f"COPY (SELECT *, filename AS f FROM read_csv('{places['landing']}/*.csv', filename = true)) "
                       f"TO '{snapshot}/part-0.parquet' (FORMAT parquet)").fetchall()
    assert rows == [(2,)]
    assert con.execute(f"SELECT sum(amount) FROM read_parquet('{places['lake']}/*/*/*/snapshots/*/*.parquet')"
                       ).fetchall()[0][0] == 13.5
    con.create_function("shout", lambda v: pa.array([s.upper() for s in v.to_pylist()]), ["VARCHAR"], "VARCHAR",
                        type="arrow")
    assert con.execute("SELECT shout('a')").fetchall() == [("A",)]
    con.execute(f"CREATE VIEW orders AS SELECT * FROM read_csv('{places['landing']}/orders.csv')")
    t = ibis.duckdb.from_connection(con).table("orders")  # as checks.run_rules does
    assert con.execute(ibis.to_sql(t.count(), dialect="duckdb")).fetchall() == [(2,)]
    spilled = con.execute("SELECT count(DISTINCT s) FROM (SELECT md5(range::VARCHAR) AS s FROM range(2500000) "
                          "ORDER BY s)").fetchall()
    assert spilled == [(2500000,)]


def test_a_locked_connection_cannot_be_unlocked_by_sql(places) -> None:
    con = _locked(places)
    for sql in ["SET enable_external_access = true", "RESET enable_external_access",
                "SET allowed_directories = ['/']", "SET allowed_paths = ['/etc/passwd']",
                "RESET allowed_directories", f"SET temp_directory = '{places['elsewhere']}'"]:
        with pytest.raises(duckdb.Error):
            con.execute(sql)
    with pytest.raises(duckdb.PermissionException):
        con.execute("SELECT * FROM read_csv('/etc/passwd')")


def test_symbolic_links_do_not_escape_the_lockdown(places) -> None:
    (places["lake"] / "passwd.csv").symlink_to("/etc/passwd")
    (places["landing"] / "out").symlink_to(places["elsewhere"], target_is_directory=True)
    con = _locked(places)
    for sql in [f"SELECT * FROM read_csv('{places['lake']}/passwd.csv')",
                f"SELECT * FROM read_csv('{places['landing']}/out/secret.csv')",
                f"COPY (SELECT 1 AS v) TO '{places['landing']}/out/written.csv'"]:
        with pytest.raises(duckdb.PermissionException):
            con.execute(sql)
    assert not (places["elsewhere"] / "written.csv").exists()


def test_a_prefix_is_a_folder_not_a_string_prefix(places) -> None:
    sibling = places["landing"].parent / "landing_evil"
    sibling.mkdir()
    (sibling / "x.csv").write_text("a\n1\n")
    with pytest.raises(duckdb.PermissionException):
        _locked(places).execute(f"SELECT * FROM read_csv('{sibling}/x.csv')")


def test_a_locked_connection_works_on_a_registered_fsspec_file_system(places) -> None:
    """memory:// stands in for s3:// (tests/test_ports.py): writes, globbed reads, and nothing outside."""
    import uuid

    root = f"memory://lake-{uuid.uuid4().hex}"
    con = DuckDBEngine().connect(root, allowed_directories=[root, str(places["landing"])])
    con.execute(f"COPY (SELECT 1 AS v) TO '{root}/shop/gold/t/snapshots/s1/part-0.parquet' (FORMAT parquet)")
    assert con.execute(f"SELECT v FROM read_parquet('{root}/shop/gold/t/snapshots/*/*.parquet')").fetchall() == [(1,)]
    assert con.execute(f"SELECT count(*) FROM read_csv('{places['landing']}/orders.csv')").fetchall() == [(2,)]
    for sql in ["SELECT * FROM read_parquet('memory://other/x.parquet')", "SELECT * FROM read_csv('/etc/passwd')"]:
        with pytest.raises(duckdb.PermissionException):
            con.execute(sql)


def test_without_allowed_directories_nothing_changes(places) -> None:
    con = DuckDBEngine().connect(str(places["lake"]))  # the signature every call site uses today
    assert con.execute(f"SELECT count(*) FROM read_csv('{places['elsewhere']}/secret.csv')").fetchall() == [(1,)]
    assert con.execute("SELECT current_setting('enable_external_access')").fetchall() == [(True,)]
