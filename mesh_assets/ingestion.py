"""Bronze ingestion: the SQL that reads a source's landing-zone files with the contract's column types."""

from __future__ import annotations

import csv
import glob
import os

from mesh_assets.contracts import Table
from mesh_assets.errors import TransformError


def source_files(table: Table, landing_zone: str) -> list[str]:
    """The landing-zone files matching the table's ``source.path`` glob, sorted.

    Raises:
        TransformError: no file matches (the message names the glob and the contract to fix).
    """
    assert table.source is not None
    pattern = os.path.join(landing_zone, table.source.path)
    files = sorted(glob.glob(pattern, recursive=True)) if "://" not in landing_zone else [pattern]
    if not files:
        raise TransformError(f"{'/'.join(table.key)}: no source file matches {pattern}. Land the files there "
                             f"or fix source.path in {table.contract_path}")
    return files


def check_headers(table: Table, files: list[str]) -> None:
    """Compare each local CSV file's header with the contract's columns, so a reordered or renamed column can
    never load into the wrong column.

    Raises:
        TransformError: a header differs (names the file, the columns found and the columns expected).
    """
    assert table.source is not None
    if not table.source.header:
        return
    expected = [c.name for c in table.columns]
    for path in files:
        if "://" in path:
            continue
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            header = next(csv.reader(handle, delimiter=table.source.delimiter), [])
        if [h.strip() for h in header] != expected:
            raise TransformError(f"{path}: header {header} does not match the columns of {'/'.join(table.key)} "
                                 f"in {table.contract_path}: {expected}. Fix the file or the contract; nothing "
                                 "was published, the previous snapshot stays current")


def ingestion_sql(table: Table, files: list[str], run_id: str) -> str:
    """A SELECT over ``files`` with the contract's columns and DuckDB types plus the lineage columns
    ``_source_file`` (VARCHAR), ``_ingested_at`` (TIMESTAMP WITH TIME ZONE, the transaction start) and
    ``_run_id`` (VARCHAR). Parsing is strict: a malformed row fails the read with DuckDB's message (file, line).
    """
    assert table.source is not None
    columns = ", ".join(f"'{c.name}': '{c.physical_type}'" for c in table.columns)
    file_list = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    select = ", ".join(f'"{c.name}"' for c in table.columns)
    delim = table.source.delimiter.replace("'", "''")
    return (
        f"SELECT {select}, filename AS _source_file, now() AS _ingested_at, '{run_id}' AS _run_id "
        f"FROM read_csv([{file_list}], header = {str(table.source.header).lower()}, delim = '{delim}', "
        f"quote = '\"', escape = '\"', columns = {{{columns}}}, auto_detect = false, filename = true, "
        f"strict_mode = true)"
    )
