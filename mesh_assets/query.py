"""Read output ports from notebooks, scripts and ``mesh sql``: a DuckDB connection with ``<domain>.<table>``
views over the current snapshot of every published output port the reader may read."""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import duckdb

from mesh_assets.access import Access, AccessError, decide, pii_salt
from mesh_assets.errors import MeshError
from mesh_assets.mesh import load_mesh
from mesh_assets.settings import find_mesh_root
from mesh_assets.sql_inputs import SqlInputError, parse_select
from mesh_assets.definitions import duckdb_engine
from mesh_assets.ports import Port
from resources import PortStorage


def connect(root: Path | str | None = None, domain: str | None = None, sandbox: bool = False
            ) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view ``<domain>.<table>`` per published output port that
    ``domain`` may read (``None``: a reader outside the domains, who sees public ports only), in the mesh at
    ``root`` (default: the mesh around the current directory).

    Sensitive columns are masked (HMAC-SHA256 hex) unless ``domain`` owns the port or holds a PII grant
    (mesh_assets.access). Ports never published, and domains whose contracts do not load, are left out with a
    warning on stderr; so are ports to be masked while the salt variable is unset. With ``sandbox`` (``mesh
    sql``), SQL on the connection reads only those ports' folders: no other file, no write.

    Raises:
        MeshError: no mesh at ``root``, or ``domain`` is not one of its domains.
    """
    mesh = load_mesh(find_mesh_root(root))
    settings = mesh.settings
    if domain is not None and domain not in mesh.domain_names:
        raise MeshError(f"no domain '{domain}' in the mesh; read as one of {', '.join(mesh.domain_names)}")
    storage = PortStorage(root=settings.storage_url)
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
                readable.append((port, decide(producer.product_of(table), table, domain, settings.governance)))
            except AccessError:
                continue
    engine = duckdb_engine(settings)
    folders = [port.url(port.path) for port, _ in readable]
    con = engine.connect(settings.storage_url, allowed_directories=folders if sandbox else None)
    salt = None
    for port, access in readable:
        if access.masked and salt is None:
            try:
                salt = pii_salt(settings.governance)
            except MeshError as exc:
                print(f"warning: {access.port} left out: {exc}", file=sys.stderr)
                continue
            engine.enable_masking(con, salt)
            atexit.register(con.close)  # a connection holding a Python function is closed before exit
        engine.register_view(con, port.key[0], port.key[2], port.current_snapshot().glob, access.masked)
    return con


def read_only_query(sql: str) -> str:
    """``sql`` if it is one read-only query (SELECT, WITH, UNION, …).

    Raises:
        MeshError: a syntax error or anything but a single query (DDL, COPY, several statements).
    """
    try:
        parse_select(sql)
    except SqlInputError as exc:
        raise MeshError(f"mesh sql runs one read-only query: {exc}") from None
    return sql.strip().rstrip(";")
