"""Ports: snapshots, the atomic pointer, retention, and crashes between writing and publishing."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import duckdb
import pytest

from mesh_assets.contract.mesh import Mesh
from mesh_assets.engine.duckdb_engine import DuckDBEngine
from mesh_assets.engine.masked_copy import Masking, write_masked_copy
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.ports import Port
from mesh_assets.engine.write_audit_publish import write_audit_publish
from mesh_assets.errors import PortError


def _write(port: Port, values: list[int], run_id: str = "run-1") -> str:
    snapshot = port.new_snapshot(run_id)
    duckdb.sql(f"COPY (SELECT unnest({values}) AS v) TO '{snapshot.data_file}' (FORMAT parquet)")
    return snapshot.id


def _read(port: Port) -> list[int]:
    return sorted(r[0] for r in duckdb.sql(f"SELECT v FROM read_parquet('{port.current_snapshot().glob}')").fetchall())


def test_unpublished_port_says_how_to_fix(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    assert port.current() is None
    with pytest.raises(PortError, match="no published snapshot yet.*mesh run"):
        port.current_snapshot()


def test_written_but_unpublished_snapshot_is_invisible(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    first = _write(port, [1, 2, 3])
    port.publish(first, {"rows": 3})
    _write(port, [9], run_id="run-2")  # a crash here: written, never published
    assert port.current()["snapshot"] == first
    assert _read(port) == [1, 2, 3]


def test_rollback_restores_the_last_published_snapshot_never_an_unaudited_one(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    first = _write(port, [1, 2, 3])
    port.publish(first, {"rows": 3})
    _write(port, [9], run_id="run-2")  # failed its audit: never published
    second = _write(port, [4, 5], run_id="run-3")
    port.publish(second, {"rows": 2})
    assert port.rollback() == first
    assert _read(port) == [1, 2, 3] and port.current()["rows"] == 3 and port.current()["rolled_back_from"] == second
    with pytest.raises(PortError, match="no earlier published snapshot"):
        port.rollback()
    assert port.rollback(to=second) == second and _read(port) == [4, 5]
    (tmp_path / "d/gold/t/_current.json").write_text("{broken")
    assert port.rollback() == second  # a broken pointer: back to the last published snapshot
    assert _read(port) == [4, 5]


def test_retention_keeps_the_newest_and_the_current(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    ids = []
    for i in range(4):
        ids.append(_write(port, [i], run_id=f"run-{i}"))
        port.publish(ids[-1])
    port.publish(ids[0])  # a rollback to the oldest snapshot
    deleted = port.prune(keep=2)
    assert set(deleted) == {ids[1]}
    assert port.snapshot_ids() == [ids[0], ids[2], ids[3]]
    assert _read(port) == [0]


def test_a_masked_copy_is_a_sibling_of_its_snapshot_and_goes_with_it(tmp_path: Path) -> None:
    port = Port(str(tmp_path), ("d", "gold", "t"))
    masking = Masking(DuckDBEngine(), ("v",), b"a-salt-of-16-characters")
    ids = []
    for i in range(3):
        ids.append(_write(port, [i], run_id=f"run-{i}"))
        copy = write_masked_copy(port, port.snapshot(ids[-1]), masking)
        port.publish(ids[-1])
    assert copy.path == f"{port.path}/masked/{ids[-1]}"  # beside snapshots/, never inside it
    assert not copy.path.startswith(port.current_snapshot().path)
    digest = hmac.new(b"a-salt-of-16-characters", b"2", hashlib.sha256).hexdigest()
    assert duckdb.sql(f"SELECT v FROM read_parquet('{port.current_masked(['v']).glob}')").fetchall() == [(digest,)]
    with pytest.raises(PortError, match="leaves w clear.*run its producer again"):
        port.current_masked(["v", "w"])
    assert port.prune(keep=2) == [ids[0]]
    assert sorted(p.name for p in Path(port.path, "masked").iterdir()) == ids[1:]
    unaudited = _write(port, [9], run_id="run-9")
    write_masked_copy(port, port.snapshot(unaudited), masking)
    assert port.discard(unaudited) and not Path(port.path, "masked", unaudited).exists()
    Path(port.path, "snapshots", ids[1]).rename(Path(port.path, "gone"))  # a copy whose snapshot is gone
    port.clean_orphans()
    assert sorted(p.name for p in Path(port.path, "masked").iterdir()) == [ids[2]]
    Path(port.path, "masked", ids[2], "_masked.json").unlink()  # as published before masked copies existed
    with pytest.raises(PortError, match=f"snapshot {ids[2]} has no masked copy.*mesh run --domain d"):
        port.current_masked(["v"])


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

    land("order_id,customer,amount\n7,zoe,5.00\n")

    def crash(self, snapshot_id, info=None):
        raise KeyboardInterrupt("killed between write and publish")

    monkeypatch.setattr(Port, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        write_audit_publish(bronze, [], run_id="run-2", **kwargs)
    port = storage.port(bronze.key)
    assert len(port.snapshot_ids()) == 2  # the new snapshot was written …
    assert port.current()["snapshot"] == first.snapshot_id  # … but the previous one stays current
    rows = duckdb.sql(f"SELECT order_id FROM read_parquet('{port.current_snapshot().glob}') ORDER BY 1").fetchall()
    assert rows == [(1,), (2,), (3,)]


def test_a_mesh_runs_on_an_fsspec_object_store(tiny_root: Path, instance, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ports on a non-local fsspec file system (``memory://`` standing in for ``s3://``): DuckDB reads and
    writes through the registered file system, pointers are single-object writes."""
    import uuid

    from mesh_assets import connect
    from mesh_assets.contract.mesh import load_mesh
    from mesh_assets.orchestration.runner import run_mesh
    from test_access import classify_customer_pii, masked

    root = f"memory://lake-{uuid.uuid4().hex}"
    monkeypatch.setenv("MESH_STORAGE_ROOT", root)
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert summary.success, [(a.key, a.status) for a in summary.assets]
    assert not (tiny_root / ".mesh" / "lake").exists()
    port = Port(root, ("shop", "gold", "order_totals"))
    assert port.current()["rows"] == 2
    rows = connect(tiny_root).execute("SELECT customer, total FROM shop.order_totals ORDER BY 1").fetchall()
    assert [(c, str(t)) for c, t in rows] == [("ann", "11.50"), ("bob", "20.00")]
    classify_customer_pii(tiny_root)  # the masked copy is written and read through the file system too
    assert run_mesh(load_mesh(tiny_root), instance, ["shop"]).success
    rows = connect(tiny_root, sandbox=True).execute("SELECT customer FROM shop.order_totals ORDER BY 1").fetchall()
    assert sorted(r[0] for r in rows) == sorted(masked(c) for c in ("ann", "bob"))
