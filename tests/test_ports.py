"""Ports as Apache Iceberg tables: staging invisible until the one commit, rollback, retention, the masked copy's
own table, schema evolution, time travel, the previous layout refused, crashes between writing and publishing,
object stores, and two writers committing the same port at once."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path

import duckdb
import pytest
from pyiceberg.catalog.sql import SqlCatalog

from conftest import two_writers_never_tear
from mesh_assets.contract.mesh import Mesh
from mesh_assets.engine.duckdb_engine import DuckDBEngine
from mesh_assets.engine.iceberg_catalog import CATALOG_FILE
from mesh_assets.engine.masked_copy import Masking, write_masked_copy
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.ports import Port
from mesh_assets.engine.write_audit_publish import write_audit_publish
from mesh_assets.errors import MeshError, PortError


def _write(port: Port, values: list[int], run_id: str = "run-1", select: str = "") -> str:
    snapshot = port.new_snapshot(run_id)
    duckdb.sql(f"COPY (SELECT unnest({values})::BIGINT AS v{select}) TO '{snapshot.data_file}' (FORMAT parquet)")
    return snapshot.id


def _read(port: Port, as_of: str | None = None) -> list[int]:
    return sorted(r[0] for r in duckdb.sql(f"SELECT v FROM {port.current_snapshot(as_of).read_sql}").fetchall())


def _outside(root: Path, identifier: str, snapshot_id: int | None = None) -> list[tuple]:
    """The rows of ``identifier`` read with plain pyiceberg, no mesh code."""
    catalog = SqlCatalog("mesh", uri=f"sqlite:///{root}/{CATALOG_FILE}")
    return sorted(tuple(r.values()) for r in catalog.load_table(identifier).scan(snapshot_id=snapshot_id)
                  .to_arrow().to_pylist())


def test_unpublished_port_says_how_to_fix(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    assert port.current() is None and port.identifier == "d.gold__t"
    with pytest.raises(PortError, match="no published snapshot yet.*mesh run"):
        port.current_snapshot()


def test_staged_files_are_invisible_until_the_one_commit(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    first = _write(port, [1, 2, 3])
    info = port.publish(first, {"rows": 3, "run_id": "run-1"})
    assert info["snapshot"] == first and info["rows"] == 3 and info["iceberg_table"] == "d.gold__t"
    _write(port, [9], run_id="run-2")  # a crash here: written, never committed
    assert port.current()["snapshot"] == first
    assert _read(port) == [1, 2, 3]
    assert _outside(tmp_path, "d.gold__t") == [(1,), (2,), (3,)]  # any Iceberg reader sees the same
    files = port.current_snapshot().files
    assert files == (f"{tmp_path}/d/gold/t/data/{first}/part-0.parquet",)  # registered where written: no copy


def test_rollback_restores_the_previous_snapshot_and_time_travel_reads_any_kept_one(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    first = _write(port, [1, 2, 3])
    port.publish(first, {"rows": 3})
    between = time.time()
    time.sleep(0.01)
    _write(port, [9], run_id="run-2")  # failed its audit: never committed, so never a candidate
    second = _write(port, [4, 5], run_id="run-3")
    port.publish(second, {"rows": 2})
    history = port.history()
    assert [h["snapshot"] for h in history] == [first, second] and history[-1]["current"]
    first_id = history[0]["iceberg_snapshot_id"]
    assert _read(port, str(first_id)) == [1, 2, 3]  # by Iceberg snapshot id
    from datetime import UTC, datetime
    assert _read(port, datetime.fromtimestamp(between, UTC).isoformat()) == [1, 2, 3]  # by time
    with pytest.raises(PortError, match="neither an Iceberg snapshot id"):
        port.current_snapshot("yesterday")
    assert port.rollback() == first
    assert _read(port) == [1, 2, 3] and port.current()["rows"] == 3
    with pytest.raises(PortError, match="no earlier published snapshot"):
        port.rollback()
    assert port.rollback(to=second) == second and _read(port) == [4, 5]
    assert port.rollback(to=str(first_id)) == first and _read(port) == [1, 2, 3]
    with pytest.raises(PortError, match="'nope' to roll back to; published: .*" + first):
        port.rollback(to="nope")


def test_retention_expires_old_snapshots_and_deletes_their_files_never_the_current(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    ids = []
    for i in range(4):
        ids.append(_write(port, [i], run_id=f"run-{i}"))
        port.publish(ids[-1])
    port.rollback(to=ids[0])  # the oldest is current again
    refused = _write(port, [7], run_id="run-x")
    port.mark_unpublished(refused, "blocking check(s) failed: v_positive")
    assert set(port.prune(keep=2)) == {ids[1]}
    assert [h["snapshot"] for h in port.history()] == [ids[0], ids[2], ids[3]]
    assert port.snapshot_ids() == [ids[0], ids[2], ids[3], refused]  # the refused one kept for inspection
    assert _read(port) == [0]
    assert _outside(tmp_path, "d.gold__t") == [(0,)]


def test_a_masked_copy_is_its_own_table_resolved_by_publication(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    masking = Masking(DuckDBEngine(), ("v",), b"a-salt-of-16-characters")
    ids = []
    for i in range(3):
        ids.append(_write(port, [i], run_id=f"run-{i}"))
        copy = write_masked_copy(port, port.snapshot(ids[-1]), masking, f"run-{i}")
        port.publish(ids[-1], sensitive=["v"])
    masked = port.masked_port()
    assert masked.identifier == "d.gold__t__masked" and copy.id == ids[-1]
    assert masked.location == f"{tmp_path}/d/gold/t__masked"  # a sibling, never under the clear folder
    assert not copy.path.startswith(f"{port.location}/")
    digest = hmac.new(b"a-salt-of-16-characters", b"2", hashlib.sha256).hexdigest()
    assert duckdb.sql(f"SELECT v FROM {port.current_masked(['v']).read_sql}").fetchall() == [(digest,)]
    # the clear table keeps no bounds of the sensitive column in its manifests
    assert port.table().properties["write.metadata.metrics.column.v"] == "none"
    with pytest.raises(PortError, match="leaves w clear.*run its producer again"):
        port.current_masked(["v", "w"])
    port.rollback()  # the masked reader follows the clear table's current publication
    digest1 = hmac.new(b"a-salt-of-16-characters", b"1", hashlib.sha256).hexdigest()
    assert duckdb.sql(f"SELECT v FROM {port.current_masked(['v']).read_sql}").fetchall() == [(digest1,)]
    port.rollback(to=ids[2])
    fourth = _write(port, [8], run_id="run-8")
    port.publish(fourth)  # as published before its columns were classified: no masked copy
    with pytest.raises(PortError, match=f"snapshot {fourth} has no masked copy.*mesh run --domain d"):
        port.current_masked(["v"])
    port.prune(keep=2)
    kept = {h["snapshot"] for h in port.history()}
    assert {h["snapshot"] for h in masked.history()} <= kept  # a copy never outlives its publication


def test_schema_changes_between_publications_evolve_the_table(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "silver", "t"))
    port.publish(_write(port, [1], select=", 'a' AS name, 1 AS old"), columns={"v": "BIGINT", "name": "VARCHAR"})
    # a contract change: a column dropped, one added, one changing type (breaking)
    second = _write(port, [2], run_id="run-2", select=", 5 AS name, 2.5::DECIMAL(9,2) AS added")
    port.publish(second, columns={"v": "BIGINT", "name": "INTEGER", "added": "DECIMAL(9,2)"})
    schema = port.table().schema()
    assert [(f.name, str(f.field_type)) for f in schema.fields] == [("v", "long"), ("name", "int"),
                                                                   ("added", "decimal(9, 2)")]
    from decimal import Decimal
    assert _outside(tmp_path, "d.silver__t") == [(2, 5, Decimal("2.50"))]
    # nothing widens silently: a file whose type is not the contract's is never committed
    third = _write(port, [3], run_id="run-3", select=", 5 AS name, 2.5::DOUBLE AS added")
    with pytest.raises(PortError, match="column added would be stored as double.*DECIMAL"):
        port.publish(third, columns={"v": "BIGINT", "name": "INTEGER", "added": "DECIMAL(9,2)"})
    assert port.current()["snapshot"] == second


def test_a_storage_root_of_the_previous_layout_is_refused_with_the_way_out(tmp_path: Path) -> None:
    folder = tmp_path / "d" / "gold" / "t"
    (folder / "snapshots" / "20250101T000000000000Z-x").mkdir(parents=True)
    (folder / "_current.json").write_text(json.dumps({"snapshot": "20250101T000000000000Z-x", "rows": 1}))
    with pytest.raises(PortError, match="before Iceberg ports.*mesh migrate.*mesh run"):
        Port(str(tmp_path), ("d", "gold", "t")).current()


def test_an_object_store_root_needs_a_catalog_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESH_CATALOG_URI", raising=False)
    with pytest.raises(MeshError, match="not a local folder.*catalog.uri or MESH_CATALOG_URI"):
        Port("memory://lake", ("d", "gold", "t")).current()


def test_crash_between_writing_and_publishing_keeps_previous_snapshot(
    tiny_mesh: Mesh, land, monkeypatch: pytest.MonkeyPatch
) -> None:
    domain = tiny_mesh.domain("shop")
    bronze = domain.table("bronze", "raw_orders")
    storage = PortStorage(root=tiny_mesh.settings.storage_url)
    engine = DuckDBEngine()
    kwargs = dict(engine=engine, duckdb=engine, storage=storage, settings=tiny_mesh.settings)
    first = write_audit_publish(bronze, [], run_id="run-1", **kwargs)
    assert first.published and first.rows == 3
    assert first.metadata["iceberg_table"] == "shop.bronze__raw_orders" and first.metadata["commit_seconds"] > 0

    land("order_id,customer,amount\n7,zoe,5.00\n")

    def crash(self, *args, **kwargs):
        raise KeyboardInterrupt("killed between write and publish")

    monkeypatch.setattr(Port, "_commit", crash)
    with pytest.raises(KeyboardInterrupt):
        write_audit_publish(bronze, [], run_id="run-2", **kwargs)
    port = storage.port(bronze.key)
    assert len(port.snapshot_ids()) == 2  # the new files were written …
    assert port.current()["snapshot"] == first.snapshot_id  # … but the previous snapshot stays current
    rows = duckdb.sql(f"SELECT order_id FROM {port.current_snapshot().read_sql} ORDER BY 1").fetchall()
    assert rows == [(1,), (2,), (3,)]


def test_a_mesh_runs_on_an_fsspec_object_store(tiny_root: Path, instance, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """Ports on a non-local fsspec file system (``memory://`` standing in for ``s3://``), the catalog in a SQL
    database: DuckDB reads and writes through the registered file system, pyiceberg through fsspec."""
    import uuid

    from mesh_assets import connect
    from mesh_assets.contract.mesh import load_mesh
    from mesh_assets.orchestration.runner import run_mesh
    from test_access import classify_customer_pii, masked

    root = f"memory://lake-{uuid.uuid4().hex}"
    monkeypatch.setenv("MESH_STORAGE_ROOT", root)
    monkeypatch.setenv("MESH_CATALOG_URI", f"sqlite:///{tmp_path}/catalog.db")
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert summary.success, [(a.key, a.status) for a in summary.assets]
    assert not (tiny_root / ".mesh" / "lake").exists()
    port = Port(root, ("shop", "gold", "order_totals"))
    assert port.current()["rows"] == 2 and port.location.startswith("memory://")
    rows = connect(tiny_root).execute("SELECT customer, total FROM shop.order_totals ORDER BY 1").fetchall()
    assert [(c, str(t)) for c, t in rows] == [("ann", "11.50"), ("bob", "20.00")]
    classify_customer_pii(tiny_root)  # the masked copy is written and read through the file system too
    assert run_mesh(load_mesh(tiny_root), instance, ["shop"]).success
    rows = connect(tiny_root, sandbox=True).execute("SELECT customer FROM shop.order_totals ORDER BY 1").fetchall()
    assert sorted(r[0] for r in rows) == sorted(masked(c) for c in ("ann", "bob"))


@pytest.mark.slow
def test_two_processes_publishing_one_port_never_tear_it(tmp_path: Path) -> None:
    """Two writer processes publish the same port 20 rounds each through the embedded SQLite catalog."""
    two_writers_never_tear(tmp_path, rounds=20)


def test_a_tagged_snapshot_survives_retention_until_the_tag_moves(tmp_path: Path) -> None:
    """`mesh export duckdb` tags the snapshots its views read, so retention never deletes their files."""
    port = Port(str(tmp_path), ("d", "gold", "t"))
    port.publish(_write(port, [1]))
    exported = port.current_snapshot()
    port.tag("mesh-export-abc", exported.iceberg_id)
    for i in range(3):
        port.publish(_write(port, [i + 2], run_id=f"run-{i}"))
        port.prune(keep=1)
    assert exported.iceberg_id in [h["iceberg_snapshot_id"] for h in port.history()]
    assert duckdb.sql(f"SELECT v FROM {exported.read_sql}").fetchall() == [(1,)]  # the view's files are there
    port.tag("mesh-export-abc", port.current()["iceberg_snapshot_id"])  # the next export moves the tag
    port.prune(keep=1)
    assert [h["iceberg_snapshot_id"] for h in port.history()] == [port.current()["iceberg_snapshot_id"]]
    assert not Path(exported.files[0]).exists()


def test_mesh_migrate_imports_a_port_of_the_previous_layout(tmp_path: Path) -> None:
    folder = tmp_path / "d" / "gold" / "t"
    old, current = "20250101T000000000000Z-x", "20250102T000000000000Z-y"
    for snapshot, values in ((old, [1]), (current, [2, 3])):
        (folder / "snapshots" / snapshot).mkdir(parents=True)
        duckdb.sql(f"COPY (SELECT unnest({values})::BIGINT AS v) TO '{folder}/snapshots/{snapshot}/part-0.parquet' "
                   "(FORMAT parquet)")
    (folder / "masked" / current).mkdir(parents=True)
    duckdb.sql(f"COPY (SELECT 'digest' AS v) TO '{folder}/masked/{current}/part-0.parquet' (FORMAT parquet)")
    (folder / "masked" / current / "_masked.json").write_text(json.dumps({"snapshot": current, "columns": ["v"]}))
    (folder / "_current.json").write_text(json.dumps({"snapshot": current, "rows": 2, "run_id": "r"}))
    port = Port(str(tmp_path), ("d", "gold", "t"))
    assert port.migrate() == current
    assert _read(port) == [2, 3] and port.current()["rows"] == 2 and port.current()["snapshot"] == current
    assert duckdb.sql(f"SELECT v FROM {port.current_masked(['v']).read_sql}").fetchall() == [("digest",)]
    assert port.migrate() is None and (folder / "_current.json.migrated").is_file()
    assert _outside(tmp_path, "d.gold__t") == [(2,), (3,)]


def test_a_port_with_no_rows_reads_as_empty_and_its_file_goes_at_the_next_publication(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    port.publish(_write(port, []))
    empty = port.current_snapshot()
    assert len(empty.files) == 1 and _read(port) == []  # the file with no rows is the snapshot
    port.publish(_write(port, [1], run_id="run-2"))
    assert port.current_snapshot().files != empty.files and _read(port) == [1]
