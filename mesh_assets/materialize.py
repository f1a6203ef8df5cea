"""One table's materialization: write–audit–publish on a fresh in-memory DuckDB (DESIGN.md §3).

1. register every input as a view over its port's current snapshot;
2. compare the output's columns and types with the contract (the ``schema`` check) before writing anything;
3. write a new snapshot with ``COPY … TO … (FORMAT parquet)``;
4. run the contract's rules on that snapshot;
5. publish (swap the pointer) only if no blocking check failed; prune old snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from mesh_assets.checks import CheckOutcome, run_rules, schema_outcome
from mesh_assets.column_lineage import column_lineage
from mesh_assets.contracts import Table
from mesh_assets.errors import MeshError, PortError, TransformError
from mesh_assets.ingestion import check_headers, ingestion_sql, source_files
from mesh_assets.settings import MeshSettings
from mesh_assets.sql_inputs import InputRef
from resources import DuckDBEngine, PortStorage


@dataclass
class TableResult:
    """What a materialization did: ``published`` is False when a blocking check failed (the snapshot stays
    unpublished and the previous one current). ``metadata`` is recorded on the Dagster materialization."""

    published: bool
    snapshot_id: str | None
    rows: int | None
    outcomes: list[CheckOutcome]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def failed_blocking(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if o.blocking and not o.passed]


def materialize_table(table: Table, inputs: list[InputRef], *, engine: DuckDBEngine, storage: PortStorage,
                      settings: MeshSettings, run_id: str, references: dict[str, InputRef] | None = None
                      ) -> TableResult:
    """Build ``table`` from its inputs into a new snapshot of its port and publish it if its checks allow.

    ``inputs`` are the ports the transform reads; ``references`` the tables its foreign-key rules check
    against, by rule name (the table itself for a self-reference).

    Raises:
        TransformError: an input has no published snapshot, the source files or SQL fail (the message names
            the table, the file and the fix). Nothing is published then.
    """
    con = engine.connect(storage.root)
    try:
        references = references or {}
        for ref in [*inputs, *references.values()]:
            if ref.key == table.key:
                continue  # a self-reference reads the snapshot being audited
            try:
                snapshot = storage.port(ref.key).current_snapshot()
            except PortError as exc:
                raise TransformError(f"{'/'.join(table.key)} reads {ref.schema}.{ref.table}: {exc}") from None
            engine.register_view(con, ref.schema, ref.table, snapshot.glob)
        sql, origin = _select_sql(table, settings, run_id)
        actual = _describe(con, sql, origin, table)
        expected = _normalised_types(con, table.output_columns)
        schema = schema_outcome(table, actual, expected)
        if not schema.passed:
            return TableResult(False, None, None, [schema], {"transform": origin})
        port = storage.port(table.key)
        snapshot = port.new_snapshot(run_id)
        try:
            rows = con.execute(f"COPY ({sql}) TO '{snapshot.data_file}' (FORMAT parquet, COMPRESSION zstd)"
                               ).fetchall()[0][0]
        except duckdb.Error as exc:
            raise TransformError(f"{'/'.join(table.key)}: {origin} failed: {_message(exc)}. Nothing was "
                                 "published; the previous snapshot stays current") from None
        engine.register_view(con, table.layer, table.name, snapshot.glob)
        targets = {name: f"{ref.schema}.{ref.table}" for name, ref in references.items()}
        outcomes = [schema, *run_rules(con, f"{table.layer}.{table.name}", table, settings.checks.sample_rows,
                                       targets)]
        metadata = {"snapshot": snapshot.id, "port": snapshot.path, "transform": origin, "sql": sql}
        if inputs:
            columns = {(r.schema, r.table): _describe(con, f'SELECT * FROM "{r.schema}"."{r.table}"', origin, table)
                       for r in inputs}
            metadata["column_lineage"] = column_lineage(sql, inputs, columns)
        if any(o.blocking and not o.passed for o in outcomes):
            return TableResult(False, snapshot.id, int(rows), outcomes, metadata)
        port.publish(snapshot.id, {"rows": int(rows), "run_id": run_id})
        port.prune(settings.retention.snapshots)
        return TableResult(True, snapshot.id, int(rows), outcomes, metadata)
    finally:
        con.close()


def _select_sql(table: Table, settings: MeshSettings, run_id: str) -> tuple[str, str]:
    """The SELECT that produces the table, and where it comes from (for messages)."""
    if table.layer == "bronze":
        files = source_files(table, settings.landing_path)
        check_headers(table, files)
        return ingestion_sql(table, files, run_id), f"ingestion of {table.source.path}"  # type: ignore[union-attr]
    assert table.transform is not None
    origin = _relative(table.transform, settings.root)
    return table.transform.read_text(encoding="utf-8").strip().rstrip(";"), origin


def _describe(con: duckdb.DuckDBPyConnection, sql: str, origin: str, table: Table) -> dict[str, str]:
    try:
        return {name: ctype for name, ctype, *_ in con.execute(f"DESCRIBE {sql}").fetchall()}
    except duckdb.Error as exc:
        raise TransformError(f"{'/'.join(table.key)}: {origin} failed: {_message(exc)}") from None


def _normalised_types(con: duckdb.DuckDBPyConnection, columns: dict[str, str]) -> dict[str, str]:
    """Contract types as DuckDB prints them (``INT`` → ``INTEGER``, ``DECIMAL(15,2)`` kept), for comparison."""
    select = ", ".join(f'CAST(NULL AS {ctype}) AS "{name}"' for name, ctype in columns.items())
    try:
        return {name: ctype for name, ctype, *_ in con.execute(f"DESCRIBE SELECT {select}").fetchall()}
    except duckdb.Error as exc:
        raise MeshError(f"a physicalType is not a DuckDB type: {_message(exc)}") from None


def _message(exc: Exception) -> str:
    """DuckDB's message on one line, without the hint to file a bug report; at most 2,000 characters."""
    text = str(exc).strip()
    if "Possible solutions" in text:  # CSV errors: keep the line and the file, drop DuckDB's sniffer advice
        head, tail = text.split("Possible solutions", 1)
        file = next((ln.strip() for ln in tail.splitlines() if ln.strip().startswith("file =")), "")
        text = f"{head.strip()} {file}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return " ".join(lines)[:2000] or type(exc).__name__


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
