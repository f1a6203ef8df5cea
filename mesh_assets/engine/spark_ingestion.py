"""Bronze ingestion on Spark: the same accepted and rejected records as on DuckDB (mesh_assets.engine.ingestion).

Schema drift is detected exactly as on DuckDB, by :func:`mesh_assets.engine.ingestion.detect_drift` on the driver: it
reads each file's header and its first 1,000 values only. The records themselves are read by Spark:

- CSV in ``PERMISSIVE`` mode with the contract's types and a ``_corrupt_record`` column: a record whose
  values do not parse, or whose number of fields is wrong, is rejected with its raw line. Spark does not know
  line numbers, so ``line_number`` is null; ``error_types`` is ``CAST``, ``MISSING COLUMNS`` or
  ``TOO MANY COLUMNS`` from a count of delimiters in the raw line (quoted delimiters count too). A record with
  bytes that are not UTF-8 (which Spark decodes as U+FFFD) is rejected as ``INVALID ENCODING``, as DuckDB
  does; its ``raw_line`` is rebuilt from its fields.
  Records are split at line breaks (``multiLine`` off, so files split across executors): a value holding a
  quoted line break makes two rejected records, never a lost one.
- Parquet and JSON by column name, cast to the contract's types; a value that does not cast fails the step
  (ANSI casts), as on DuckDB. A JSON file whose first character is ``[`` is read as one array of objects.

``records_read`` for ``row_conservation`` is a separate count of the files with every column read as text.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import fsspec

from mesh_assets.contract.model import Table
from mesh_assets.engine.ingestion import REJECTS_COLUMNS, Drift
from mesh_assets.engine.sql_session import spark_type

CORRUPT = "_corrupt_record"


def spark_path(url: str) -> str:
    """A port or landing path as Spark's Hadoop file systems name it: fsspec's ``s3://`` is ``s3a://``;
    ``gs://``, ``abfs://``, ``abfss://`` and local paths are unchanged."""
    return "s3a://" + url[len("s3://"):] if url.startswith("s3://") else url


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _source_file() -> Any:
    """The record's file as DuckDB names it: a local path without Spark's ``file:`` scheme."""
    from pyspark.sql import functions as F

    return F.regexp_replace(F.col("_metadata.file_path"), r"^file:(//)?", "").alias("_source_file")


def _csv_reader(spark: Any, table: Table, schema: str) -> Any:
    assert table.source is not None
    return (spark.read.schema(schema)
            .option("header", table.source.header).option("sep", table.source.delimiter)
            .option("quote", '"').option("escape", '"').option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT).option("enforceSchema", True))


def ingest(spark: Any, table: Table, drift: Drift, run_id: str) -> tuple[Any, Any | None]:
    """``(accepted, rejected)`` DataFrames of the files in ``drift.headers``: accepted has the contract's columns
    and Spark types plus ``_source_file`` (STRING), ``_ingested_at`` (TIMESTAMP, UTC) and ``_run_id``;
    rejected is shaped as :data:`REJECTS_COLUMNS`, or None for Parquet and JSON (no record-level rejects)."""
    from pyspark.sql import functions as F

    assert table.source is not None
    types = {c.name: spark_type(c.physical_type) for c in table.columns}
    lineage = [F.current_timestamp().alias("_ingested_at"), F.lit(run_id).alias("_run_id")]
    if table.source.format != "csv":
        frames = [_typed(spark, table, path, types) for path in drift.headers]
        accepted = _union(frames) if frames else _empty(spark, types)
        return accepted.select(*[F.col(c) for c in types], "_source_file", *lineage), None
    by_header: dict[tuple[str, ...], list[str]] = {}
    for path, header in drift.headers.items():
        if header:
            by_header.setdefault(tuple(header), []).append(spark_path(path))
    accepted_parts, rejected_parts = [], []
    for header, files in by_header.items():
        schema = ", ".join([f"{_quoted(h)} {types.get(h, 'STRING')}" for h in header] + [f"{CORRUPT} STRING"])
        read = _csv_reader(spark, table, schema).csv(files).select("*", _source_file()).cache()
        picked = [F.col(_quoted(c)) if c in header else F.lit(None).cast(t).alias(c) for c, t in types.items()]
        # Spark decodes bytes that are not UTF-8 as U+FFFD; DuckDB rejects such a record, so does this
        texts = [F.coalesce(F.col(_quoted(h)).contains("\ufffd"), F.lit(False)) for h in header
                 if types.get(h, "STRING") == "STRING"]
        garbled = functools.reduce(lambda a, b: a | b, texts, F.lit(False))
        accepted_parts.append(read.filter(F.col(CORRUPT).isNull() & ~garbled)
                              .select(*picked, "_source_file", *lineage))
        fields = F.size(F.split(F.col(CORRUPT), re.escape(table.source.delimiter), -1))
        rejected_parts.append(read.filter(F.col(CORRUPT).isNotNull()).select(
            "_source_file", F.lit(None).cast("BIGINT").alias("line_number"), F.col(CORRUPT).alias("raw_line"),
            F.when(fields < len(header), "MISSING COLUMNS").when(fields > len(header), "TOO MANY COLUMNS")
             .otherwise("CAST").alias("error_types"),
            F.lit("the record does not parse with the contract's columns and types").alias("reason"), *lineage))
        rejected_parts.append(read.filter(F.col(CORRUPT).isNull() & garbled).select(
            "_source_file", F.lit(None).cast("BIGINT").alias("line_number"),
            F.concat_ws(table.source.delimiter, *[F.col(_quoted(h)).cast("STRING") for h in header]).alias("raw_line"),
            F.lit("INVALID ENCODING").alias("error_types"),
            F.lit("the record holds bytes that are not UTF-8 (shown as U+FFFD)").alias("reason"), *lineage))
    if not accepted_parts:  # only empty files: no records, the contract's shape
        empty = _empty(spark, types).select(*types, F.lit(None).cast("STRING").alias("_source_file"), *lineage)
        return empty, _empty(spark, {c: spark_type(t) for c, t in REJECTS_COLUMNS.items()})
    return _union(accepted_parts), _union(rejected_parts)


def records_read(spark: Any, table: Table, drift: Drift) -> int:
    """Records in the files, counted by a separate read with every column as text (no record is malformed)."""
    assert table.source is not None
    total = 0
    for path, header in drift.headers.items():
        if table.source.format != "csv":
            total += _reader(spark, table, path).count()
        elif header:
            schema = ", ".join(f"{_quoted(h)} STRING" for h in header)
            total += _csv_reader(spark, table, schema).csv(spark_path(path)).count()
    return total


def _reader(spark: Any, table: Table, path: str) -> Any:
    assert table.source is not None
    if table.source.format == "parquet":
        return spark.read.parquet(spark_path(path))
    with fsspec.open(path, "rb") as handle:
        array = handle.read(4096).lstrip()[:1] == b"["
    return spark.read.option("multiLine", array).json(spark_path(path))


def _typed(spark: Any, table: Table, path: str, types: dict[str, str]) -> Any:
    from pyspark.sql import functions as F

    frame = _reader(spark, table, path)
    present = set(frame.columns)
    return frame.select(*[F.col(_quoted(c)).cast(t).alias(c) if c in present else F.lit(None).cast(t).alias(c)
                          for c, t in types.items()], _source_file())


def _empty(spark: Any, types: dict[str, str]) -> Any:
    return spark.createDataFrame([], ", ".join(f"{_quoted(c)} {t}" for c, t in types.items()))


def _union(frames: list[Any]) -> Any:
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result
