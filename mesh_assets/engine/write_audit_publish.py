"""One table's step: write–audit–publish, written once over the engine interface (mesh_assets.engine.interface).

1. register every input as a relation over the files of its port's current Iceberg snapshot (its masked copy
   when the table's domain reads it masked), and ``previous.<table>``, in a session confined to the step's sandbox
   (:func:`step_sandbox`);
2. build the output on the table's engine (bronze: after comparing the files' headers with the contract,
   ``schema_drift``) and compare its columns and types with the contract (``schema``) before writing anything;
3. conform it to the contract and write it as Parquet files into a new staging folder of its port (bronze: also
   its rejects port), unless the build wrote them itself (a dbt model): no reader sees them;
4. run the contract's rules on that snapshot, and profile it (sensitive columns: counts only);
5. publish only if no blocking check failed: one Iceberg commit per port registering the staged files
   (mesh_assets.engine.ports.Port.publish), an output port with sensitive columns after committing its masked
   copy (mesh_assets.engine.masked_copy); expire old snapshots. Otherwise the staging folders are marked
   unpublished; a step that fails discards them.

Other domains' ports are read as the exact files of their current snapshot: the masked copy's when the reading
domain sees sensitive columns masked, the clear ones otherwise. No step session has a masking function.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from mesh_assets.contract.model import PARTITION_CHECK, PartitionColumns, Partitioning, Rule, Table, Window
from mesh_assets.contract.rules import rule_query
from mesh_assets.engine.checks import redact_samples, run_rules
from mesh_assets.engine.duckdb_engine import DuckDBEngine, contract_types
from mesh_assets.engine.ingestion import (REJECTS_SAMPLE, detect_drift, drift_outcome, ingestion_outcomes, rejects_key,
                                          source_files, table_ports)
from mesh_assets.engine.interface import BuildJob, Engine, EngineSession, Output, Sandbox
from mesh_assets.engine.masked_copy import Masking, masking_for, write_masked_copy
from mesh_assets.engine.outcomes import CheckOutcome, schema_outcome, weighted_passes
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.ports import DATA, Port, Snapshot
from mesh_assets.engine.profile import PROFILE_FILE, profile_relation, write_profile
from mesh_assets.engine.python_transforms import python_source
from mesh_assets.engine.step_folders import new_spill_folder
from mesh_assets.errors import MeshError, PortError, TransformError, TransientError
from mesh_assets.governance.access import runtime_access, sensitive_columns
from mesh_assets.settings import MeshSettings
from mesh_assets.sql.functions import FunctionNotAllowed, check_sql
from mesh_assets.sql.inputs import PREVIOUS, InputRef
from mesh_assets.sql.lineage import column_lineage
from mesh_assets.sql.partition_filter import filter_inputs, partition_key, window_predicate

REJECTS_SCHEMA = "_rejects"  # the relation a bronze step's staged rejects are read from for their sample
# A partitioned step reads the rest of its table (the current files outside its window) as ``<layer>.<table>__rest``.
REST_SUFFIX = "__rest"
KEY_RULES = ("primary_key", "duplicates")  # whole-table rules: a key stays unique across partitions
# A range is built one partition at a time only when its inputs hold at least this many rows per partition;
# below, DuckDB's PARTITION_BY write of the whole range costs less (docs/partitions.md)
PARTITION_ROWS_MIN = 50_000


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


def write_audit_publish(table: Table, inputs: list[InputRef], *, engine: Engine, duckdb: DuckDBEngine,
                        storage: PortStorage, settings: MeshSettings, run_id: str,
                        references: dict[str, InputRef] | None = None, rule_inputs: list[InputRef] | None = None,
                        producers: dict[tuple[str, str, str], Path] | None = None, window: Window | None = None,
                        partitioned_inputs: dict[tuple[str, str, str], PartitionColumns] | None = None
                        ) -> TableResult:
    """Build ``table`` from its inputs on ``engine`` into a new snapshot of its port and publish it if its checks
    allow (the module docstring). ``duckdb`` writes the masked copy at publication, whatever the engine.

    ``window``: a partitioned table's partition(s) to build (docs/partitions.md). Its bronze step reads the
    landed files of those partitions; its SQL reads each input of ``partitioned_inputs`` (port key → partition
    columns) filtered to the window (mesh_assets.sql.partition_filter) and only the files that may hold its
    rows; the rows are written one file per partition, checked (``partition_window``: every row in the window;
    primary key and unique rules on the staged rows with the rest of the table), and published by replacing
    only the window's files (mesh_assets.engine.ports.Port.publish).

    ``inputs`` are the ports the transform reads; ``references`` the tables its foreign-key rules check
    against, by rule name (the table itself for a self-reference); ``rule_inputs`` the tables its SQL rules
    read (registered like inputs, by the names the rules use); ``producers`` the contract file of each other
    domain's port among them. Those ports are read as their contracts allow now (mesh_assets.governance.access):
    sensitive columns masked unless granted.

    Raises:
        MeshError: the salt variable is unset, or the engine cannot start (the message says how to fix it).
        AccessError: the table reads a port its domain may no longer read.
        TransformError: an input has no published snapshot, the source files, SQL, Python or dbt model fail (the
            message names the table, the file and the fix). Nothing is published then.
        TransientError: the engine failed on I/O, a lost connection or memory (mesh_assets.errors.is_transient;
            retried by the step's retry policy).
    """
    references = references or {}
    reads = list({ref.key: ref for ref in [*inputs, *references.values(), *(rule_inputs or [])]
                  if ref.key != table.key}.values())  # each port once; self: the audited snapshot
    access = runtime_access(table.domain, reads, producers or {}, settings.governance)
    masking = masking_for(table, duckdb, settings)
    sensitive = sensitive_columns(table, settings.governance)
    window = window if table.partitioning is not None else None
    checked = {r.key for r in [*references.values(), *(rule_inputs or [])]}  # rules read every partition
    within = {key: (column, window) for key, column in (partitioned_inputs or {}).items()
              if key not in checked} if window else {}
    snapshots = list(input_snapshots(table, reads, storage, access, within))
    sql, origin = _transform(table, settings)  # before an engine starts: the allow-list is Spark's only sandbox
    by_partition = _by_partition(table, window, inputs, partitioned_inputs or {}, sql)
    unfiltered = sql
    if window is not None and sql:
        sql = filter_inputs(sql, {(r.schema, r.table): in_window(columns, window) for r in inputs
                                  if (columns := (partitioned_inputs or {}).get(r.key))})
    files = source_files(table, settings.landing_path, window) if table.layer == "bronze" else []
    spill = new_spill_folder(settings)  # DuckDB lets a connection read its spill folder: one of its own
    # of the ports it reads, a step reaches the folder of the current snapshot only (the masked copy when masked)
    sandbox = step_sandbox(table, storage, settings, [snapshot for _, snapshot in snapshots], files, str(spill))
    port = storage.port(table.key)
    written: list[tuple[Port, Snapshot]] = []

    def stage() -> Snapshot:
        snapshot = port.new_snapshot(run_id)
        written.append((port, snapshot))
        return snapshot

    try:
        with engine.open(table, sandbox) as session, discard_on_failure(written):
            for ref, snapshot in snapshots:
                session.register(ref.schema, ref.table, snapshot)
            if table.layer != "bronze":
                _register_previous(session, port, table)
            job = BuildJob(table, inputs, sql, origin, run_id, settings, stage=stage)
            if window is not None and (table.python or table.dbt_model):  # no SQL of theirs to filter
                job.windows = {f"{r.schema}.{r.table}": in_window(columns, window).sql(dialect="duckdb")
                               for r in inputs if (columns := (partitioned_inputs or {}).get(r.key))}
            first: list[CheckOutcome] = []
            if table.layer == "bronze":
                job.drift = detect_drift(session.driver, table, files)
                first.append(drift_outcome(job.drift, settings.schema_drift.bronze == "fail"))
                if first[0].blocking and not first[0].passed:
                    return TableResult(False, None, None, first, {"transform": origin})
            with _engine_errors(session, table, origin):
                output = session.build(job)
                actual = session.describe(output.relation)
            first += output.outcomes
            expected = contract_types(session.driver, table.output_columns)
            cast = session.engine_casts(actual, expected)
            schema = schema_outcome(table, {c: expected[c] if c in cast else t for c, t in actual.items()}, expected)
            if cast:
                schema.metadata["cast_by_engine"] = cast
            if not schema.passed and getattr(settings.schema_drift, table.layer) == "warn":
                schema.blocking, schema.severity = False, "warning"
            first.append(schema)
            if not schema.passed and schema.blocking:
                _discard(written)
                return TableResult(False, None, None, first, {"transform": origin})
            with _engine_errors(session, table, origin):
                parts: list[Any] | None = None
                if by_partition and window is not None:
                    parts = _landed_by_partition(table, window, settings.landing_path, files) if files else \
                        _partition_reads(table, window, inputs, snapshots, access, storage, partitioned_inputs or {})
                if parts is not None and window is not None:
                    snapshot, rows = _stage_by_partition(session, dataclasses.replace(job, sql=unfiltered), window,
                                                         actual, expected, stage, written, parts, snapshots,
                                                         partitioned_inputs or {})
                else:
                    snapshot, rows = _stage(session, output, actual, expected, stage, written, table.partitioning)
                rejects = _stage_rejects(session, job, storage, rows, written, first)
            session.register(table.layer, table.name, snapshot)
            targets = {name: f"{ref.schema}.{ref.table}" for name, ref in references.items()}
            relation, checks = f"{table.layer}.{table.name}", session.checks_session()
            if window is None:
                audited = run_rules(checks, relation, table, settings.checks.sample_rows, targets)
            else:
                windowed = {(r.schema, r.table): column for r in rule_inputs or []
                            if (column := (partitioned_inputs or {}).get(r.key))}
                audited = _audit_window(session, table, window, port, snapshot, targets, settings, windowed)
            outcomes = redact_samples([*first, *audited], sensitive)
            for outcome in outcomes if window is not None else ():  # which partition(s) each check covered
                outcome.metadata.setdefault("scope", "partition")
                outcome.metadata["partition"] = window.label
            profile = profile_relation(checks, relation, sensitive=sensitive)
            write_profile(profile, port.fs, f"{port.path}/{DATA}/{snapshot.id}/{PROFILE_FILE}")
            metadata = _metadata(table, inputs, session, output, snapshot, origin, engine.name, access)
            metadata["iceberg_table"] = port.identifier
            if window is not None:
                metadata["partition"] = window.label
            built_against = {f"{ref.schema}.{ref.table}": read.id for ref, read in snapshots
                             if ref in inputs and ref.key not in (partitioned_inputs or {})} if window else None
            publication = publish_if_passed(outcomes, written, rows, rejects[1] if rejects else None, run_id,
                                            engine.name, settings, storage.retention, masking, table, window,
                                            built_against)
            published = publication is not None
            if publication is not None:
                metadata.update({k: publication[k] for k in ("iceberg_snapshot_id", "commit_seconds")
                                 if k in publication})
                if window is not None:
                    metadata["table_rows"] = publication.get("rows")
            return TableResult(published, snapshot.id, rows, outcomes, metadata,
                               (rejects[0].id, rejects[1]) if rejects else None, profile)
    finally:
        shutil.rmtree(spill, ignore_errors=True)


def _transform(table: Table, settings: MeshSettings) -> tuple[str, str]:
    """``(sql, origin)``: a SQL transform (resolved when its contract was loaded) checked against the function
    allow-list again before it runs, and where the transform comes from.

    Raises:
        TransformError: the SQL does not parse or calls a function not on the allow-list.
    """
    if table.source is not None:
        return "", f"ingestion of {table.source.path}"
    origin = _relative(Path(table.transform_origin), settings.root)
    if table.python:
        return "", origin
    sql = (table.sql or "").strip().rstrip(";")
    try:
        check_sql(sql, origin)
    except (FunctionNotAllowed, sqlglot.errors.SqlglotError) as exc:
        raise TransformError(f"{'/'.join(table.key)}: {exc}. Nothing was published") from None
    return sql, origin


def _stage(session: EngineSession, output: Output, actual: dict[str, str], expected: dict[str, str],
           stage: Any, written: list[tuple[Port, Snapshot]], partition: Partitioning | None = None
           ) -> tuple[Snapshot, int]:
    """The staged snapshot of the output conformed to the contract, and its rows: the build's own when it
    wrote one that needs no cast, else a new one written by the engine (the build's, if any, discarded);
    ``partition`` (the table's partitioning): one file per partition."""
    relation = session.conform(output.relation, actual, expected)
    if output.staged is not None and output.rows is not None and relation is output.relation:
        return output.staged, output.rows
    _discard(written)
    snapshot = stage()
    return snapshot, session.write(relation, snapshot, partition)


def _by_partition(table: Table, window: Window | None, inputs: list[InputRef],
                  partitioned_inputs: dict[tuple[str, str, str], PartitionColumns], sql: str) -> bool:
    """Whether the step may build its ``window`` one partition at a time (:func:`_stage_by_partition`): a range
    of a table partitioned by time alone, ingested from landed files (always: :func:`_landed_by_partition`) or
    built by SQL from at least one partitioned input (when they are large enough: :func:`_partition_reads`), so
    that each partition's query reads that partition's files only (an unpartitioned input, a dimension, is read
    once and held in memory). DuckDB's ``PARTITION_BY`` write took 1.8× a plain write of the same 60 million
    rows (SF 10); built this way, the SF 10 silver ``order_lines`` range took 1.46× its unpartitioned build
    instead of 2.02× (docs/partitions.md)."""
    if window is None or len(window.keys) < 2 or table.partitioning is None or table.partitioning.static:
        return False
    if table.layer == "bronze":
        return table.source is not None
    return bool(sql) and any(ref.key in partitioned_inputs for ref in inputs)


def _partition_reads(table: Table, window: Window, inputs: list[InputRef],
                     snapshots: list[tuple[InputRef, Snapshot]], access: dict[tuple[str, str, str], Any],
                     storage: PortStorage, partitioned_inputs: dict[tuple[str, str, str], PartitionColumns]
                     ) -> list[list[tuple[InputRef, Snapshot]]] | None:
    """For each key of ``window`` (a range :func:`_by_partition` allows), each partitioned input's files of that
    partition at the Iceberg snapshot the step registered (``snapshots``; an input read masked is left out: its
    masked copy is not partitioned and is read whole) — or ``None`` when the inputs' files hold fewer than
    ``PARTITION_ROWS_MIN`` rows per partition of the range, where one ``PARTITION_BY`` write costs less than a
    query and a file per partition (docs/partitions.md). Each input's manifests are read once."""
    assert table.partitioning is not None
    read = {r.key for r in inputs if r.key in partitioned_inputs}
    pinned = [(ref, snap) for ref, snap in snapshots
              if ref.key in read and not (ref.key in access and access[ref.key].masked)]
    windows = [table.partitioning.window([key]) for key in window.keys]
    per_input = [storage.port(ref.key).partition_snapshots(partitioned_inputs[ref.key], windows, snap.iceberg_id)
                 for ref, snap in pinned]
    if sum(rows for reads in per_input for _, rows in reads) < PARTITION_ROWS_MIN * len(windows):
        return None
    return [[(ref, reads[i][0]) for (ref, _), reads in zip(pinned, per_input, strict=True)]
            for i in range(len(windows))]


def _landed_by_partition(table: Table, window: Window, landing_zone: str, files: list[str]) -> list[list[str]]:
    """For each key of ``window``, the landed files of that partition among ``files`` (the window's, as
    :func:`source_files` lists them). A bronze range is always ingested one partition at a time, whatever its
    size: a record landed in another partition's folder of the range is then filed under its folder's
    partition, which ``partition_window`` refuses, as a run of that partition alone does."""
    assert table.partitioning is not None
    landed = set(files)
    by_key = []
    for key in window.keys:
        try:
            by_key.append([f for f in source_files(table, landing_zone, table.partitioning.window([key]))
                           if f in landed])
        except TransformError:  # nothing landed for this partition: it has no row
            by_key.append([])
    return by_key


def _stage_by_partition(session: EngineSession, job: BuildJob, window: Window, actual: dict[str, str],
                        expected: dict[str, str], stage: Any, written: list[tuple[Port, Snapshot]],
                        parts: list[list[tuple[InputRef, Snapshot]]] | list[list[str]],
                        registered: list[tuple[InputRef, Snapshot]],
                        partitioned_inputs: dict[tuple[str, str, str], PartitionColumns]) -> tuple[Snapshot, int]:
    """Stage ``window`` one partition at a time into one snapshot, and its rows. Bronze (``parts``: the landed
    files of each key, :func:`_landed_by_partition`): each key's files ingested (their rejects gather in the
    session for :func:`_stage_rejects`). SQL (``parts``: the partitioned inputs' files of each key,
    :func:`_partition_reads`): the other inputs (the unpartitioned ones, and those read masked) held in memory
    (:meth:`EngineSession.cache`); for each key, the inputs registered again with that partition's files only
    and ``job``'s unfiltered SQL filtered to the partition; then the step's registrations (``registered``)
    restored for the audit. Each key writes one file ``part-<key>-0.parquet`` (none without rows); a window
    with no row, one empty file of the output's shape."""
    _discard(written)
    snapshot = stage()
    partitioning = job.table.partitioning
    assert partitioning is not None

    def relation(key: str, part: list[Any]) -> Any:
        if job.drift is not None:
            drift = dataclasses.replace(job.drift, headers={f: h for f, h in job.drift.headers.items() if f in part})
            return session.conform(session.build(dataclasses.replace(job, drift=drift)).relation, actual, expected)
        for ref, read in part:
            session.register(ref.schema, ref.table, read)
        within = partitioning.window([key])  # type: ignore[union-attr]
        sql = filter_inputs(job.sql, {(r.schema, r.table): in_window(partitioned_inputs[r.key], within)
                                      for r in job.inputs if r.key in partitioned_inputs})
        return session.conform(session.build(dataclasses.replace(job, sql=sql)).relation, actual, expected)

    if job.drift is None:
        by_key = {ref.key for ref, _ in parts[0]} if parts else set()  # type: ignore[misc]
        for ref in job.inputs:
            if ref.key not in by_key:
                session.cache(ref.schema, ref.table)
    rows = 0
    for key, part in zip(window.keys, parts, strict=True):
        if part or job.drift is None:
            rows += session.write(relation(key, part), snapshot, partitioning, key)
    for ref, read in registered:
        session.register(ref.schema, ref.table, read)
    if rows == 0:
        empty = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in expected.items())
        session.write(session.relation(f"SELECT {empty} WHERE false"), snapshot)
    return snapshot, rows


def _audit_window(session: EngineSession, table: Table, window: Window, port: Port, staged: Snapshot,
                  targets: dict[str, str], settings: MeshSettings,
                  windowed: dict[tuple[str, str], PartitionColumns] | None = None) -> list[CheckOutcome]:
    """A partitioned step's audit: ``partition_window`` (every staged row's partition columns in ``window`` and,
    for time partitions, in the staged file of its partition, ``part-<key>-<n>``: built one partition at a
    time, a transform that moves a row to another partition would file it under its inputs'; blocking), the
    contract's rules on the staged rows, except primary key and unique rules, which run on the
    staged rows together with the rows of the rest of the table (the current files outside the window: what
    the table holds once published) that repeat one of their keys (:func:`_with_colliding_rows`), so a key
    stays unique across partitions; their outcomes say ``scope``: ``table``. A SQL rule reads the partitioned
    tables of ``windowed`` (``(schema, table)`` → partition columns) in the same window, as the transform does
    (``every order has lines`` compares the window's orders with the window's lines); a foreign key still
    looks its keys up in the whole referenced table."""
    assert table.partitioning is not None
    columns, relation = table.partitioning.columns, f"{table.layer}.{table.name}"
    names = " and ".join(table.partitioning.column_names)
    checks, sample = session.checks_session(), settings.checks.sample_rows
    outside = exp.or_(in_window(columns, window).not_(),
                      *[exp.column(c, quoted=True).is_(exp.null()) for c in table.partitioning.column_names])
    count_sql = f"SELECT count(*) FROM {relation} WHERE {outside.sql(dialect='duckdb')}"
    stray = session.query(count_sql)[0][0]
    expectation = [f"{columns.time} in [{window.start}, {window.end})"] if columns.time else []
    expectation += [f"{columns.static} in ({', '.join(window.values or ())})"] if columns.static else []
    metadata = {"failing_rows": int(stray), "sql": count_sql.replace("count(*)", "*"),
                "expectation": " and ".join(expectation)}
    if table.partitioning.time is not None:  # and in its partition's file: a transform may move rows across
        misfiled = _misfiled_rows(session, table.partitioning, staged)
        metadata.update(failing_rows=int(stray + misfiled), misfiled_rows=misfiled,
                        expectation=f"{metadata['expectation']}, each in its partition's file (part-<key>-<n>)")
        stray += misfiled
    outcomes = [CheckOutcome(PARTITION_CHECK, stray == 0, True, "error",
                             f"every row's {names} is in partition {window.label}", metadata)]
    rules = [_windowed_rule(r, relation, windowed, window) if r.kind == "sql" and windowed else r
             for r in table.rules]
    by_kind = {kind: [r for r in rules if (r.kind in KEY_RULES) == kind] for kind in (False, True)}
    outcomes += run_rules(checks, relation, dataclasses.replace(table, rules=tuple(by_kind[False])), sample,
                          targets)
    rest = port.files_outside(columns, window) if by_kind[True] else ()
    if rest:
        session.register(table.layer, f"{table.name}{REST_SUFFIX}", Snapshot(staged.id, staged.path, rest))
    for rule in by_kind[True]:
        checked = relation
        if rest:  # the staged rows, and the rest of the table's rows that share a key with one of them
            checked = f"{relation}__{rule.name}"
            session.driver.execute(f'CREATE OR REPLACE VIEW "{table.layer}"."{table.name}__{rule.name}" AS '
                                   f"{_with_colliding_rows(table, rule.columns)}")
        for outcome in run_rules(checks, checked, dataclasses.replace(table, rules=(rule,)), sample):
            outcome.metadata["scope"] = "table"
            outcomes.append(outcome)
    order = {r.name: i for i, r in enumerate(table.rules)}
    return [outcomes[0], *sorted(outcomes[1:], key=lambda o: order.get(o.name, len(order)))]


def _misfiled_rows(session: EngineSession, partitioning: Partitioning, staged: Snapshot) -> int:
    """The rows of the staged files of a time-partitioned table that are not in the partition their file is
    named after (``part-<key>-<n>.parquet``). A file whose time column's Parquet statistics (the bounds of its
    row groups) lie in its key's partition is not read; only the others are scanned."""
    assert partitioning.time is not None
    time, column = partitioning.time, partitioning.time.column

    def in_file(value: str) -> str:  # the file's name holds the row's key
        return f"'%/part-' || {partition_key(value, time.key_format, time.week_start)} || '-%'"

    suspects = [row[0] for row in session.query(
        "SELECT file_name FROM (SELECT file_name, min(TRY_CAST(stats_min AS TIMESTAMP)) AS lo, "
        f"max(TRY_CAST(stats_max AS TIMESTAMP)) AS hi FROM parquet_metadata({staged.source}) "
        f"WHERE path_in_schema = {exp.Literal.string(column).sql(dialect='duckdb')} GROUP BY file_name) "
        f"WHERE lo IS NULL OR hi IS NULL OR file_name NOT LIKE {in_file('lo')} "
        f"OR file_name NOT LIKE {in_file('hi')}")]
    if not suspects:
        return 0
    files = Snapshot(staged.id, staged.path, tuple(suspects)).source
    return int(session.query(f"SELECT count(*) FROM read_parquet({files}, filename = true) WHERE filename NOT LIKE "
                             f"{in_file(exp.column(column, quoted=True).sql(dialect='duckdb'))}")[0][0])


def _windowed_rule(rule: Rule, relation: str, windowed: dict[tuple[str, str], PartitionColumns],
                   window: Window) -> Rule:
    """The SQL ``rule`` as it runs on ``relation`` in ``window``: its reads of the partitioned tables of
    ``windowed`` filtered to the window (mesh_assets.sql.partition_filter); the rule itself when it reads none."""
    query = rule_query(rule, relation)
    filtered = filter_inputs(query, {name: in_window(columns, window) for name, columns in windowed.items()})
    return rule if filtered == query else dataclasses.replace(rule, params={**rule.params, "query": filtered})


def in_window(columns: PartitionColumns, window: Window) -> exp.Expression:
    """The rows of ``window`` in a table whose partition columns are ``columns`` (the time column within its
    dates, the static column among its values), as a sqlglot predicate (mesh_assets.sql.partition_filter)."""
    time = (columns.time, window.start, window.end) if columns.time and window.start and window.end else None
    static = (columns.static, window.values) if columns.static and window.values is not None else None
    return window_predicate(time, static)


def _with_colliding_rows(table: Table, columns: tuple[str, ...]) -> str:
    """DuckDB SQL (built with sqlglot): the staged rows of ``table`` (``<layer>.<table>``) with the rows of the
    rest of the table (``<layer>.<table>__rest``) whose ``columns`` equal a staged row's: a uniqueness rule on
    it counts the keys the staged partition repeats, within itself or from another partition, while reading
    only the key columns of the rest of the table."""
    staged = exp.table_(table.name, db=table.layer, quoted=True)
    rest = exp.table_(f"{table.name}{REST_SUFFIX}", db=table.layer, quoted=True)
    same = exp.and_(*[exp.column(c, "r", quoted=True).eq(exp.column(c, "s", quoted=True)) for c in columns])
    colliding = exp.select("r.*").from_(rest.as_("r")).where(
        exp.Exists(this=exp.select("1").from_(staged.copy().as_("s")).where(same)))
    return exp.union(exp.select("*").from_(staged), colliding, distinct=False).sql(dialect="duckdb")


def _stage_rejects(session: EngineSession, job: BuildJob, storage: PortStorage, accepted: int,
                   written: list[tuple[Port, Snapshot]], outcomes: list[CheckOutcome]
                   ) -> tuple[Snapshot, int] | None:
    """A bronze step's rejects: written to a new snapshot of the rejects port (appended to ``written``), with
    ``rejected_rows`` and ``row_conservation`` appended to ``outcomes``; ``(snapshot, rows)``, or None when
    the engine keeps no record-level rejects for the format (both checks still run)."""
    if job.drift is None:
        return None
    settings, table = job.settings, job.table
    rejected = session.rejects(job)
    if rejected is None:
        outcomes += ingestion_outcomes(session.records_read(job), accepted, [], 0, settings.ingestion.rejects)
        return None
    rejects_port = storage.port(rejects_key(table))
    snapshot = rejects_port.new_snapshot(job.run_id)
    written.append((rejects_port, snapshot))
    rows = session.write(rejected, snapshot)
    session.register(REJECTS_SCHEMA, table.name, snapshot)
    sample = session.query(f'SELECT {", ".join(REJECTS_SAMPLE.values())} FROM {REJECTS_SCHEMA}."{table.name}" '
                           f"LIMIT {settings.checks.sample_rows}")
    outcomes += ingestion_outcomes(session.records_read(job), accepted, [dict(zip(REJECTS_SAMPLE, r)) for r in sample],
                                   rows, settings.ingestion.rejects)
    return snapshot, rows


def _metadata(table: Table, inputs: list[InputRef], session: EngineSession, output: Output, snapshot: Snapshot,
              origin: str, engine: str, access: dict[tuple[str, str, str], Any]) -> dict[str, Any]:
    """The materialization's metadata: snapshot, port, transform, SQL (or Python source), the inputs read
    masked, and the column lineage read from the SQL."""
    metadata: dict[str, Any] = {"snapshot": snapshot.id, "port": snapshot.path, "transform": origin,
                                "sql": output.sql, "engine": engine, **output.metadata,
                                **(python_source(table) if table.python else {})}
    masked = {a.port: list(a.masked) for a in access.values() if a.masked}
    if masked:
        metadata["masked_inputs"] = masked
    if inputs and not table.python:  # column lineage is read from SQL
        columns = {(r.schema, r.table): session.describe(session.relation(f'SELECT * FROM "{r.schema}"."{r.table}"'))
                   for r in inputs}
        metadata["column_lineage"] = column_lineage(output.sql, inputs, columns)
    return metadata


@contextlib.contextmanager
def _engine_errors(session: EngineSession, table: Table, origin: str) -> Iterator[None]:
    """Turn the engine's own errors (:meth:`EngineSession.classify`) into a :class:`TransformError` or, when a
    second try may pass, a :class:`TransientError`, naming the table and its transform."""
    try:
        yield
    except MeshError:
        raise
    except Exception as exc:
        error = session.classify(exc)
        if error is None:
            raise
        raise (TransientError if error.transient else TransformError)(
            f"{'/'.join(table.key)}: {origin} failed: {error.message}. Nothing was published; the previous "
            "snapshot stays current") from None


def step_sandbox(table: Table, storage: PortStorage, settings: MeshSettings, inputs: Sequence[Snapshot],
                 source: Sequence[str] = (), spill: str | None = None) -> Sandbox:
    """What a step's SQL may touch: exactly its declared inputs and its own output. ``inputs`` are the
    snapshots it reads (of the ports its SQL names or its contract declares): exactly their files on a local
    root, their folders on an object store (where DuckDB allows folders only); its own port's location
    (``previous.<table>`` and the new staging folder) and, for bronze, its rejects port's are added. A bronze table
    reads its ``source`` files (the files its ``source.path`` matches) and nothing else of the landing zone; on
    an object store, where files are matched by DuckDB, the folder of the glob's fixed prefix instead. Nothing
    else — not the landing zone, not the rest of its domain's folder — is reachable; ``spill`` is the step's own
    spill folder."""
    own = table_ports(table)
    local = "://" not in storage.root or storage.root.startswith("file://")
    files = [f for s in inputs for f in (s.files or (s.glob,))] if local else []
    directories = [*([] if local else [s.path for s in inputs]), *(storage.port(key).location for key in own)]
    if "://" in settings.landing_path and table.source is not None:
        fixed = re.split(r"[*?\[]", table.source.path)[0].rpartition("/")[0]
        directories.append(f"{settings.landing_path.rstrip('/')}/{fixed}".rstrip("/"))
        return Sandbox(storage.root, tuple(directories), tuple(files), spill)
    return Sandbox(storage.root, tuple(directories), (*files, *source), spill)


def _register_previous(session: EngineSession, port: Port, table: Table) -> None:
    """The relation ``previous.<table>``: the table's own published snapshot (an empty relation of the
    contract's shape before the first publication), for transforms that carry values over from one run to the
    next."""
    try:
        session.register(PREVIOUS, table.name, port.current_snapshot())
    except PortError:
        session.register_empty(PREVIOUS, table.name, table.output_columns)


def input_snapshots(table: Table, reads: list[InputRef], storage: PortStorage, access: dict[tuple[str, str, str], Any],
                    within: dict[tuple[str, str, str], tuple[PartitionColumns, Window]] | None = None
                    ) -> Iterator[tuple[InputRef, Snapshot]]:
    """Each port in ``reads`` with the files ``table``'s domain reads, for any engine to register as a plain
    relation: the current snapshot's masked copy when ``access`` (port key → ``mesh_assets.governance.access.Access``)
    masks columns, else the current snapshot — of a port in ``within`` (key → its partition columns and a
    window), only the files that may hold rows of the window (mesh_assets.engine.ports.Port.current_snapshot).

    Raises:
        TransformError: a port has no published snapshot, or must be read masked and its current snapshot has
            no masked copy (the message names the table, the port and says to run the producer again).
    """
    for ref in reads:
        masked = access[ref.key].masked if ref.key in access else ()
        port = storage.port(ref.key)
        try:
            snapshot = port.current_masked(masked) if masked else port.current_snapshot(
                within=(within or {}).get(ref.key))
        except PortError as exc:
            raise TransformError(f"{'/'.join(table.key)} reads {ref.schema}.{ref.table}: {exc}") from None
        yield ref, snapshot


def _discard(written: list[tuple[Port, Snapshot]]) -> None:
    """Delete every snapshot in ``written`` and empty it."""
    for port, snapshot in written:
        port.discard(snapshot.id)
    written.clear()


@contextlib.contextmanager
def discard_on_failure(written: list[tuple[Port, Snapshot]]) -> Iterator[None]:
    """Delete every snapshot in ``written`` (filled inside the block) if the block raises: a step that fails
    leaves no staging snapshot behind, whichever engine wrote it."""
    try:
        yield
    except Exception:
        _discard(written)
        raise


def publish_if_passed(outcomes: list[CheckOutcome], written: list[tuple[Port, Snapshot]], rows: int,
                      rejected: int | None, run_id: str, engine: str, settings: MeshSettings, keep: int,
                      masking: Masking | None = None, table: Table | None = None, window: Window | None = None,
                      built_against: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The publish step of write–audit–publish: when no blocking check in ``outcomes`` failed, commit the
    table's masked copy when ``masking`` says so (:func:`write_masked_copy`: a published snapshot always has
    one), then commit ``written`` (the table's staging folder first in the list, then its rejects', ``rejected``
    rows) — the rejects first, so the table never shows data whose rejects are not visible — each in one
    Iceberg commit recording rows, run, engine and the severity-weighted check results in the snapshot's
    summary (mesh_assets.engine.ports.Port.publish; ``table``'s contract types are checked against the Iceberg
    schema), and expire each port's snapshots beyond ``keep`` (``PortStorage.retention``, from ``mesh.yaml``
    ``retention.snapshots``). Returns the table's new snapshot (:meth:`Port.snapshot_info`) with
    ``commit_seconds``, the wall time of its commit; ``None`` when a blocking check failed: every staging
    folder is then marked unpublished, naming the failed checks. ``window``: a partitioned table's files
    replace only that window's, in its masked copy too (its rejects port, unpartitioned, is replaced whole);
    ``built_against`` (``<schema>.<table>`` → publication) the versions of the unpartitioned inputs the window
    was built from, recorded in the commit's summary (mesh_assets.engine.ports.INPUTS).

    Raises:
        TransientError, TransformError: the masked copy could not be written; PortError: a commit failed or
            gave up after concurrent writers won (mesh_assets.engine.ports.COMMIT_ATTEMPTS). Nothing of the
            table is published then.
    """
    if any(o.blocking and not o.passed for o in outcomes):
        failed = ", ".join(o.name for o in outcomes if o.blocking and not o.passed)
        for written_port, written_snapshot in written:
            written_port.mark_unpublished(written_snapshot.id, f"blocking check(s) failed: {failed}")
        return None
    (port, snapshot), *rejects = written
    if masking is not None:
        write_masked_copy(port, snapshot, masking, run_id, table.partitioning if table is not None else None,
                          window)
    for rejects_port, rejects_snapshot in rejects:
        rejects_port.publish(rejects_snapshot.id, {"rows": rejected, "run_id": run_id, "engine": engine})
        rejects_port.prune(keep)
    passed, total = weighted_passes(outcomes, settings.checks.severity_weights)
    sensitive = sensitive_columns(table, settings.governance) if table is not None else ()
    started = time.perf_counter()
    info = port.publish(snapshot.id, {"rows": rows, "run_id": run_id, "engine": engine,
                                      "quality": {"passed": passed, "total": total}, "inputs": built_against},
                        columns=table.output_columns if table is not None else None, sensitive=sensitive,
                        partitioning=table.partitioning if table is not None else None, window=window)
    info["commit_seconds"] = round(time.perf_counter() - started, 4)
    port.prune(keep)
    return info


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
