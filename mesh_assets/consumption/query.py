"""Read output ports from notebooks, scripts and ``mesh sql``: a DuckDB connection with ``<domain>.<table>``
views over the files of the current Iceberg snapshot (or an earlier one, ``as_of``) of every published output
port the reader may read."""

from __future__ import annotations

import atexit
import hashlib
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import duckdb

from mesh_assets.contract.mesh import Mesh, load_mesh
from mesh_assets.engine.duckdb_engine import DuckDBEngine
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.ports import EXPORT_TAG_PREFIX, Port, Snapshot, as_of_time
from mesh_assets.errors import MeshError, PortError
from mesh_assets.governance.access import Access, AccessError, decide
from mesh_assets.orchestration.definitions import duckdb_engine
from mesh_assets.settings import find_mesh_root
from mesh_assets.sql.functions import FunctionNotAllowed, check_functions
from mesh_assets.sql.inputs import SqlInputError, parse_select


def readable_ports(mesh: Mesh, domain: str | None) -> list[tuple[Port, Access]]:
    """Every published output port of ``mesh`` that ``domain`` may read (``None``: a reader outside the
    domains), with the access it gets. Domains whose contracts do not load are left out with a warning on
    stderr.

    Raises:
        MeshError: ``domain`` is not one of the mesh's domains.
    """
    if domain is not None and domain not in mesh.domain_names:
        raise MeshError(f"no domain '{domain}' in the mesh; read as one of {', '.join(mesh.domain_names)}")
    storage = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
    readable: list[tuple[Port, Access]] = []
    for name in mesh.domain_names:
        try:
            producer = mesh.domain(name)
        except MeshError as exc:
            print(f"warning: domain {name} skipped: {exc}", file=sys.stderr)
            continue
        for table in producer.tables:
            port = storage.port(table.key)
            if table.layer != "gold" or port.current() is None:
                continue
            try:
                readable.append((port, decide(producer.product_of(table), table, domain, mesh.settings.governance)))
            except AccessError:
                continue
    return readable


def reader_files(port: Port, access: Access, as_of: str | None = None) -> Snapshot | None:
    """The files a reader with ``access`` reads of ``port``: the current snapshot's masked copy when columns
    are masked for it, else the current snapshot (``as_of``: the snapshot with that Iceberg id, or current at
    that ISO 8601 time; mesh_assets.engine.ports.Port.current_snapshot). ``None`` (with a warning on stderr:
    the port is left out) when the masked copy is missing or the port has no such snapshot; the clear files
    are never offered instead."""
    try:
        return port.current_masked(access.masked, as_of) if access.masked else port.current_snapshot(as_of)
    except PortError as exc:
        print(f"warning: {access.port} left out: {exc}", file=sys.stderr)
        return None


