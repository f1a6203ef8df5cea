"""Bronze ingestion of landing-zone CSV, Parquet and JSON files: schema drift, accepted rows, rejected rows, row
conservation.

Every input record is either accepted (typed with the contract's columns, plus the lineage columns) or
rejected into the table's ``<table>__rejects`` port with its file, line number, raw line and reason — never
silently lost. Three framework checks come with every bronze table:

- ``schema_drift``: the files' headers against the contract (columns added, removed, renamed, reordered,
  retyped), before anything is written; blocking unless ``mesh.yaml`` ``schema_drift.bronze`` is ``warn``, in
  which case columns are read by name, the contract's columns are kept and missing ones are null;
- ``rejected_rows``: how many records were rejected (severity ``mesh.yaml`` ``ingestion.rejects``);
- ``row_conservation``: records read (counted independently of the typed read, :func:`records_read`) =
  accepted + rejected.

Parquet and JSON (newline-delimited or arrays of objects) files are read by column name and cast to the
contract's types. They have no record-level rejects: a value that does not cast fails the step with DuckDB's
message naming the file (nothing is published), so ``rejected_rows`` is always 0 for them.
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass, field

import duckdb
import numpy as np

from mesh_assets.contract.model import REJECTS_SUFFIX, Table, Window
from mesh_assets.engine.outcomes import CheckOutcome
from mesh_assets.errors import TransformError

REJECTS_COLUMNS = {"_source_file": "VARCHAR", "line_number": "BIGINT", "raw_line": "VARCHAR",
                   "error_types": "VARCHAR", "reason": "VARCHAR", "_ingested_at": "TIMESTAMP WITH TIME ZONE",
                   "_run_id": "VARCHAR"}
# The rejects kept as the rejected_rows check's sample: sample key → column of the rejects port
REJECTS_SAMPLE = {"line_number": "line_number", "file": "_source_file", "error_types": "error_types",
                  "reason": "reason", "raw_line": "raw_line"}
FRAMEWORK_CHECKS = {
    "schema_drift": "the source files' columns match the contract",
    "rejected_rows": "records of the source files that could not be read with the contract's types",
    "row_conservation": "every record read is accepted or rejected",
}
_SAMPLE_VALUES = 1000  # values per column read to tell a retyped column from a few bad values
_OTHER_DELIMITERS = (";", "|", "\t", ",")
MAX_LINE_SIZE = 2_000_000  # bytes of one CSV record, DuckDB's default (mesh.yaml ingestion.max_line_size)
LINE_TOO_LONG = "LINE SIZE OVER MAXIMUM"  # DuckDB's reject error type of a record longer than max_line_size
_CHUNK = 1 << 24  # bytes of a CSV file read at a time to count its records


def rejects_key(table: Table) -> tuple[str, str, str]:
    """The port of a bronze table's rejected records: ``[domain, bronze, <table>__rejects]``."""
    return (table.domain, table.layer, f"{table.name}{REJECTS_SUFFIX}")


def table_ports(table: Table) -> list[tuple[str, str, str]]:
    """The ports a table's step writes: its own and, for a bronze table, its rejects port."""
    return [table.key, *([rejects_key(table)] if table.layer == "bronze" else [])]


@dataclass
class Drift:
    """Differences between the files' headers and the contract's columns, by kind."""

    problems: list[str] = field(default_factory=list)
    headers: dict[str, list[str]] = field(default_factory=dict)  # file → its header

    @property
    def found(self) -> bool:
        return bool(self.problems)


