"""One table's materialization: write–audit–publish on a fresh in-memory DuckDB (docs/architecture.md).

1. register every input as a view over its port's current snapshot;
2. compare the output's columns and types with the contract (``schema``; for bronze also ``schema_drift``)
   before writing anything;
3. write a new snapshot with ``COPY … TO … (FORMAT parquet)`` (bronze: also its rejects snapshot);
4. run the contract's rules on that snapshot, and profile it (sensitive columns: counts only);
5. publish (swap the pointers) only if no blocking check failed, an output port with sensitive columns after
   writing its masked copy (:func:`write_masked_copy`); prune old snapshots.

Other domains' ports are read from the folder of their current snapshot only: the masked copy when the
reading domain sees sensitive columns masked, the clear files otherwise. No step connection has a masking
function: masking is done once, by the producer, when it publishes.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import sqlglot

from mesh_assets.access import pii_salt, runtime_access, sensitive_columns
from mesh_assets.checks import redact_samples, run_rules
from mesh_assets.column_lineage import column_lineage
from mesh_assets.contracts import Table
from mesh_assets.errors import MeshError, PortError, TransformError, error_message, failure_class
from mesh_assets.ingestion import (
    REJECTS_COLUMNS,
    REJECTS_SAMPLE,
    detect_drift,
    drift_outcome,
    ingestion_outcomes,
    ingestion_sql,
    records_read,
    rejects_key,
    rejects_sql,
    source_files,
)
from mesh_assets.outcomes import CheckOutcome, schema_outcome, weighted_passes
from mesh_assets.ports import MASKED, Port, Snapshot
from mesh_assets.python_transforms import python_source, run_transform
from mesh_assets.profile import profile_relation, write_profile
from mesh_assets.settings import MeshSettings
from mesh_assets.sql_functions import FunctionNotAllowed, check_sql
from mesh_assets.sql_inputs import PREVIOUS, InputRef
from mesh_assets.step_folders import new_spill_folder
from resources import DuckDBEngine, PortStorage
from resources.duckdb_engine import MASK_FUNCTION

PYTHON_OUTPUT = "python_output"  # the view of a Python transform's returned relation


@dataclass(frozen=True)
class StagedBuild:
    """A table's output already written, by its builder, into ``snapshot``, a new unpublished snapshot of its
    port (a dbt model, mesh_assets.dbt_assets): the framework audits it there and publishes or discards it, so
    the rows are written once. ``sql`` is the transform in mesh names (for column lineage and display),
    ``origin`` its file; ``outcomes`` are the builder's own checks (dbt tests), which block publishing like the
    contract's."""

    snapshot: Snapshot
    sql: str
    origin: str
    outcomes: tuple[CheckOutcome, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class TableResult:
    """What a materialization did: ``published`` is False when a blocking check failed (the snapshots stay
    unpublished and the previous ones current). ``metadata`` is recorded on the Dagster materialization;
    ``rejects`` is ``(snapshot id, rows)`` of a bronze table's rejects port."""

    published: bool
    snapshot_id: str | None
    rows: int | None
    outcomes: list[CheckOutcome]
    metadata: dict[str, Any] = field(default_factory=dict)
    rejects: tuple[str, int] | None = None
    profile: list[dict[str, Any]] | None = None

    @property
    def failed_blocking(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if o.blocking and not o.passed]


def materialize_table(table: Table, inputs: list[InputRef], *, engine: DuckDBEngine, storage: PortStorage,
                      settings: MeshSettings, run_id: str, references: dict[str, InputRef] | None = None,
                      producers: dict[tuple[str, str, str], Path] | None = None,
                      built: StagedBuild | None = None) -> TableResult:
    """Build ``table`` from its inputs into a new snapshot of its port and publish it if its checks allow.

    ``inputs`` are the ports the transform reads; ``references`` the tables its foreign-key rules check
    against, by rule name (the table itself for a self-reference); ``producers`` the contract file of each
    other domain's port among them. Those ports are read as their contracts allow now (mesh_assets.access):
    sensitive columns masked unless granted. ``built`` is the staged snapshot a dbt model already wrote: it is
    audited and published (or discarded) where it is, instead of running the transform.

    Raises:
        AccessError: the table reads a port its domain may no longer read.
        TransformError: an input has no published snapshot, the source files or SQL fail (the message names
            the table, the file and the fix). Nothing is published then.
    """
    references = references or {}
    reads = [ref for ref in [*inputs, *references.values()] if ref.key != table.key]  # self: the audited snapshot
    access = runtime_access(table.domain, reads, producers or {}, settings.governance)
    masking = masking_for(table, engine, settings)
    sensitive = sensitive_columns(table, settings.governance)
    snapshots = list(input_snapshots(table, reads, storage, access))
    # of the ports it reads, a step reaches the folder of the current snapshot only (the masked copy when masked)
    input_folders = [snapshot.path for _, snapshot in snapshots]
    files = source_files(table, settings.landing_path) if table.layer == "bronze" else []
    directories, allowed_files = step_sandbox(table, storage, settings, input_folders, files)
    spill = new_spill_folder(settings)  # DuckDB lets a connection read its spill folder: one of its own
    con = engine.connect(storage.root, allowed_directories=directories, allowed_files=allowed_files,
                         spill_directory=str(spill))
    try:
        for ref, snapshot in snapshots:
            engine.register_view(con, ref.schema, ref.table, snapshot.glob)
        first: list[CheckOutcome] = list(built.outcomes) if built is not None else []
        drift = None
        if table.layer == "bronze":
            assert table.source is not None
            drift = detect_drift(con, table, files)
            first.append(drift_outcome(drift, settings.schema_drift.bronze == "fail"))
            if first[0].blocking and not first[0].passed:
                return TableResult(False, None, None, first, {"transform": f"ingestion of {table.source.path}"})
            sql = ingestion_sql(table, drift, run_id, settings.ingestion.max_line_size)
            origin = f"ingestion of {table.source.path}"
        elif built is not None:
            sql, origin = f"SELECT * FROM {_parquet(built.snapshot)}", built.origin
        elif table.python:
            origin = _relative(Path(table.transform_origin), settings.root)
            _register_previous(con, engine, storage.port(table.key), table)
            frames = {f"{r.schema}.{r.table}": con.sql(f'SELECT * FROM "{r.schema}"."{r.table}"')
                      for r in [*inputs, InputRef(PREVIOUS, table.name, table.key)]}
            run_transform(table, frames, con, duckdb.DuckDBPyRelation, "duckdb").create_view(PYTHON_OUTPUT)
            sql = f"SELECT * FROM {PYTHON_OUTPUT}"
        else:
            sql = (table.transform_sql() or "").strip().rstrip(";")
            origin = _relative(Path(table.transform_origin), settings.root)
            try:  # again at run: the file may have changed since the definitions were loaded
                check_sql(sql, origin)
            except (FunctionNotAllowed, sqlglot.errors.SqlglotError) as exc:
                raise TransformError(f"{'/'.join(table.key)}: {exc}. Nothing was published") from None
            _register_previous(con, engine, storage.port(table.key), table)
        actual = _describe(con, sql, origin, table)
        expected = _normalised_types(con, table.output_columns)
        schema = schema_outcome(table, actual, expected)
        # staged rows are audited as written, never rewritten: there `schema` blocks (dbt enforced the contract)
        if not schema.passed and getattr(settings.schema_drift, table.layer) == "warn" and built is None:
            schema.blocking, schema.severity = False, "warning"
            sql = _conform(sql, actual, expected)
        first.append(schema)
        port = storage.port(table.key)
        if not schema.passed and schema.blocking:
            if built is not None:  # staged data the contract refuses: never published
                port.mark_unpublished(built.snapshot.id, "blocking check(s) failed: schema")
            return TableResult(False, built.snapshot.id if built else None, None, first, {"transform": origin})
        written: list[tuple[Port, Snapshot]] = []
        with discard_on_failure(written):
            if built is not None:  # audited where its builder wrote it
                snapshot = built.snapshot
                written.append((port, snapshot))
                rows = int(con.execute(f"SELECT count(*) FROM {_parquet(snapshot)}").fetchall()[0][0])
            else:
                snapshot = port.new_snapshot(run_id)
                written.append((port, snapshot))
                rows = _copy(con, sql, snapshot, origin, table)
            rejects = None
            if drift is not None:
                rejects_port = storage.port(rejects_key(table))
                rejects_snapshot = rejects_port.new_snapshot(run_id)
                written.append((rejects_port, rejects_snapshot))
                rejected = _copy(con, _rejects_query(con, run_id), rejects_snapshot, origin, table)
                sample = con.execute(f"SELECT {', '.join(REJECTS_SAMPLE.values())} FROM "
                                     f"read_parquet('{rejects_snapshot.data_file}') "
                                     f"LIMIT {settings.checks.sample_rows}").fetchall()
                sample_rows = [dict(zip(REJECTS_SAMPLE, r)) for r in sample]
                read = records_read(con, table, drift, settings.ingestion.max_line_size)
                first += ingestion_outcomes(read, rows, sample_rows, rejected,
                                            settings.ingestion.rejects)
                rejects = (rejects_port, rejects_snapshot, rejected)
            engine.register_view(con, table.layer, table.name, snapshot.glob)
            targets = {name: f"{ref.schema}.{ref.table}" for name, ref in references.items()}
            outcomes = redact_samples([*first, *run_rules(con, f"{table.layer}.{table.name}", table,
                                                          settings.checks.sample_rows, targets)], sensitive)
            profile = profile_relation(con, f"{table.layer}.{table.name}", sensitive=sensitive)
            write_profile(profile, port.fs, f"{port.path}/snapshots/{snapshot.id}/profile.json")
            transform_sql = built.sql if built is not None else sql
            metadata: dict[str, Any] = {"snapshot": snapshot.id, "port": snapshot.path, "transform": origin,
                                        "sql": transform_sql, **(built.metadata if built is not None else {}),
                                        **(python_source(table) if table.python else {})}
            masked = {a.port: list(a.masked) for a in access.values() if a.masked}
            if masked:
                metadata["masked_inputs"] = masked
            if inputs and not table.python:  # column lineage is read from SQL
                columns = {(r.schema, r.table): _describe(con, f'SELECT * FROM "{r.schema}"."{r.table}"', origin, table)
                           for r in inputs}
                metadata["column_lineage"] = column_lineage(transform_sql, inputs, columns)
            published = publish_if_passed(outcomes, written, rows, rejects[2] if rejects else None, run_id,
                                          "duckdb", settings, masking)
            return TableResult(published, snapshot.id, rows, outcomes, metadata,
                               (rejects[1].id, rejects[2]) if rejects else None, profile)
    finally:
        engine.close(con, "__".join(table.key))
        shutil.rmtree(spill, ignore_errors=True)


def step_sandbox(table: Table, storage: PortStorage, settings: MeshSettings, input_folders: Sequence[str],
                 source: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """The directories and single files a step's SQL may touch, as ``(directories, files)`` for
    ``DuckDBEngine.connect``: exactly its declared inputs and its own output. ``input_folders`` are the folders
    of what it reads (the ports its SQL names or its contract declares, a dbt model's built database); its own
    port (``previous.<table>`` and the new snapshot) and, for bronze, its rejects port are added. A bronze
    table reads its ``source`` files (the files its ``source.path`` matches) and nothing else of the landing
    zone; on an object store, where files are matched by DuckDB, the folder of the glob's fixed prefix instead.
    Nothing else — not the landing zone, not the rest of its domain's folder — is reachable."""
    own = [table.key, *([rejects_key(table)] if table.layer == "bronze" else [])]
    directories = [*input_folders, *(f"{storage.root}/{'/'.join(key)}" for key in own)]
    if "://" in settings.landing_path and table.source is not None:
        fixed = re.split(r"[*?\[]", table.source.path)[0].rpartition("/")[0]
        directories.append(f"{settings.landing_path.rstrip('/')}/{fixed}".rstrip("/"))
        return directories, []
    return directories, list(source)


def _register_previous(con: duckdb.DuckDBPyConnection, engine: DuckDBEngine, port: Port, table: Table) -> None:
    """The view ``previous.<table>``: the table's own published snapshot (an empty relation of the contract's
    shape before the first publication), for transforms that carry values over from one run to the next."""
    try:
        engine.register_view(con, PREVIOUS, table.name, port.current_snapshot().glob)
    except PortError:
        empty = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in table.output_columns.items())
        con.execute(f'CREATE SCHEMA IF NOT EXISTS {PREVIOUS}')
        con.execute(f'CREATE VIEW {PREVIOUS}."{table.name}" AS SELECT {empty} WHERE false')


def _parquet(snapshot: Snapshot) -> str:
    """The SQL reading ``snapshot``'s Parquet files."""
    return "read_parquet('" + snapshot.glob.replace("'", "''") + "')"


def _copy(con: duckdb.DuckDBPyConnection, sql: str, snapshot: Snapshot, origin: str, table: Table) -> int:
    try:
        return int(con.execute(f"COPY ({sql}) TO '{snapshot.data_file}' (FORMAT parquet, COMPRESSION zstd)"
                               ).fetchall()[0][0])
    except duckdb.Error as exc:
        raise failure_class(exc)(f"{'/'.join(table.key)}: {origin} failed: {error_message(exc)}. Nothing was "
                            "published; the previous snapshot stays current") from None


def input_snapshots(table: Table, reads: list[InputRef], storage: PortStorage, access: dict[tuple[str, str, str], Any]
                    ) -> Iterator[tuple[InputRef, Snapshot]]:
    """Each port in ``reads`` with the files ``table``'s domain reads, for any engine to register as a plain
    view: the current snapshot's masked copy when ``access`` (port key → ``mesh_assets.access.Access``) masks
    columns, else the current snapshot.

    Raises:
        TransformError: a port has no published snapshot, or must be read masked and its current snapshot has
            no masked copy (the message names the table, the port and says to run the producer again).
    """
    for ref in reads:
        masked = access[ref.key].masked if ref.key in access else ()
        port = storage.port(ref.key)
        try:
            snapshot = port.current_masked(masked) if masked else port.current_snapshot()
        except PortError as exc:
            raise TransformError(f"{'/'.join(table.key)} reads {ref.schema}.{ref.table}: {exc}") from None
        yield ref, snapshot


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
        MeshError: the salt variable is unset or too short (mesh_assets.access.pii_salt), before anything runs.
    """
    columns = sensitive_columns(table, settings.governance) if table.layer == "gold" else ()
    return Masking(engine, columns, pii_salt(settings.governance)) if columns else None


def write_masked_copy(port: Port, snapshot: Snapshot, masking: Masking) -> Snapshot:
    """Write the masked copy of ``snapshot`` (any engine's Parquet files) into ``port``'s masked folder and
    return it: the same rows and columns, each of ``masking.columns`` replaced by the HMAC-SHA256 hex digest
    (RFC 2104, 64 characters, VARCHAR) of its value as text; null stays null. One ``COPY`` on a private DuckDB
    connection allowed only the two folders, on which no other SQL runs, so the masking function and its
    salt are never within reach of a transform's or a reader's query. ``_masked.json`` is written last.

    Raises:
        TransientError: the files cannot be read or written (I/O); TransformError: another DuckDB error.
    """
    target = port.masked(snapshot.id)
    port.fs.makedirs(f"{port.path}/{MASKED}/{snapshot.id}", exist_ok=True)
    engine = masking.engine
    con = engine.connect(port.url(port.path), allowed_directories=[snapshot.path, target.path])
    try:
        engine.enable_masking(con, masking.salt)
        source, data_file = snapshot.glob.replace("'", "''"), target.data_file.replace("'", "''")
        # each distinct value is hashed once (a customer's name repeats on every one of its order lines) and
        # joined back, a null matching nothing and staying null; the files are scanned again for the distinct
        # values rather than shared through a CTE, which DuckDB would hold whole in memory
        replace = ", ".join(f'd{i}.m AS "{c}"' for i, c in enumerate(masking.columns))
        joins = " ".join(f'LEFT JOIN (SELECT v, {MASK_FUNCTION}(CAST(v AS VARCHAR)) AS m FROM (SELECT DISTINCT '
                         f'"{c}" AS v FROM read_parquet(\'{source}\') WHERE "{c}" IS NOT NULL)) d{i} '
                         f'ON s."{c}" = d{i}.v' for i, c in enumerate(masking.columns))
        try:
            con.execute(f"COPY (SELECT s.* REPLACE ({replace}) FROM read_parquet('{source}') s {joins}) "
                        f"TO '{data_file}' (FORMAT parquet, COMPRESSION zstd)").fetchall()
        except duckdb.Error as exc:
            raise failure_class(exc)(f"{'/'.join(port.key)}: writing the masked copy of snapshot {snapshot.id} "
                                     f"failed: {error_message(exc)}. Nothing was published") from None
    finally:
        engine.close(con, f"{'__'.join(port.key)}__masked")
    port.mark_masked(snapshot.id, masking.columns)
    return target


@contextlib.contextmanager
def discard_on_failure(written: list[tuple[Port, Snapshot]]) -> Iterator[None]:
    """Delete every snapshot in ``written`` (filled inside the block) if the block raises: a step that fails
    leaves no staging snapshot behind, whichever engine wrote it."""
    try:
        yield
    except Exception:
        for port, snapshot in written:
            port.discard(snapshot.id)
        raise


def publish_if_passed(outcomes: list[CheckOutcome], written: list[tuple[Port, Snapshot]], rows: int,
                      rejected: int | None, run_id: str, engine: str, settings: MeshSettings,
                      masking: Masking | None = None) -> bool:
    """The publish step of write–audit–publish, for every engine: when no blocking check in ``outcomes``
    failed, write the table's masked copy when ``masking`` says so (:func:`write_masked_copy`: a published
    snapshot always has it), then publish ``written`` (the table's snapshot first in the list, then its rejects
    snapshot, ``rejected`` rows) — the rejects first, so the table never points at data whose rejects are not
    visible — recording rows, run, engine and the severity-weighted check results in the pointer; otherwise
    mark every written snapshot unpublished, naming the failed checks. Returns whether it published.

    Raises:
        TransientError, TransformError: the masked copy could not be written; nothing is published then.
    """
    if any(o.blocking and not o.passed for o in outcomes):
        failed = ", ".join(o.name for o in outcomes if o.blocking and not o.passed)
        for written_port, written_snapshot in written:
            written_port.mark_unpublished(written_snapshot.id, f"blocking check(s) failed: {failed}")
        return False
    (port, snapshot), *rejects = written
    if masking is not None:
        write_masked_copy(port, snapshot, masking)
    for rejects_port, rejects_snapshot in rejects:
        _publish(rejects_port, rejects_snapshot, {"rows": rejected, "run_id": run_id}, settings)
    passed, total = weighted_passes(outcomes, settings.checks.severity_weights)
    _publish(port, snapshot, {"rows": rows, "run_id": run_id, "engine": engine,
                              "quality": {"passed": passed, "total": total}}, settings)
    return True


def _publish(port: Port, snapshot: Snapshot, info: dict[str, Any], settings: MeshSettings) -> None:
    port.publish(snapshot.id, info)
    port.prune(settings.retention.snapshots)


def _rejects_query(con: duckdb.DuckDBPyConnection, run_id: str) -> str:
    """The rejected records, or an empty table of the same shape when no file was scanned."""
    scanned = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'reject_errors'").fetchall()
    if scanned[0][0]:
        return rejects_sql(run_id)
    return "SELECT " + ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in REJECTS_COLUMNS.items()) + " WHERE false"


def _conform(sql: str, actual: dict[str, str], expected: dict[str, str]) -> str:
    """``sql`` reshaped to the contract: its columns in order, cast to their types; missing ones null."""
    columns = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' if c in actual else f'CAST(NULL AS {t}) AS "{c}"'
                        for c, t in expected.items())
    return f"SELECT {columns} FROM ({sql}) AS drifted"


def _describe(con: duckdb.DuckDBPyConnection, sql: str, origin: str, table: Table) -> dict[str, str]:
    try:
        return {name: ctype for name, ctype, *_ in con.execute(f"DESCRIBE {sql}").fetchall()}
    except duckdb.Error as exc:
        raise failure_class(exc)(f"{'/'.join(table.key)}: {origin} failed: {error_message(exc)}") from None


def _normalised_types(con: duckdb.DuckDBPyConnection, columns: dict[str, str]) -> dict[str, str]:
    """Contract types as DuckDB prints them (``INT`` → ``INTEGER``, ``DECIMAL(15,2)`` kept), for comparison."""
    select = ", ".join(f'CAST(NULL AS {ctype}) AS "{name}"' for name, ctype in columns.items())
    try:
        return {name: ctype for name, ctype, *_ in con.execute(f"DESCRIBE SELECT {select}").fetchall()}
    except duckdb.Error as exc:
        raise MeshError(f"a physicalType is not a DuckDB type: {error_message(exc)}") from None


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
