"""The DuckDB engine (mesh_assets.engine.interface): one fresh in-memory connection per step, inputs as views over port
snapshots, the output written with ``COPY … TO … (FORMAT parquet)``.

Nothing is shared between steps, so nothing can be locked (docs/architecture.md): DuckDB allows one writer per
database file, which breaks a shared ``.duckdb`` file under a multiprocess executor. :class:`DuckDBEngine` is
also the Dagster resource (``duckdb``) that holds the connections' limits; every other engine uses it for what
is not the table's data (type names, landed files' headers, masked copies).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

import dagster as dg
import duckdb
import fsspec
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem

from mesh_assets.contract.model import Partitioning, Table
from mesh_assets.engine.ingestion import REJECTS_COLUMNS, ingestion_sql, records_read, rejects_sql
from mesh_assets.engine.interface import BuildJob, EngineError, Output, Sandbox
from mesh_assets.engine.ports import Snapshot
from mesh_assets.engine.python_transforms import run_transform
from mesh_assets.errors import MeshError, error_message, is_transient
from mesh_assets.sql.inputs import PREVIOUS
from mesh_assets.sql.partition_filter import partition_key

MASK_FUNCTION = "mesh_mask"
PYTHON_OUTPUT = "python_output"  # the view of a Python transform's returned relation


class DuckDBEngine(dg.ConfigurableResource):
    """Opens in-memory DuckDB connections with the mesh's limits.

    Attributes:
        threads: worker threads per connection (``None``: DuckDB's default, the number of cores).
        memory_limit: DuckDB memory limit such as ``"4GB"`` (``None``: DuckDB's default, 80 % of RAM).
        temp_directory: where DuckDB spills intermediate results beyond ``memory_limit`` (``None``: DuckDB's
            default, ``.tmp`` in the working directory).
        query_log: a folder to record every statement of every connection in (env ``MESH_DUCKDB_QUERY_LOG``;
            ``python -m benchmarks`` replays them without the framework to measure its overhead).
    """

    name: ClassVar[str] = "duckdb"
    threads: int | None = None
    memory_limit: str | None = None
    temp_directory: str | None = None
    query_log: str | None = None

    @contextlib.contextmanager
    def open(self, table: Table, sandbox: Sandbox) -> Iterator[DuckDBStep]:
        """A step's session (mesh_assets.engine.interface.Engine.open): a new connection confined to ``sandbox``,
        spilling to ``sandbox.spill``; closed with :meth:`close` (its statements logged) when the block ends."""
        con = self.connect(sandbox.storage_root, allowed_directories=sandbox.directories,
                           allowed_files=sandbox.files, spill_directory=sandbox.spill)
        try:
            yield DuckDBStep(self, con)
        finally:
            self.close(con, "__".join(table.key))

    def connect(self, storage_root: str | None = None, *,
                allowed_directories: Sequence[str] | None = None,
                allowed_files: Sequence[str] = (), spill_directory: str | None = None) -> duckdb.DuckDBPyConnection:
        """A new in-memory connection. For a non-local ``storage_root`` (``s3://``, ``gs://``, ``abfs://``) the
        root's fsspec file system is registered so DuckDB reads and writes ports through it.

        ``allowed_directories`` (default ``None``: no restriction) locks the connection's file access down once
        its own setup is done: SQL on it may then read and write only under these directories (local paths or
        fsspec URLs: a step's own port, the ports it reads); ``allowed_files`` adds single local files (a bronze
        step's source files, so it reads no other file of their landing folder).
        Anything else (``read_csv('/etc/passwd')``, ``COPY … TO '/tmp/x'``, ``ATTACH``, ``glob('/etc/*')``,
        URLs, installing or loading extensions) raises ``duckdb.PermissionException`` ("Permission Error: Cannot
        access file …"). DuckDB resolves symbolic links and ``..`` before comparing, so neither escapes.
        Spilling to ``temp_directory`` and Python functions (``create_function``) keep working; since DuckDB
        lets the connection read its spill folder, a step passes ``spill_directory``, a folder of its own, so
        its SQL cannot read what other steps spilled. A query cannot
        undo it: with external access off DuckDB refuses to re-enable it or to change ``allowed_directories``,
        ``allowed_paths`` or ``temp_directory`` (DuckDB 2.0). ``lock_configuration`` is not set: Ibis, which the
        checks run through, sets ``timezone`` and ``python_enable_replacements`` on the connection it is given.
        """
        con = duckdb.connect(":memory:")
        if self.query_log:
            con.execute("CALL enable_logging('QueryLog')")
        if self.threads:
            con.execute(f"SET threads = {int(self.threads)}")
        if self.memory_limit:
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
        spill = spill_directory or self.temp_directory
        if spill:
            con.execute(f"SET temp_directory = '{spill.replace(chr(39), chr(39) * 2)}'")
        con.execute("SET preserve_insertion_order = false")  # lets COPY stream large results in parallel
        con.execute("SET enable_progress_bar = false")  # the run shows its own progress
        if storage_root and "://" in storage_root:
            fs, _ = fsspec.core.url_to_fs(storage_root)
            if not isinstance(fs, LocalFileSystem):
                con.register_filesystem(fs)
        if allowed_directories is not None:
            self.restrict(con, allowed_directories, allowed_files)
        return con

    @staticmethod
    def restrict(con: duckdb.DuckDBPyConnection, allowed_directories: Sequence[str],
                 allowed_files: Sequence[str] = ()) -> None:
        """Lock ``con``'s file access down to ``allowed_directories`` and the local ``allowed_files`` (see
        :meth:`connect`); also used on the connection dbt-duckdb opens for a model (mesh_assets.engine.dbt_plugin)."""
        prefixes = []
        for location in allowed_directories:
            if not location:
                continue
            if "://" in location and not location.startswith("file://"):
                # A registered fsspec file system may list paths with a leading '/' (memory://), which
                # DuckDB then sees as proto:///path: allow both spellings of the same place.
                protocol, path = location.split("://", 1)
                prefixes += [f"{protocol}://{path.strip('/')}/", f"{protocol}:///{path.strip('/')}/"]
            else:
                local = Path(location.removeprefix("file://")).expanduser().resolve()
                prefixes.append(f"{str(local).rstrip('/')}/")
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in prefixes)
        con.execute(f"SET allowed_directories = [{listed}]")  # must precede disabling external access
        files = ", ".join("'" + str(Path(f).resolve()).replace("'", "''") + "'" for f in allowed_files)
        con.execute(f"SET allowed_paths = [{files}]")
        con.execute("SET enable_external_access = false")

    def close(self, con: duckdb.DuckDBPyConnection, label: str) -> None:
        """Close ``con``; with ``query_log`` set, first write its statements, in order, to
        ``<query_log>/<nanoseconds>-<label>.json`` (a JSON list of SQL strings)."""
        if self.query_log:
            rows = con.execute("SELECT message FROM duckdb_logs WHERE type = 'QueryLog' ORDER BY timestamp"
                               ).fetchall()
            statements = [r[0] for r in rows if "duckdb_logs" not in r[0]]
            folder = Path(self.query_log)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{time.time_ns()}-{label}.json").write_text(json.dumps(statements))
        con.close()

    @staticmethod
    def register_view(con: duckdb.DuckDBPyConnection, schema: str, name: str, snapshot: Snapshot,
                      where: str = "") -> None:
        """Create the view ``schema.name`` over ``snapshot``'s Parquet files (exactly the files of a port's
        Iceberg snapshot, or of its masked copy for readers who see sensitive columns masked; a staging
        folder's files: the view itself masks nothing), of the rows of the predicate ``where`` (DuckDB SQL
        built by the framework, mesh_assets.sql.partition_filter; empty: every row)."""
        con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        rows = f" WHERE {where}" if where else ""
        con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{name}" AS SELECT * FROM {snapshot.read_sql}{rows}')

    @staticmethod
    def enable_masking(con: duckdb.DuckDBPyConnection, salt: bytes) -> None:
        """Register the masking function ``mesh_mask`` on ``con``: HMAC-SHA256 keyed by ``salt`` (RFC 2104), 64
        hex characters, null stays null. Only the private connection that writes a port's masked copy
        (mesh_assets.engine.masked_copy.write_masked_copy) has it: on a connection running a reader's or a
        transform's SQL it would be an oracle (any guessable value could be masked and compared). The salt stays
        in this process's memory, in no SQL text."""
        def mask(values: pa.Array) -> pa.Array:
            return pa.array([None if v is None else hmac.new(salt, v.encode(), hashlib.sha256).hexdigest()
                             for v in values.to_pylist()], pa.string())

        con.create_function(MASK_FUNCTION, mask, ["VARCHAR"], "VARCHAR", type="arrow")


# A partitioned write's temporary folder in the staging folder, and the column it partitions by (not in the files).
PARTITIONS_FOLDER, PARTITION_COLUMN = "_partitions", "__mesh_partition"
# DuckDB buffers up to this many rows per partition and thread before writing them out; at its default (524,288)
# a range run of 79 months held the whole SF 1 wide table in memory (5.8 GB, 16 s); at 20,000 1.0 GB and 13 s
# (docs/partitions.md)
PARTITION_FLUSH_ROWS = 20_000


def partition_value(partitioning: Partitioning) -> str:
    """DuckDB SQL: a row's partition value, which names its data file — the time column's key
    (mesh_assets.sql.partition_filter.partition_key), ``-`` and the static column's value."""
    time, static = partitioning.time, partitioning.static
    parts = [partition_key(f'"{time.column}"', time.key_format, time.week_start)] if time else []
    parts += [f'CAST("{static.column}" AS VARCHAR)'] if static else []
    return f"concat_ws('-', {', '.join(parts)})"


def flatten_partitions(snapshot: Snapshot) -> None:
    """Move the files of a ``PARTITION_BY`` write into ``snapshot``'s folder :data:`PARTITIONS_FOLDER` flat into
    the staging folder as ``part-<value>-<n>.parquet`` (the value URL-decoded, as DuckDB's folder names encode
    it), and remove that folder."""
    fs, base = fsspec.core.url_to_fs(snapshot.path)
    folder = f"{base.rstrip('/')}/{PARTITIONS_FOLDER}"
    for n, path in enumerate(sorted(fs.find(folder))):
        value = unquote(path[len(folder) + 1:].split("/", 1)[0].removeprefix(f"{PARTITION_COLUMN}="))
        fs.mv(path, f"{base.rstrip('/')}/part-{value}-{n}.parquet")
    if fs.exists(folder):
        fs.rm(folder, recursive=True)


class DuckDBStep:
    """A step's session on DuckDB (mesh_assets.engine.interface.EngineSession): relations are SQL text over the views
    of one sandboxed in-memory connection ``con``, which is also the session's ``driver``."""

    def __init__(self, engine: DuckDBEngine, con: duckdb.DuckDBPyConnection):
        self.engine, self.con, self.driver = engine, con, con

    def register(self, schema: str, name: str, snapshot: Snapshot) -> None:
        self.engine.register_view(self.con, schema, name, snapshot)
        self.con.execute(f'DROP TABLE IF EXISTS temp.main."{schema}.{name}"')  # a cache of it (:meth:`cache`)

    def cache(self, schema: str, name: str) -> None:
        """A temporary table of the relation's rows, named ``<schema>.<name>``, under its view."""
        cached = f'temp.main."{schema}.{name}"'
        self.con.execute(f'CREATE OR REPLACE TEMP TABLE "{schema}.{name}" AS SELECT * FROM "{schema}"."{name}"')
        self.con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{name}" AS SELECT * FROM {cached}')

    def register_empty(self, schema: str, name: str, columns: Mapping[str, str]) -> None:
        empty = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in columns.items())
        self.con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        self.con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{name}" AS SELECT {empty} WHERE false')

    def relation(self, sql: str) -> str:
        return sql

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return self.con.execute(sql).fetchall()

    def build(self, job: BuildJob) -> Output:
        """Bronze: DuckDB's typed ``read_csv`` (or Parquet, JSON) of the files with rejects kept
        (mesh_assets.engine.ingestion); Python: the view of the relation ``transform(inputs, con)`` returns; SQL:
        the transform itself."""
        table = job.table
        if job.drift is not None:
            sql = ingestion_sql(table, job.drift, job.run_id, job.settings.ingestion.max_line_size)
            return Output(sql, sql)
        if table.python:
            frames = {f"{r.schema}.{r.table}": self.con.sql(f'SELECT * FROM "{r.schema}"."{r.table}"')
                      for r in job.inputs}
            for name, rows in job.windows.items():  # a partitioned table's step: its partitions' rows only
                frames[name] = frames[name].filter(rows)
            frames[f"{PREVIOUS}.{table.name}"] = self.con.sql(f'SELECT * FROM {PREVIOUS}."{table.name}"')
            run_transform(table, frames, self.con, duckdb.DuckDBPyRelation, "duckdb").create_view(PYTHON_OUTPUT)
            return Output(f"SELECT * FROM {PYTHON_OUTPUT}", f"SELECT * FROM {PYTHON_OUTPUT}")
        return Output(job.sql, job.sql)

    def describe(self, relation: str) -> dict[str, str]:
        return {name: ctype for name, ctype, *_ in self.con.execute(f"DESCRIBE {relation}").fetchall()}

    def engine_casts(self, actual: Mapping[str, str], expected: Mapping[str, str]) -> dict[str, str]:
        """None: the SQL is DuckDB's, so a type that differs is the SQL's to cast (silently casting would hide
        lost precision)."""
        return {}

    def conform(self, relation: str, actual: Mapping[str, str], expected: Mapping[str, str]) -> str:
        if dict(actual) == dict(expected):
            return relation
        columns = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' if c in actual else f'CAST(NULL AS {t}) AS "{c}"'
                            for c, t in expected.items())
        return f"SELECT {columns} FROM ({relation}) AS drifted"

    def write(self, relation: str, snapshot: Snapshot, partition: Partitioning | None = None,
              key: str | None = None) -> int:
        """One ``COPY``. With ``partition`` (the table's partitioning): ``PARTITION_BY`` the partition's value
        (the time column's key, ``-`` and the static column's value), each partition's files then moved flat into
        the staging folder as ``part-<value>-<n>.parquet`` (the value as DuckDB's folder names it, URL-decoded:
        ``part-MIDDLE EAST-4.parquet``; no ``key=value`` folder a reader could take for a
        column); one empty file when there is no row, so the staging folder always has the output's shape.
        With ``key`` (``relation`` holds that one partition's rows: mesh_assets.engine.write_audit_publish builds a
        range one partition at a time when that costs less than ``PARTITION_BY``), one plain ``COPY`` into
        ``part-<key>-0.parquet``, removed when it has no row. That write keeps each join's sides as the SQL has
        them (DuckDB's ``build_side_probe_side`` optimizer off): one partition of a fact table is smaller than the
        dimensions it joins, so DuckDB would build its hash tables on the partition and write the rows in a
        dimension's order, which zstd compresses far worse than the fact's own order (the SF 10
        ``order_lines_wide``: 6.4 GB against 4.1 GB, costlier to write and to read again: docs/partitions.md)."""
        if key is not None:
            fs, base = fsspec.core.url_to_fs(snapshot.path)
            name = f"part-{key}-0.parquet"
            target = f"{snapshot.path}/{name}".replace("'", "''")
            self.con.execute("SET disabled_optimizers = 'build_side_probe_side'")
            try:
                rows = int(self.con.execute(f"COPY ({relation}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
                                            ).fetchall()[0][0])
            finally:
                self.con.execute("RESET disabled_optimizers")
            if rows == 0:
                fs.rm(f"{base.rstrip('/')}/{name}")
            return rows
        if partition is None:
            data_file = snapshot.data_file.replace("'", "''")
            return int(self.con.execute(f"COPY ({relation}) TO '{data_file}' (FORMAT parquet, COMPRESSION zstd)"
                                        ).fetchall()[0][0])
        self.con.execute(f"SET partitioned_write_flush_threshold = {PARTITION_FLUSH_ROWS}")
        target = f"{snapshot.path}/{PARTITIONS_FOLDER}".replace("'", "''")
        rows = int(self.con.execute(
            f"COPY (SELECT *, {partition_value(partition)} AS {PARTITION_COLUMN} FROM ({relation}) AS output) "
            f"TO '{target}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY ({PARTITION_COLUMN}))").fetchall()[0][0])
        flatten_partitions(snapshot)
        if rows == 0:
            return self.write(relation, snapshot)
        return rows

    def rejects(self, job: BuildJob) -> str:
        """The records the typed scan rejected (DuckDB's ``reject_errors``), or an empty relation of the same
        shape when no file was scanned (Parquet, JSON, no file)."""
        scanned = self.con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'reject_errors'"
                                   ).fetchall()
        if scanned[0][0]:
            return rejects_sql(job.run_id)
        return "SELECT " + ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in REJECTS_COLUMNS.items()) + " WHERE false"

    def records_read(self, job: BuildJob) -> int:
        assert job.drift is not None
        return records_read(self.con, job.table, job.drift, job.settings.ingestion.max_line_size)

    def checks_session(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def classify(self, exc: BaseException) -> EngineError | None:
        return EngineError(error_message(exc), is_transient(exc)) if isinstance(exc, duckdb.Error) else None


def contract_types(con: duckdb.DuckDBPyConnection, columns: Mapping[str, str]) -> dict[str, str]:
    """Contract types (column → ``physicalType``) as DuckDB prints them (``INT`` → ``INTEGER``,
    ``DECIMAL(15,2)`` kept), for comparison with :meth:`DuckDBStep.describe`, on any DuckDB connection ``con``.

    Raises:
        MeshError: a type is not a DuckDB type.
    """
    select = ", ".join(f'CAST(NULL AS {ctype}) AS "{name}"' for name, ctype in columns.items())
    try:
        return {name: ctype for name, ctype, *_ in con.execute(f"DESCRIBE SELECT {select}").fetchall()}
    except duckdb.Error as exc:
        raise MeshError(f"a physicalType is not a DuckDB type: {error_message(exc)}") from None