def source_files(table: Table, landing_zone: str, window: Window | None = None) -> list[str]:
    """The landing-zone files matching the table's ``source.path`` glob, sorted; for a partitioned table, those
    of the partitions of ``window`` (mesh_assets.contract.model.Source.glob: ``{month}``, ``{date}`` filled).

    Raises:
        TransformError: no file matches (the message names the glob, the partitions and the contract to fix).
    """
    assert table.source is not None
    keys = window.keys if window is not None and table.partitioning is not None else (None,)
    patterns = [os.path.join(landing_zone, table.source.glob(table.partitioning, key)) for key in keys]
    remote = "://" in landing_zone
    files = sorted({f for p in patterns for f in glob.glob(p, recursive=True)}) if not remote else patterns
    if not files:
        where = f" (partition {window.label})" if window is not None and table.partitioning is not None else ""
        raise TransformError(f"{'/'.join(table.key)}: no source file matches {', '.join(patterns)}{where}. Land "
                             f"the files there or fix source.path in {table.contract_path}")
    return files


def detect_drift(con: duckdb.DuckDBPyConnection, table: Table, files: list[str]) -> Drift:
    """Compare each file's header (and its first values) with the contract's columns and types."""
    assert table.source is not None
    if table.source.format != "csv":
        return _typed_drift(con, table, files)
    expected = [c.name for c in table.columns]
    drift = Drift()
    for path in files:
        if "://" in path or not table.source.header:
            drift.headers[path] = expected
            continue
        header = _header(path, table.source.delimiter)
        drift.headers[path] = header
        name = os.path.basename(path)
        if not header:
            drift.problems.append(f"{name} is empty: no header line")
            continue
        if header == expected:
            drift.problems += _retyped(con, table, path, header)
            continue
        added = [h for h in header if h not in expected]
        removed = [c for c in expected if c not in header]
        renamed = [f"{expected[i]} → {h}" for i, h in enumerate(header)
                   if i < len(expected) and h in added and expected[i] in removed]
        if renamed:
            drift.problems.append(f"{name}: column(s) renamed {', '.join(renamed)}")
            added = [h for h in added if not any(r.endswith(f"→ {h}") for r in renamed)]
            removed = [c for c in removed if not any(r.startswith(f"{c} →") for r in renamed)]
        if added:
            drift.problems.append(f"{name}: column(s) added {', '.join(added)}")
        if removed:
            drift.problems.append(f"{name}: column(s) removed {', '.join(removed)}")
        if not added and not removed and not renamed:
            drift.problems.append(f"{name}: columns reordered: {', '.join(header)}")
        if len(header) == 1 and (hint := _delimiter_hint(header[0], table.source.delimiter)):
            drift.problems.append(f"{name}: {hint}")
        drift.problems += _retyped(con, table, path, header)
    return drift


def _typed_reader(table: Table, files: list[str], columns: str | None = None) -> str:
    """``read_parquet``/``read_json`` of ``files``; JSON with the ``columns`` struct literal when given."""
    assert table.source is not None
    if table.source.format == "parquet":
        return f"read_parquet({_file_list(files)}, filename = true, union_by_name = true)"
    typed = f", columns = {{{columns}}}" if columns else ""
    return f"read_json({_file_list(files)}, filename = true{typed})"


def _typed_drift(con: duckdb.DuckDBPyConnection, table: Table, files: list[str]) -> Drift:
    """Drift of Parquet and JSON files, read by column name (order does not matter): columns added or removed
    (JSON: the keys of the first records DuckDB samples), and columns whose first values do not cast."""
    expected = [c.name for c in table.columns]
    drift = Drift()
    for path in files:
        name = os.path.basename(path)
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM {_typed_reader(table, [path])}").fetchall()
        except duckdb.Error as exc:
            drift.problems.append(f"{name} cannot be read as {table.source.format}: {str(exc).splitlines()[0]}")
            continue
        header = [r[0] for r in described if r[0] != "filename"]
        drift.headers[path] = header
        added = [h for h in header if h not in expected]
        removed = [c for c in expected if c not in header]
        if added:
            drift.problems.append(f"{name}: column(s) added {', '.join(added)}")
        if removed:
            drift.problems.append(f"{name}: column(s) removed {', '.join(removed)}")
        typed = [c for c in table.columns if c.name in header]
        failing = ", ".join(f'count(*) FILTER (WHERE "{c.name}" IS NOT NULL AND TRY_CAST("{c.name}" AS '
                            f'{c.physical_type}) IS NULL)' for c in typed)
        if not failing:
            continue
        row = con.execute(f"SELECT count(*), {failing} FROM (SELECT * FROM {_typed_reader(table, [path])} "
                          f"LIMIT {_SAMPLE_VALUES})").fetchall()[0]
        drift.problems += [f"{name}: column {c.name} retyped: {n} of the first {row[0]} values are not "
                           f"{c.physical_type}" for c, n in zip(typed, row[1:]) if n]
    return drift


