"""One table's materialization on Spark: the same write–audit–publish as on DuckDB (mesh_assets.materialize).

1. register every input as a temporary view over its port's current snapshot (its masked copy when masked);
2. translate the transform from DuckDB's dialect with sqlglot and compare its output with the contract;
3. write a new snapshot of Parquet files (bronze: also its rejects snapshot), cast to the contract's types;
4. run the contract's rules and the profile on that snapshot, in Spark;
5. publish only if no blocking check failed (an output port with sensitive columns with its masked copy,
   written by DuckDB from the Spark-written files: mesh_assets.materialize.publish_if_passed).

Types: Spark's typing rules differ from DuckDB's in width and precision (a sum of ``DECIMAL(15,2)`` is
``DECIMAL(25,2)`` on Spark, ``DECIMAL(38,2)`` on DuckDB; a sum of integers is ``BIGINT``, not ``HUGEINT``). Such a
difference is cast to the contract's type and listed in the ``schema`` check's ``cast_by_engine``; a column of
another kind (text where the contract says a number) fails ``schema`` as on DuckDB. So a port has the same
Parquet types whichever engine wrote it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mesh_assets.access import runtime_access, sensitive_columns
from mesh_assets.checks import redact_samples, run_rules
from mesh_assets.column_lineage import column_lineage
from mesh_assets.contract_model import Table
from mesh_assets.errors import MeshError, PortError, TransformError, failure_class
from mesh_assets.ingestion import (REJECTS_SAMPLE, detect_drift, drift_outcome, ingestion_outcomes, rejects_key,
                                   source_files)
from mesh_assets.materialize import (TableResult, _normalised_types, _relative, discard_on_failure, input_snapshots,
                                     masking_for, publish_if_passed, step_sandbox)
from mesh_assets.outcomes import CheckOutcome, schema_outcome
from mesh_assets.ports import Port, Snapshot
from mesh_assets.profile import profile_relation, write_profile
from mesh_assets.python_transforms import python_source, run_transform
from mesh_assets.settings import MeshSettings
from mesh_assets.spark_ingestion import ingest, records_read
from mesh_assets.sql_functions import FunctionNotAllowed
from mesh_assets.sql_inputs import PREVIOUS, InputRef
from mesh_assets.sql_session import (SparkSqlSession, duckdb_type, same_family, spark_message, spark_type, to_spark,
                                     view_name)
from resources import DuckDBEngine, PortStorage, SparkEngine


def materialize_table_spark(table: Table, inputs: list[InputRef], *, spark: SparkEngine, duckdb: DuckDBEngine,
                            storage: PortStorage, settings: MeshSettings, run_id: str,
                            references: dict[str, InputRef] | None = None,
                            producers: dict[tuple[str, str, str], Path] | None = None) -> TableResult:
    """Build ``table`` on Spark into a new snapshot of its port and publish it if its checks allow; arguments
    and result as :func:`mesh_assets.materialize.materialize_table`. ``duckdb`` serves the driver only: it
    normalises the contract's type names and samples landed files for schema drift, never the data.

    Raises:
        MeshError: Spark cannot start (no Java, an unreachable master).
        AccessError: the table reads a port its domain may no longer read.
        TransformError: an input has no published snapshot, or the source files or the SQL fail on Spark (the
            message names the table, the file and Spark's reason). Nothing is published then.
        TransientError: Spark lost a file, an executor or its JVM (mesh_assets.errors.is_transient; retried
            by the step's retry policy).
    """
    from pyspark.errors import PySparkException
    from py4j.protocol import Py4JError

    references = references or {}
    reads = [ref for ref in [*inputs, *references.values()] if ref.key != table.key]
    access = runtime_access(table.domain, reads, producers or {}, settings.governance)
    masking = masking_for(table, duckdb, settings)
    sensitive = sensitive_columns(table, settings.governance)
    origin = (f"ingestion of {table.source.path}" if table.source is not None
              else _relative(Path(table.transform_origin), settings.root))
    spark_sql = ""
    if table.layer != "bronze" and not table.python:
        try:  # before Spark starts: Spark SQL has no sandbox of its own, so the allow-list is the only one
            spark_sql = to_spark((table.sql or "").strip().rstrip(";"))
        except FunctionNotAllowed as exc:
            raise TransformError(f"{'/'.join(table.key)}: {origin}: {exc}. Nothing was published") from None
    try:
        session = spark.session()
    except Exception as exc:  # no Java (JAVA_GATEWAY_EXITED), an unreachable master, a bad property
        raise MeshError(f"{'/'.join(table.key)}: the Spark engine could not start a session: {spark_message(exc)}. "
                        "It needs Java 17 or later (java on PATH or JAVA_HOME) and a reachable spark.master "
                        "(mesh.yaml spark, MESH_SPARK_MASTER, MESH_SPARK_CONF; docs/scaling.md)") from None
    files = source_files(table, settings.landing_path) if table.layer == "bronze" else []
    directories, allowed_files = step_sandbox(table, storage, settings, [], files)  # the driver reads no port
    con = duckdb.connect(storage.root, allowed_directories=directories, allowed_files=allowed_files)
    try:
        for ref, snapshot in input_snapshots(table, reads, storage, access):
            _register(session, ref.schema, ref.table, snapshot)
        first: list[CheckOutcome] = []
        drift = rejected = None
        if table.layer == "bronze":
            drift = detect_drift(con, table, files)
            first.append(drift_outcome(drift, settings.schema_drift.bronze == "fail"))
            if first[0].blocking and not first[0].passed:
                return TableResult(False, None, None, first, {"transform": origin})
            frame, rejected = ingest(session, table, drift, run_id)
            sql = (f"-- Spark's {table.source.format} reader (contract's columns and types, rejects kept) "  # type: ignore[union-attr]
                   f"of {', '.join(drift.headers)}")
        elif table.python:
            from pyspark.sql import DataFrame

            _register_previous(session, storage.port(table.key), table)
            frames = {f"{r.schema}.{r.table}": session.table(view_name(r.schema, r.table))
                      for r in [*inputs, InputRef(PREVIOUS, table.name, table.key)]}
            frame = run_transform(table, frames, session, DataFrame, "spark")
            sql = python_source(table)["sql"]
        else:
            sql = (table.sql or "").strip().rstrip(";")
            _register_previous(session, storage.port(table.key), table)
            frame = session.sql(spark_sql)
        expected = _normalised_types(con, table.output_columns)
        actual = {f.name: duckdb_type(f.dataType) for f in frame.schema.fields}
        cast = {c: f"{actual[c]} → {t}" for c, t in expected.items()
                if c in actual and actual[c] != t and same_family(actual[c], t)}
        schema = schema_outcome(table, {c: expected[c] if c in cast else t for c, t in actual.items()}, expected)
        if cast:
            schema.metadata["cast_by_engine"] = cast
        if not schema.passed and getattr(settings.schema_drift, table.layer) == "warn":
            schema.blocking, schema.severity = False, "warning"
        first.append(schema)
        if not schema.passed and schema.blocking:
            return TableResult(False, None, None, first, {"transform": origin})
        frame = _conform(frame, actual, expected)
        port = storage.port(table.key)
        written: list[tuple[Port, Snapshot]] = []
        with discard_on_failure(written):
            snapshot = port.new_snapshot(run_id)
            written.append((port, snapshot))
            rows = _write(session, frame, snapshot)
            rejects = None
            if rejected is not None and drift is not None:
                rejects_port = storage.port(rejects_key(table))
                rejects_snapshot = rejects_port.new_snapshot(run_id)
                written.append((rejects_port, rejects_snapshot))
                rejected_rows = _write(session, rejected, rejects_snapshot)
                sample = (_read(session, rejects_snapshot).select(*REJECTS_SAMPLE.values())
                          .limit(settings.checks.sample_rows).collect())
                sample_rows = [dict(zip(REJECTS_SAMPLE, r)) for r in sample]
                first += ingestion_outcomes(records_read(session, table, drift), rows, sample_rows, rejected_rows,
                                            settings.ingestion.rejects)
                rejects = (rejects_port, rejects_snapshot, rejected_rows)
            elif drift is not None:  # Parquet and JSON: no record-level rejects
                first += ingestion_outcomes(records_read(session, table, drift), rows, [], 0,
                                            settings.ingestion.rejects)
            _register(session, table.layer, table.name, snapshot)
            sql_session = SparkSqlSession(session)
            targets = {name: f"{ref.schema}.{ref.table}" for name, ref in references.items()}
            relation = f"{table.layer}.{table.name}"
            outcomes = redact_samples([*first, *run_rules(sql_session, relation, table, settings.checks.sample_rows,
                                                          targets)], sensitive)
            profile = profile_relation(sql_session, relation, sensitive=sensitive)
            write_profile(profile, port.fs, f"{port.path}/snapshots/{snapshot.id}/profile.json")
            metadata: dict[str, Any] = {"snapshot": snapshot.id, "port": snapshot.path, "transform": origin,
                                        "sql": sql, "engine": "spark", **(python_source(table) if table.python else {})}
            masked = {a.port: list(a.masked) for a in access.values() if a.masked}
            if masked:
                metadata["masked_inputs"] = masked
            if inputs and not table.python:  # column lineage is read from SQL
                columns = {(r.schema, r.table): {name: kind for name, _, kind in
                                                 sql_session.columns(f"{r.schema}.{r.table}")} for r in inputs}
                metadata["column_lineage"] = column_lineage(sql, inputs, columns)
            published = publish_if_passed(outcomes, written, rows, rejects[2] if rejects else None, run_id,
                                          "spark", settings, masking)
            return TableResult(published, snapshot.id, rows, outcomes, metadata,
                               (rejects[1].id, rejects[2]) if rejects else None, profile)
    except (PySparkException, Py4JError) as exc:
        raise failure_class(exc)(f"{'/'.join(table.key)}: {origin} failed on Spark: {spark_message(exc)}. Nothing "
                                 "was published; the previous snapshot stays current") from None
    finally:
        con.close()
        session.catalog.clearCache()  # ingestion caches the parsed files; a step runs alone in its process
        for view in session.catalog.listTables():
            if view.isTemporary:
                session.catalog.dropTempView(view.name)


def _register(session: Any, schema: str, name: str, snapshot: Snapshot) -> None:
    """The temporary view ``<schema>__<name>`` over ``snapshot``'s Parquet files (a port's snapshot or its
    masked copy)."""
    _read(session, snapshot).createOrReplaceTempView(view_name(schema, name))


def _register_previous(session: Any, port: Port, table: Table) -> None:
    """``previous.<table>``: the table's published snapshot, or an empty relation of the contract's shape."""
    try:
        _register(session, PREVIOUS, table.name, port.current_snapshot())
    except PortError:
        empty = ", ".join(f"CAST(NULL AS {spark_type(t)}) AS `{c}`" for c, t in table.output_columns.items())
        session.sql(f"SELECT {empty} WHERE false").createOrReplaceTempView(view_name(PREVIOUS, table.name))


def _conform(frame: Any, actual: dict[str, str], expected: dict[str, str]) -> Any:
    """``frame`` as the contract says: its columns in order, cast to the contract's Spark types (missing: null,
    extra: dropped), so the Parquet types equal a DuckDB port's."""
    from pyspark.sql import functions as F

    return frame.select(*[(F.col(f"`{c}`") if c in actual else F.lit(None)).cast(spark_type(t)).alias(c)
                          for c, t in expected.items()])


def _write(session: Any, frame: Any, snapshot: Snapshot) -> int:
    """Write ``frame`` as zstd Parquet files into ``snapshot``'s folder; its rows, read back from the files."""
    frame.write.mode("append").option("compression", "zstd").parquet(SparkEngine.path(snapshot.path))
    return _read(session, snapshot).count()


def _read(session: Any, snapshot: Snapshot) -> Any:
    """``snapshot``'s Parquet files as a DataFrame (its folder also holds JSON: the profile, the markers)."""
    return session.read.option("pathGlobFilter", "*.parquet").parquet(SparkEngine.path(snapshot.path))

