"""The minimal pipeline: the mesh's own bronze→silver→gold SQL and nothing else, the floor ``python -m benchmarks``
compares a mesh run with.

:func:`plan` turns a mesh into one script of DuckDB statements, in dependency order: each bronze table's typed
read of its landing-zone files (the mesh's ingestion SELECT, without DuckDB's rejects tables), then each
silver and gold table's transform (its SQL file, or its dbt model rendered in mesh names), each written once
to Parquet with the mesh's compression, its inputs read as views over the Parquet files written before it
(``previous.<table>`` empty, as on a mesh's first run).
No checks, profile, rejects, masking, snapshots, run-time access decisions, lineage or Dagster: one DuckDB
connection with the mesh's ``duckdb`` settings (``memory_limit``, ``threads``).

``python -m benchmarks.minimal <script.json>`` runs a planned script and prints how many statements ran;
planning (loading the contracts, reading the files' headers) happens before, outside the measurement.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb

from mesh_assets.contract.mesh import Mesh
from mesh_assets.contract.model import Table
from mesh_assets.engine.ingestion import detect_drift, ingestion_sql, source_files
from mesh_assets.sql.inputs import PREVIOUS, InputRef, find_inputs

RUN_ID = "minimal"  # the _run_id column of the bronze tables


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ordered(mesh: Mesh) -> list[Table]:
    """Every table of ``mesh`` after the tables it reads.

    Raises:
        ValueError: a table reads a table of the mesh that is not there, or the tables read each other in a
            cycle (``mesh validate`` reports both).
    """
    tables = {t.key: t for d in mesh.domains() for t in d.tables}
    done: dict[tuple[str, str, str], Table] = {}

    def visit(table: Table, path: tuple[tuple[str, str, str], ...]) -> None:
        if table.key in done:
            return
        if table.key in path:
            raise ValueError(f"tables read each other in a cycle: {' → '.join('/'.join(k) for k in path)}")
        for ref in _inputs(table):
            if ref.key not in tables:
                raise ValueError(f"{'/'.join(table.key)} reads {'/'.join(ref.key)}, which no contract declares")
            visit(tables[ref.key], (*path, table.key))
        done[table.key] = table

    for table in tables.values():
        visit(table, ())
    return list(done.values())


def _inputs(table: Table) -> list[InputRef]:
    sql = table.sql
    return find_inputs(sql, table.domain) if sql else []


def plan(mesh: Mesh, landing_zone: str, out: Path) -> list[str]:
    """The statements that build every table of ``mesh`` from the files under ``landing_zone`` into
    ``out/<domain>/<layer>/<table>.parquet``.

    Raises:
        ValueError: a Python transform (the minimal pipeline runs SQL only), or see :func:`_ordered`.
        TransformError: a bronze table has no source file.
    """
    settings = mesh.settings
    statements = ["SET preserve_insertion_order = false",
                  f"SET temp_directory = {_quote(str(out / 'tmp'))}"]
    if settings.duckdb.memory_limit:
        statements.append(f"SET memory_limit = {_quote(str(settings.duckdb.memory_limit))}")
    if settings.duckdb.threads:
        statements.append(f"SET threads = {int(settings.duckdb.threads)}")
    probe = duckdb.connect(":memory:")
    try:
        for table in _ordered(mesh):
            target = out / table.domain / table.layer / f"{table.name}.parquet"
            target.parent.mkdir(parents=True, exist_ok=True)
            if table.layer == "bronze" and table.source is not None:
                drift = detect_drift(probe, table, source_files(table, landing_zone))
                sql = ingestion_sql(table, drift, RUN_ID, settings.ingestion.max_line_size, store_rejects=False)
            elif table.python:
                raise ValueError(f"{'/'.join(table.key)} is a Python transform: the minimal pipeline runs SQL only")
            else:
                sql = (table.sql or "").strip().rstrip(";")
                for ref in _inputs(table):
                    source = out / ref.key[0] / ref.key[1] / f"{ref.key[2]}.parquet"
                    statements += [f'CREATE SCHEMA IF NOT EXISTS "{ref.schema}"',
                                   f'CREATE OR REPLACE VIEW "{ref.schema}"."{ref.table}" AS '
                                   f"SELECT * FROM read_parquet({_quote(str(source))})"]
                # previous.<table>: its own published snapshot, empty on a first run (as in the mesh)
                empty = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in table.output_columns.items())
                statements += [f'CREATE SCHEMA IF NOT EXISTS "{PREVIOUS}"',
                               f'CREATE OR REPLACE VIEW "{PREVIOUS}"."{table.name}" AS SELECT {empty} WHERE false']
            statements.append(f"COPY ({sql}) TO {_quote(str(target))} (FORMAT parquet, COMPRESSION zstd)")
    finally:
        probe.close()
    return statements


def run(script: Path) -> int:
    """Run the statements of ``script`` (a JSON list written from :func:`plan`) on one in-memory connection;
    return how many ran."""
    statements = json.loads(script.read_text())
    con = duckdb.connect(":memory:")
    for statement in statements:
        con.execute(statement).fetchall()
    con.close()
    return len(statements)


if __name__ == "__main__":
    print(f"{run(Path(sys.argv[1]))} statements run")