def _header(path: str, delimiter: str) -> list[str]:
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        return [h.strip() for h in next(csv.reader(handle, delimiter=delimiter), [])]


def _delimiter_hint(header: str, delimiter: str) -> str | None:
    other = next((d for d in _OTHER_DELIMITERS if d != delimiter and d in header), None)
    return f"the header looks delimited by {other!r}; set source.delimiter to {other!r}" if other else None


def _retyped(con: duckdb.DuckDBPyConnection, table: Table, path: str, header: list[str]) -> list[str]:
    """Columns whose first values mostly do not cast to the contract type (a few bad values are rejects)."""
    columns = {c.name: c for c in table.columns if c.name in header}
    typed = [c for c in columns.values() if c.physical_type.upper() not in ("VARCHAR", "TEXT", "STRING")]
    if not typed:
        return []
    failing = ", ".join(f'count(*) FILTER (WHERE "{c.name}" IS NOT NULL AND TRY_CAST("{c.name}" AS '
                        f'{c.physical_type}) IS NULL)' for c in typed)
    try:
        row = con.execute(f"SELECT count(*), {failing} FROM (SELECT * FROM {_permissive_read(table, [path], header)} "
                          f"LIMIT {_SAMPLE_VALUES})").fetchall()[0]
    except duckdb.Error:
        return []  # unreadable values show up as rejects
    read, bad = row[0], row[1:]
    return [f"{os.path.basename(path)}: column {c.name} retyped: {n} of the first {read} values are not "
            f"{c.physical_type}" for c, n in zip(typed, bad) if read and n > read / 2]


def _options(table: Table, max_line_size: int = MAX_LINE_SIZE) -> str:
    assert table.source is not None
    delim = table.source.delimiter.replace("'", "''")
    return (f"header = {str(table.source.header).lower()}, delim = '{delim}', quote = '\"', escape = '\"', "
            f"max_line_size = {int(max_line_size)}")


def _literal(text: str) -> str:
    """``text`` as a SQL string literal: a header or file name from a landed file is data, never SQL."""
    return "'" + text.replace("'", "''") + "'"


def _file_list(files: list[str]) -> str:
    return "[" + ", ".join(_literal(f) for f in files) + "]"


def _permissive_read(table: Table, files: list[str], header: list[str], parallel: bool = False,
                     rejects: str | None = None, max_line_size: int = MAX_LINE_SIZE) -> str:
    """A read that accepts every record: all VARCHAR, short rows padded, any byte (latin-1); serial by default
    (the parallel scanner cannot pad rows when values hold quoted newlines). With ``rejects``, the records it
    still cannot read (longer than DuckDB's maximum line size) go to the temporary table ``<rejects>_errors``
    instead of failing the query."""
    columns = ", ".join(f"{_literal(h)}: 'VARCHAR'" for h in header)
    store = (f", store_rejects = true, rejects_table = '{rejects}_errors', rejects_scan = '{rejects}_scans'"
             if rejects else "")
    return (f"read_csv({_file_list(files)}, {_options(table, max_line_size)}, columns = {{{columns}}}, "
            f"auto_detect = false, strict_mode = false, null_padding = true, parallel = {str(parallel).lower()}, "
            f"encoding = 'latin-1'{store})")


