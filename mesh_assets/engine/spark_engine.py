"""The Spark engine (mesh_assets.engine.interface): dagster-pyspark's ``LazyPySparkResource``, so the JVM starts only
when a Spark step runs.

``local[*]`` by default; ``spark.master`` and any Spark property come from ``mesh.yaml`` ``spark`` or the
environment (``MESH_SPARK_MASTER``, ``MESH_SPARK_CONF``), so moving to a cluster is configuration, not code
(docs/scaling.md). Spark's own ``spark-defaults.conf`` (``SPARK_CONF_DIR``) and ``PYSPARK_SUBMIT_ARGS`` apply too.

Types: Spark's typing rules differ from DuckDB's in width and precision (a sum of ``DECIMAL(15,2)`` is
``DECIMAL(25,2)`` on Spark, ``DECIMAL(38,2)`` on DuckDB; a sum of integers is ``BIGINT``, not ``HUGEINT``). Such a
difference is cast to the contract's type and listed in the ``schema`` check's ``cast_by_engine``; a column of
another kind (text where the contract says a number) fails ``schema`` as on DuckDB. So a port has the same
Parquet types whichever engine wrote it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import sqlglot
from dagster_pyspark import LazyPySparkResource

from mesh_assets.contract.model import Partitioning, Table
from mesh_assets.engine.duckdb_engine import DuckDBEngine
from mesh_assets.engine.interface import BuildJob, EngineError, Output, Sandbox
from mesh_assets.engine.ports import Snapshot
from mesh_assets.engine.python_transforms import python_source, run_transform
from mesh_assets.engine.spark_ingestion import ingest, records_read, spark_path
from mesh_assets.engine.sql_session import (
    SparkSqlSession,
    duckdb_type,
    same_family,
    spark_message,
    spark_type,
    to_spark,
    view_name,
)
from mesh_assets.errors import MeshError, TransformError, is_transient
from mesh_assets.sql.functions import FunctionNotAllowed
from mesh_assets.sql.inputs import PREVIOUS

MASTER_ENV, CONF_ENV = "MESH_SPARK_MASTER", "MESH_SPARK_CONF"
PYTHON_ENV, PYTHON_CONF = "PYSPARK_PYTHON", "spark.pyspark.python"
# What the mesh needs of every session, whatever the configuration says:
REQUIRED_CONF = {
    # TIMESTAMP WITH TIME ZONE as Parquet INT64 micros, adjusted to UTC (Spark's default INT96 is deprecated and
    # reads back without a time zone), so a Spark port has exactly the types a DuckDB port has.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # DuckDB's TIMESTAMP has no time zone: so does a timestamp literal or cast in translated SQL.
    "spark.sql.timestampType": "TIMESTAMP_NTZ",
    "spark.sql.session.timeZone": "UTC",
    # SQL may read ports only through the views a step registers, never a path (parquet.`/any/path`)
    "spark.sql.runSQLOnFiles": "false",
}
DEFAULT_CONF = {
    "spark.ui.showConsoleProgress": "false",  # the run shows its own progress
    "spark.sql.shuffle.partitions": "8",  # Spark's 200 suits a cluster, not local[*]; set it for yours
}


def spark_config(master: str, conf: dict[str, Any]) -> dict[str, str]:
    """The session's properties: the mesh's defaults, then ``conf`` (``mesh.yaml`` ``spark.conf``), then
    ``MESH_SPARK_CONF`` (a JSON object), then ``spark.master`` (``MESH_SPARK_MASTER``, else ``master``), then
    :data:`REQUIRED_CONF`.

    Raises:
        ValueError: ``MESH_SPARK_CONF`` is not a JSON object (the message names the variable).
    """
    extra = os.environ.get(CONF_ENV)
    try:
        from_env = json.loads(extra) if extra else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{CONF_ENV} is not JSON ({exc.msg}); set it to an object such as "
                         '{"spark.executor.memory": "8g"}') from None
    if not isinstance(from_env, dict):
        raise ValueError(f"{CONF_ENV} must be a JSON object of Spark properties, such as "
                         '{"spark.executor.memory": "8g"}')
    merged = {**DEFAULT_CONF, **conf, **from_env, "spark.master": os.environ.get(MASTER_ENV) or master,
              **REQUIRED_CONF}
    return {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in merged.items()}


class SparkEngine(LazyPySparkResource):
    """A lazily started SparkSession (``spark_config``: Spark properties, see :func:`spark_config`).

    Each step works in its own :meth:`session` (``newSession``: same SparkContext, its own temporary views and
    SQL settings), so steps never see each other's views.
    """

    name: ClassVar[str] = "spark"

    @contextlib.contextmanager
    def open(self, table: Table, sandbox: Sandbox) -> Iterator[SparkStep]:
        """A step's session (mesh_assets.engine.interface.Engine.open): a new Spark session, and a DuckDB connection on
        the driver confined to ``sandbox`` (it samples landed files' headers, never the data). Its temporary views
        and cached files are dropped when the block ends.

        Raises:
            MeshError: Spark cannot start (no Java, an unreachable master, a bad property).
        """
        try:
            session = self.session()
        except Exception as exc:  # no Java (JAVA_GATEWAY_EXITED), an unreachable master, a bad property
            raise MeshError(f"{'/'.join(table.key)}: the Spark engine could not start a session: "
                            f"{spark_message(exc)}. It needs Java 17 or later (java on PATH or JAVA_HOME) and a "
                            "reachable spark.master (mesh.yaml spark, MESH_SPARK_MASTER, MESH_SPARK_CONF; "
                            "docs/scaling.md)") from None
        driver = DuckDBEngine().connect(sandbox.storage_root, allowed_directories=sandbox.directories,
                                        allowed_files=sandbox.files, spill_directory=sandbox.spill)
        try:
            yield SparkStep(session, driver)
        finally:
            driver.close()
            session.catalog.clearCache()  # ingestion caches the parsed files; a step runs alone in its process
            for view in session.catalog.listTables():
                if view.isTemporary:
                    session.catalog.dropTempView(view.name)

    def session(self) -> Any:
        """A new ``pyspark.sql.SparkSession`` sharing this resource's SparkContext; starts the JVM on first use,
        with the executors' Python set by :func:`executor_python`."""
        # a failing query is reported by the step, in one line; pyspark would also log its JVM stack trace
        logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
        # pyspark reads the variable once, when the SparkContext starts, and ships it with every Python function
        os.environ[PYTHON_ENV] = executor_python(self.spark_config)
        return self.spark_session.newSession()


def executor_python(conf: Mapping[str, Any]) -> str:
    """The Python interpreter executors run Python functions with (UDFs, pandas UDFs, ``mapInPandas`` in a
    Python transform): ``spark.pyspark.python`` if configured (it wins over the variable, as in Spark), else
    ``PYSPARK_PYTHON``, else this process's own interpreter (``sys.executable``).

    Spark's own default is ``python3`` on each executor's ``PATH``, which on a worker is often another Python,
    without pandas and pyarrow, or of another minor version (pyspark then refuses it). The driver's
    interpreter is right on one machine and on a cluster whose workers hold the same environment at the same
    path (one image for the run worker and the executors); elsewhere set one of the two (docs/scaling.md).
    """
    return str(conf.get(PYTHON_CONF) or os.environ.get(PYTHON_ENV) or sys.executable)


class SparkStep:
    """A step's session on Spark (mesh_assets.engine.interface.EngineSession): relations are DataFrames;
    ``<schema>.<name>`` is the temporary view ``<schema>__<name>`` (mesh_assets.engine.sql_session.view_name); SQL in
    DuckDB's dialect is translated by mesh_assets.engine.sql_session.to_spark."""

    def __init__(self, session: Any, driver: Any):
        self.session, self.driver = session, driver
        self._rejected: Any | None = None

    def register(self, schema: str, name: str, snapshot: Snapshot) -> None:
        self._read(snapshot).createOrReplaceTempView(view_name(schema, name))

    def cache(self, schema: str, name: str) -> None:
        """Spark's cache of the view; not reached today: partitioned tables run on DuckDB only."""
        self.session.catalog.cacheTable(view_name(schema, name))

    def register_empty(self, schema: str, name: str, columns: Mapping[str, str]) -> None:
        empty = ", ".join(f"CAST(NULL AS {spark_type(t)}) AS `{c}`" for c, t in columns.items())
        self.session.sql(f"SELECT {empty} WHERE false").createOrReplaceTempView(view_name(schema, name))

    def relation(self, sql: str) -> Any:
        return self.session.sql(to_spark(sql))

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in self.relation(sql).collect()]

    def build(self, job: BuildJob) -> Output:
        """Bronze: Spark's readers with the contract's types, rejects kept (mesh_assets.engine.spark_ingestion);
        Python: the DataFrame ``transform(inputs, session)`` returns; SQL: the transform translated."""
        table = job.table
        if job.drift is not None:
            assert table.source is not None
            frame, self._rejected = ingest(self.session, table, job.drift, job.run_id)
            return Output(frame, f"-- Spark's {table.source.format} reader (contract's columns and types, rejects "
                                 f"kept) of {', '.join(job.drift.headers)}")
        if table.python:
            from pyspark.sql import DataFrame

            frames = {f"{r.schema}.{r.table}": self.session.table(view_name(r.schema, r.table))
                      for r in job.inputs}
            frames[f"{PREVIOUS}.{table.name}"] = self.session.table(view_name(PREVIOUS, table.name))
            return Output(run_transform(table, frames, self.session, DataFrame, "spark"), python_source(table)["sql"])
        return Output(self.relation(job.sql), job.sql)

    def describe(self, relation: Any) -> dict[str, str]:
        return {f.name: duckdb_type(f.dataType) for f in relation.schema.fields}

    def engine_casts(self, actual: Mapping[str, str], expected: Mapping[str, str]) -> dict[str, str]:
        return {c: f"{actual[c]} → {t}" for c, t in expected.items()
                if c in actual and actual[c] != t and same_family(actual[c], t)}

    def conform(self, relation: Any, actual: Mapping[str, str], expected: Mapping[str, str]) -> Any:
        """Always a select of the contract's columns cast to its Spark types, so the Parquet types equal a
        DuckDB port's."""
        from pyspark.sql import functions as F

        return relation.select(*[(F.col(f"`{c}`") if c in actual else F.lit(None)).cast(spark_type(t)).alias(c)
                                 for c, t in expected.items()])

    def write(self, relation: Any, snapshot: Snapshot, partition: Partitioning | None = None,
              key: str | None = None) -> int:
        """Rows read back from the files written. Partitioned tables run on DuckDB only (refused when the
        definitions load, mesh_assets.orchestration.assets)."""
        if partition is not None:
            raise TransformError("a partitioned table runs on DuckDB; remove the table's engine: spark")
        relation.write.mode("append").option("compression", "zstd").parquet(spark_path(snapshot.path))
        return self._read(snapshot).count()

    def rejects(self, job: BuildJob) -> Any | None:
        """The rejected records of CSV files; ``None`` for Parquet and JSON (no record-level rejects)."""
        return self._rejected

    def records_read(self, job: BuildJob) -> int:
        assert job.drift is not None
        return records_read(self.session, job.table, job.drift)

    def checks_session(self) -> SparkSqlSession:
        return SparkSqlSession(self.session)

    def classify(self, exc: BaseException) -> EngineError | None:
        from pyspark.errors import PySparkException
        from py4j.protocol import Py4JError

        if isinstance(exc, (PySparkException, Py4JError, sqlglot.errors.SqlglotError, FunctionNotAllowed)):
            return EngineError(spark_message(exc), is_transient(exc))
        return None

    def _read(self, snapshot: Snapshot) -> Any:
        """``snapshot``'s Parquet files as a DataFrame: exactly the files of a port's Iceberg snapshot, or the
        Parquet files of a staging folder (which also holds JSON: the profile, the markers)."""
        if snapshot.files:
            return self.session.read.parquet(*(spark_path(f) for f in snapshot.files))
        return self.session.read.option("pathGlobFilter", "*.parquet").parquet(spark_path(snapshot.path))