def connect(root: Path | str | None = None, domain: str | None = None, sandbox: bool = False,
            as_of: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view ``<domain>.<table>`` per published output port that
    ``domain`` may read (``None``: a reader outside the domains, who sees public ports only), in the mesh at
    ``root`` (default: the mesh around the current directory).

    A port whose sensitive columns are masked for ``domain`` (it neither owns the port nor holds a PII grant;
    mesh_assets.governance.access) is a view over the masked copy its producer published (HMAC-SHA256 hex digests); any
    other, over the current snapshot's files (``as_of``: an Iceberg snapshot id or an ISO 8601 time, the
    snapshot of each port current then; `mesh sql --as-of`). No masking function is on the connection. Ports
    never published (or not by ``as_of``), ports to be masked whose snapshot has no masked copy, and domains
    whose contracts do not load are left out with a warning on stderr. With ``sandbox`` (``mesh sql``), SQL on
    the connection reads exactly those files (their folders on an object store) and a spill folder of its own
    (never the steps' spill folder or their private folders): not the port's folder, nor other snapshots, nor
    the clear files of a masked port; no other file, no write.

    Raises:
        MeshError: no mesh at ``root``, or ``domain`` is not one of its domains; PortError: ``as_of`` is
            neither a snapshot id nor a time.
    """
    if as_of is not None and not str(as_of).strip().isdigit():
        as_of_time(as_of)  # a bad value fails once, here, not once per port
    mesh = load_mesh(find_mesh_root(root))
    views = [(port, files) for port, access in readable_ports(mesh, domain)
             if (files := reader_files(port, access, as_of)) is not None]
    engine = _private_spill(duckdb_engine(mesh.settings)) if sandbox else duckdb_engine(mesh.settings)
    local = "://" not in mesh.settings.storage_url
    con = engine.connect(mesh.settings.storage_url,
                         allowed_directories=([] if local else [f.path for _, f in views]) if sandbox else None,
                         allowed_files=[p for _, f in views for p in f.files] if sandbox and local else ())
    for port, files in views:
        engine.register_view(con, port.key[0], port.key[2], files)
    return con


def _private_spill(engine: DuckDBEngine) -> DuckDBEngine:
    """``engine`` spilling to a new folder of its own, deleted at exit. DuckDB lets a sandboxed connection read
    its ``temp_directory``: the mesh's (``duckdb.temp_directory``) holds the steps' spilled data, in clear."""
    folder = tempfile.mkdtemp(prefix="mesh-sql-")
    atexit.register(shutil.rmtree, folder, True)
    return engine.model_copy(update={"temp_directory": folder})


def export_duckdb(path: Path, root: Path | str | None = None, domain: str | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> list[str]:
    """Write a DuckDB database file at ``path`` for BI tools, holding ``<domain>.<table>`` for every port
    :func:`connect` would show ``domain``, and return their names (``<domain>.<table>``).

    A port read in clear is a view over the Parquet files of its current Iceberg snapshot (no copy; it shows
    that snapshot until the next export). So that retention does not delete those files under the view, the
    snapshot is tagged ``mesh-export-<hash of the file's path>`` (:func:`export_tag`), which retention never
    expires; the next export to the same file moves the tag, releasing the older snapshot. A port with masked
    columns is a table holding the values of its masked copy, so the file names no path of the port. The file
    is replaced atomically. ``progress(done, total, port)`` is called before each port is exported.

    Raises:
        MeshError: no mesh at ``root``, ``domain`` is not one of its domains, or the file is named like a domain.
    """
    mesh = load_mesh(find_mesh_root(root))
    engine = duckdb_engine(mesh.settings)
    path = Path(path).resolve()
    catalog = path.name.split(".")[0]  # DuckDB names the attached file's catalog after it
    if catalog in mesh.domain_names:
        raise MeshError(f"{path.name}: a file named like domain '{catalog}' makes {catalog}.<table> ambiguous in "
                        "DuckDB (catalog or schema?); name it otherwise, e.g. mesh.duckdb")
    staged = path.with_name(f".{path.name}.tmp")
    staged.unlink(missing_ok=True)
    exported = []
    con = duckdb.connect(str(staged))
    try:
        readable = readable_ports(mesh, domain)
        for done, (port, access) in enumerate(readable):
            schema, name = port.key[0], port.key[2]
            if progress is not None:
                progress(done, len(readable), f"{schema}.{name}")
            files = reader_files(port, access)
            if files is None:
                continue
            if access.masked:
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                con.execute(f'CREATE TABLE "{schema}"."{name}" AS SELECT * FROM {files.read_sql}')
            else:
                assert files.iceberg_id is not None
                port.tag(export_tag(path), files.iceberg_id)
                engine.register_view(con, schema, name, files)
            exported.append(f"{schema}.{name}")
    finally:
        con.close()
    staged.replace(path)
    return exported


def export_tag(path: Path) -> str:
    """The Iceberg tag protecting the snapshots a DuckDB file exported with :func:`export_duckdb` shows:
    ``mesh-export-`` and the first 12 hex characters of the SHA-256 of its absolute path."""
    return f"{EXPORT_TAG_PREFIX}{hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:12]}"


def read_only_query(sql: str) -> str:
    """``sql`` if it is one read-only query (SELECT, WITH, UNION, …) calling only the functions of
    mesh_assets.sql.functions.

    Raises:
        MeshError: a syntax error, anything but a single query (DDL, COPY, several statements), or a function
            not on the allow-list (a file reader such as ``read_parquet``, the masking function…).
    """
    try:
        check_functions(parse_select(sql))
    except (SqlInputError, FunctionNotAllowed) as exc:
        raise MeshError(f"mesh sql runs one read-only query: {exc}") from None
    return sql.strip().rstrip(";")