def ingestion_sql(table: Table, drift: Drift, run_id: str, max_line_size: int = MAX_LINE_SIZE, *,
                  store_rejects: bool = True) -> str:
    """The SELECT of the accepted records: the contract's columns and DuckDB types plus ``_source_file``
    (VARCHAR), ``_ingested_at`` (TIMESTAMP WITH TIME ZONE, the transaction start) and ``_run_id``. Records
    that do not parse, or are longer than ``max_line_size`` bytes, go to DuckDB's rejects tables
    (``store_rejects``), read by :func:`rejects_sql`; without ``store_rejects`` (the benchmarks' minimal
    pipeline) such a record fails the query instead.
    Files are grouped by header so that, when drift is tolerated, each is read by column name."""
    by_header: dict[tuple[str, ...], list[str]] = {}
    for path, header in drift.headers.items():
        if header:
            by_header.setdefault(tuple(header), []).append(path)
    types = {c.name: c.physical_type for c in table.columns}
    assert table.source is not None
    if table.source.format != "csv" and drift.headers:  # by name, cast: a bad value fails the step; missing: null
        present = [c for c in types if any(c in h for h in by_header)]
        read = _typed_reader(table, list(drift.headers),
                             ", ".join(f"{_literal(c)}: '{t}'" for c, t in types.items()))
        picked = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' if c in present or table.source.format == "json"
                           else f'CAST(NULL AS {t}) AS "{c}"' for c, t in types.items())
        return (f"SELECT {picked}, filename AS _source_file, now() AS _ingested_at, '{run_id}' AS _run_id "
                f"FROM {read}")
    selects = []
    for header, files in by_header.items():
        columns = ", ".join(f"{_literal(h)}: '{types.get(h, 'VARCHAR')}'" for h in header)
        picked = ", ".join(f'"{c}"' if c in header else f'CAST(NULL AS {t}) AS "{c}"' for c, t in types.items())
        selects.append(
            f"SELECT {picked}, filename AS _source_file, now() AS _ingested_at, '{run_id}' AS _run_id "
            f"FROM read_csv({_file_list(files)}, {_options(table, max_line_size)}, columns = {{{columns}}}, "
            f"auto_detect = false, filename = true, strict_mode = true, store_rejects = {str(store_rejects).lower()})")
    if not selects:  # only empty files: no records, the contract's shape
        empty = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in types.items())
        return (f"SELECT {empty}, NULL::VARCHAR AS _source_file, now() AS _ingested_at, "
                f"'{run_id}' AS _run_id WHERE false")
    return " UNION ALL ".join(selects)


def rejects_sql(run_id: str) -> str:
    """The rejected records of this connection's ingestion, one row per record, shaped as
    :data:`REJECTS_COLUMNS`."""
    return (
        "SELECT s.file_path AS _source_file, e.line::BIGINT AS line_number, first(e.csv_line) AS raw_line, "
        "string_agg(DISTINCT e.error_type::VARCHAR, ', ') AS error_types, "
        f"string_agg(e.error_message || CASE WHEN e.error_type::VARCHAR = '{LINE_TOO_LONG}' THEN "
        "' Fix: split or shorten the record at its source, or raise mesh.yaml ingestion.max_line_size above its "
        "size' ELSE '' END, '; ') AS reason, now() AS _ingested_at, "
        f"'{run_id}' AS _run_id "
        "FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id) "
        "GROUP BY s.file_path, e.line ORDER BY s.file_path, e.line"
    )


