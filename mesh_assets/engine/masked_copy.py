"""The masked copy of an output port's snapshot, written once by its producer when it publishes
(docs/governance.md#pii-masking).

Other domains read an output port's sensitive columns masked unless granted (mesh_assets.governance.access): they read
the masked copy, its own Iceberg table ``<domain>.<layer>__<table>__masked`` (mesh_assets.engine.ports), never the
clear files. No step connection has a masking function; only the private
connection that writes the copy does, whatever engine wrote the snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import fsspec

from mesh_assets.contract.model import Partitioning, Table, Window
from mesh_assets.engine.duckdb_engine import MASK_FUNCTION, DuckDBEngine
from mesh_assets.engine.ports import Port, Snapshot
from mesh_assets.errors import error_message, failure_class
from mesh_assets.governance.access import pii_salt, sensitive_columns
from mesh_assets.settings import MeshSettings


@dataclass(frozen=True)
class Masking:
    """How the masked copy of an output port's snapshots is written: ``columns`` (the sensitive ones) become
    HMAC-SHA256 hex digests keyed by ``salt``, on a connection of ``engine``."""

    engine: DuckDBEngine
    columns: tuple[str, ...]
    salt: bytes = field(repr=False)


def masking_for(table: Table, engine: DuckDBEngine, settings: MeshSettings) -> Masking | None:
    """The masking of ``table``'s published snapshots: ``None`` unless it is an output port (gold) with
    sensitive columns (``governance.sensitive_classifications``).

    Raises:
        MeshError: the salt variable is unset or too short (mesh_assets.governance.access.pii_salt), before anything
            runs.
    """
    columns = sensitive_columns(table, settings.governance) if table.layer == "gold" else ()
    return Masking(engine, columns, pii_salt(settings.governance)) if columns else None


def write_masked_copy(port: Port, snapshot: Snapshot, masking: Masking, run_id: str = "",
                      partitioning: Partitioning | None = None, window: Window | None = None) -> Snapshot:
    """Write the masked copy of the staged ``snapshot`` of ``port`` (any engine's Parquet files) and commit it
    to the masked table (``port.masked_port()``) under the same publication id, before the clear files are
    committed; return the committed copy. The same rows and columns, each of ``masking.columns`` replaced by
    the HMAC-SHA256 hex digest (RFC 2104, 64 characters, VARCHAR) of its value as text; null stays null. Written
    on a private DuckDB connection allowed only the two staging folders, on which no other SQL runs,
    so the masking function and its salt are never within reach of a transform's or a reader's query. The
    commit's summary lists the masked columns (``mesh.masked-columns``).

    A partitioned port's copy (``partitioning``, and the staged ``window``) is partitioned the same way: each staged
    file (one partition's) masked into a file of the same name, and its commit replaces the same partitions of the
    masked table as the clear commit does (mesh_assets.engine.ports.Port.publish), so both tables hold the same
    partitions at each publication.

    Raises:
        TransientError: the files cannot be read or written (I/O); TransformError: another DuckDB error;
        PortError: the commit failed (nothing of the publication is visible then).
    """
    masked = port.masked_port()
    target = masked.new_snapshot(run_id, snapshot.id)
    engine = masking.engine
    con = engine.connect(port.root, allowed_directories=[snapshot.path, target.path])
    try:
        engine.enable_masking(con, masking.salt)
        try:
            rows = _copy_masked(con, snapshot, target, masking.columns, partitioned=partitioning is not None)
        except duckdb.Error as exc:
            raise failure_class(exc)(f"{'/'.join(port.key)}: writing the masked copy of snapshot {snapshot.id} "
                                     f"failed: {error_message(exc)}. Nothing was published") from None
    finally:
        engine.close(con, f"{'__'.join(port.key)}__masked")
    masked.publish(target.id, {"rows": rows, "run_id": run_id, "masked_columns": masking.columns},
                   partitioning=partitioning, window=window)
    return masked.current_snapshot(target.id)


def _copy_masked(con: duckdb.DuckDBPyConnection, snapshot: Snapshot, target: Snapshot, columns: Sequence[str],
                 partitioned: bool) -> int:
    """Write the masked rows of the staging folder ``snapshot`` into the staging folder ``target``; return the
    rows written. Each distinct value of a masked column is hashed once, into a temporary table joined back (a
    customer's name repeats on every one of its order lines; a null matches nothing and stays null). A
    partitioned snapshot's files are copied one by one under the same names, so each stays one partition's
    file: one plain ``COPY`` per file instead of DuckDB's ``PARTITION_BY``, which measured 1.9× slower on the
    SF 10 wide table (docs/partitions.md)."""
    for i, column in enumerate(columns):
        con.execute(f'CREATE TEMP TABLE mask_{i} AS SELECT v, {MASK_FUNCTION}(CAST(v AS VARCHAR)) AS m FROM '
                    f'(SELECT DISTINCT "{column}" AS v FROM read_parquet({snapshot.source}) '
                    f'WHERE "{column}" IS NOT NULL)')
    replace = ", ".join(f'mask_{i}.m AS "{c}"' for i, c in enumerate(columns))
    joins = " ".join(f'LEFT JOIN mask_{i} ON s."{c}" = mask_{i}.v' for i, c in enumerate(columns))

    def copy(source: str, data_file: str) -> int:
        relation = f"SELECT s.* REPLACE ({replace}) FROM read_parquet({source}) s {joins}"
        return int(con.execute(f"COPY ({relation}) TO '{data_file.replace(chr(39), chr(39) * 2)}' "
                               "(FORMAT parquet, COMPRESSION zstd)").fetchall()[0][0])

    if not partitioned:
        return copy(snapshot.source, target.data_file)
    fs, base = fsspec.core.url_to_fs(snapshot.path)
    names = sorted(path.rsplit("/", 1)[-1] for path in fs.find(base) if path.endswith(".parquet"))
    return sum(copy("'" + f"{snapshot.path}/{name}".replace("'", "''") + "'", f"{target.path}/{name}")
               for name in names)
