"""The Spark engine: dagster-pyspark's ``LazyPySparkResource``, so the JVM starts only when a Spark step runs.

``local[*]`` by default; ``spark.master`` and any Spark property come from ``mesh.yaml`` ``spark`` or the
environment (``MESH_SPARK_MASTER``, ``MESH_SPARK_CONF``), so moving to a cluster is configuration, not code
(docs/scaling.md). Spark's own ``spark-defaults.conf`` (``SPARK_CONF_DIR``) and ``PYSPARK_SUBMIT_ARGS`` apply too.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from dagster_pyspark import LazyPySparkResource

MASTER_ENV, CONF_ENV = "MESH_SPARK_MASTER", "MESH_SPARK_CONF"
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

    def session(self) -> Any:
        """A new ``pyspark.sql.SparkSession`` sharing this resource's SparkContext; starts the JVM on first use."""
        # a failing query is reported by the step, in one line; pyspark would also log its JVM stack trace
        logging.getLogger("SQLQueryContextLogger").setLevel(logging.CRITICAL)
        return self.spark_session.newSession()

    @staticmethod
    def path(url: str) -> str:
        """A port or landing path as Spark's Hadoop file systems name it: fsspec's ``s3://`` is ``s3a://``;
        ``gs://``, ``abfs://``, ``abfss://`` and local paths are unchanged."""
        return "s3a://" + url[len("s3://"):] if url.startswith("s3://") else url