def records_read(con: duckdb.DuckDBPyConnection, table: Table, drift: Drift, max_line_size: int = MAX_LINE_SIZE
                 ) -> int:
    """Records in the files, counted independently of the typed read. A local CSV file whose records are one
    line each is counted from its bytes (:func:`_line_records`, about a tenth of a CSV scan); any other file
    by a permissive scan: in parallel, or serially when a value holds a quoted newline (DuckDB's parallel
    scanner cannot pad those rows). A record even that scan cannot read (longer than DuckDB's maximum line
    size, which the typed read rejects) counts as one record."""
    total = 0
    assert table.source is not None
    if table.source.format != "csv":
        return sum(con.execute(f"SELECT count(*) FROM {_typed_reader(table, [p])}").fetchall()[0][0]
                   for p in drift.headers)
    for number, (path, header) in enumerate(drift.headers.items()):
        if not header:
            continue
        lines = None if "://" in path else _line_records(path, table.source.header)
        if lines is not None:
            total += lines
            continue
        parallel, serial = f"records_read_{number}p", f"records_read_{number}s"
        try:
            rows, unread = _count(con, _permissive_read(table, [path], header, True, parallel, max_line_size),
                                  parallel)
            if unread:  # the parallel scanner may split records wrongly: count serially
                raise duckdb.InvalidInputException("records the parallel scan could not read")
        except duckdb.Error:
            rows, unread = _count(con, _permissive_read(table, [path], header, False, serial, max_line_size),
                                  serial)
        total += rows + unread
    return total


def _line_records(path: str, header: bool) -> int | None:
    """The records of the CSV file at ``path`` when each is exactly one line: its line feeds (plus a last
    line without one), less the header line. ``None`` when that cannot be told from the bytes alone, and the
    CSV reader must count: a line feed inside a quoted value (an odd number of ``"`` before it), a carriage
    return (DuckDB also ends records at a lone ``\\r``), or an empty line. Counts are whole-array operations
    over 16 MiB chunks, never a Python loop over lines."""
    lines = quotes = 0
    previous = b"\n"  # the byte before the chunk: an empty first line counts as an empty line
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            data = np.frombuffer(chunk, dtype=np.uint8)
            feeds, quoted = np.flatnonzero(data == 0x0A), np.flatnonzero(data == 0x22)
            if np.any(data == 0x0D) or (feeds.size and np.any(np.diff(feeds) == 1)) or (
                    previous == b"\n" and chunk[:1] == b"\n"):
                return None
            if quoted.size and np.any((np.searchsorted(quoted, feeds) + quotes) & 1):
                return None
            lines, quotes, previous = lines + feeds.size, quotes + quoted.size, chunk[-1:]
    if quotes & 1:  # an unterminated quote in the last line: the reader decides
        return None
    records = lines + (previous != b"\n")
    return max(records - 1, 0) if header else records


def _count(con: duckdb.DuckDBPyConnection, read: str, rejects: str) -> tuple[int, int]:
    """The records ``read`` returns, and the records (lines) it stored in ``<rejects>_errors`` instead."""
    rows = con.execute(f"SELECT count(*) FROM {read}").fetchall()[0][0]
    unread = con.execute(f"SELECT count(DISTINCT line) FROM {rejects}_errors").fetchall()[0][0]
    return rows, unread


def drift_outcome(drift: Drift, blocking: bool) -> CheckOutcome:
    return CheckOutcome("schema_drift", not drift.found, blocking, "error" if blocking else "warning",
                        FRAMEWORK_CHECKS["schema_drift"],
                        {"problems": drift.problems or ["none"], "files": len(drift.headers)})


def ingestion_outcomes(read: int, accepted: int, rejects: list[dict], rejected: int, severity: str
                       ) -> list[CheckOutcome]:
    """``rejected_rows`` and ``row_conservation`` for one ingestion; ``rejects`` is a sample of rejects."""
    rate = round(1 - rejected / read, 6) if read else 1.0
    rejected_outcome = CheckOutcome(
        "rejected_rows", rejected == 0, severity == "error", severity, FRAMEWORK_CHECKS["rejected_rows"],
        {"rows_checked": read, "failing_rows": rejected, "pass_rate": rate, "sample": rejects},
    )
    conservation = CheckOutcome(
        "row_conservation", read == accepted + rejected, True, "error", FRAMEWORK_CHECKS["row_conservation"],
        {"rows_read": read, "rows_accepted": accepted, "rows_rejected": rejected},
    )
    return [rejected_outcome, conservation]
