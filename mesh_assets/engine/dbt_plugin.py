"""The dbt-duckdb plugin of the mesh: it gives the connection dbt opens for a model what a step's own DuckDB
connection has (mesh_assets/engine/duckdb_engine.py), so a dbt model runs under the same rules as a SQL transform.

The profile naming this plugin is the same for every step and for ``dbt parse`` (mesh_assets.contract.dbt_project
``PROFILE``, ``dbt/profiles.yml``). What differs per step is given by :func:`dbt_step`, around the step's dbt
invocation, which runs in the step's process (mesh_assets.orchestration.dbt_assets). On each connection dbt-duckdb opens
then, the plugin:

- sets the engine's limits (``threads``, ``memory_limit``) and a spill folder of the step's own;
- registers each input as a view ``<schema>.<table>`` over its port's current snapshot (the masked copy where
  the access rules mask columns; of a partitioned table's step, a partitioned input's view holds the rows of the
  step's partitions only), and the one-row view ``main.__mesh_step`` whose ``location`` is the Parquet file of
  the step's staged snapshot, where the ``mesh_snapshot`` materialization (``dbt/macros``) writes the model (of a
  partitioned table: ``partition_by``, a row's partition value, and the folder ``partitions`` it writes to);
- locks file access down to the snapshot folders the model reads, the staged snapshot's folder and the spill
  folder (``DuckDBEngine.restrict``). No masking function is registered;
- with the engine's ``query_log`` set, records the connection's statements there, as the framework's own
  connections do, so ``mesh bench`` replays dbt's work too.

Outside :func:`dbt_step` (``dbt parse``, ``dbt compile`` by hand) the connection may touch no file at all.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection
from fsspec.implementations.local import LocalFileSystem

from mesh_assets.engine.duckdb_engine import PARTITION_FLUSH_ROWS, DuckDBEngine
from mesh_assets.engine.ports import Snapshot

STEP_VIEW = "__mesh_step"  # main.__mesh_step(location, partition_by, partitions): where the model's rows go


@dataclass(frozen=True)
class StepConnection:
    """What one step's dbt connection gets: ``inputs`` as ``(schema, table, snapshot)``, the staged data
    file ``location``, the ``storage_root`` (an object store's file system is registered), the directories and
    single files the connection may touch besides its ``spill`` folder (a folder of the step's own), and the
    engine's limits (``None``: DuckDB's default). Of a partitioned table: ``windows``, the rows of the step's
    partitions in each partitioned input (``"<schema>.<table>"`` → a DuckDB predicate built by the framework),
    ``partition_by``, the DuckDB expression of a row's partition value, and ``partitions``, the folder the rows
    are written to by value (mesh_assets.engine.duckdb_engine.flatten_partitions)."""

    inputs: tuple[tuple[str, str, Snapshot], ...]
    location: str
    storage_root: str
    allowed_directories: tuple[str, ...]
    spill: str
    allowed_files: tuple[str, ...] = ()
    threads: int | None = None
    memory_limit: str | None = None
    query_log: str | None = None
    windows: tuple[tuple[str, str], ...] = ()
    partition_by: str = ""
    partitions: str = ""


_current: StepConnection | None = None
_opened: list[DuckDBPyConnection] = []  # the connections opened for the current step, to log their statements
_lock = threading.Lock()


@contextlib.contextmanager
def dbt_step(step: StepConnection) -> Iterator[None]:
    """Within the block, the connections dbt-duckdb opens in this process get ``step``'s inputs and sandbox.
    One step at a time per process (dbt's own state is per process too).

    Raises:
        RuntimeError: another step of this process is already running dbt.
    """
    global _current
    if not _lock.acquire(blocking=False):
        raise RuntimeError("a dbt model is already being built in this process; dbt runs one model at a time")
    try:
        _current = step
        yield
    finally:
        if step.query_log:
            for conn in _opened:
                DuckDBEngine(query_log=step.query_log).close(conn, "dbt")
        _opened.clear()
        _current = None
        _lock.release()


class Plugin(BasePlugin):
    """Registers the step's inputs and locks file access down on each connection dbt-duckdb opens."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.step = _current

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        step = self.step
        if step is None:
            DuckDBEngine.restrict(conn, [])
            return
        if step.query_log:
            conn.execute("CALL enable_logging('QueryLog')")
            _opened.append(conn)
        if step.threads:
            conn.execute(f"SET threads = {int(step.threads)}")
        if step.memory_limit:
            conn.execute(f"SET memory_limit = '{_quoted(step.memory_limit)}'")
        conn.execute(f"SET temp_directory = '{_quoted(step.spill)}'")
        conn.execute("SET preserve_insertion_order = false")  # lets COPY stream large results in parallel
        conn.execute("SET enable_progress_bar = false")
        if "://" in step.storage_root:
            fs, _ = fsspec.core.url_to_fs(step.storage_root)
            if not isinstance(fs, LocalFileSystem):
                conn.register_filesystem(fs)
        windows = dict(step.windows)
        for schema, table, snapshot in step.inputs:
            DuckDBEngine.register_view(conn, schema, table, snapshot, windows.get(f"{schema}.{table}", ""))
        if step.partition_by:
            conn.execute(f"SET partitioned_write_flush_threshold = {PARTITION_FLUSH_ROWS}")
        conn.execute(f"CREATE OR REPLACE VIEW main.{STEP_VIEW} AS SELECT '{_quoted(step.location)}' AS location, "
                     f"'{_quoted(step.partition_by)}' AS partition_by, '{_quoted(step.partitions)}' AS partitions")
        DuckDBEngine.restrict(conn, [*step.allowed_directories, step.spill], step.allowed_files)


def _quoted(text: str) -> str:
    return str(text).replace("'", "''")
