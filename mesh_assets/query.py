"""Read output ports from notebooks, scripts and ``mesh sql``: a DuckDB connection with ``<domain>.<table>``
views over the current snapshot of every published output port the reader may read."""

from __future__ import annotations

import atexit
import sys
from pathlib import Path

import duckdb

from mesh_assets.access import AccessError, decide, pii_salt
from mesh_assets.errors import MeshError
from mesh_assets.mesh import load_mesh
from mesh_assets.settings import find_mesh_root
from mesh_assets.sql_inputs import SqlInputError, parse_select
from mesh_assets.definitions import duckdb_engine
from resources import PortStorage


def connect(root: Path | str | None = None, domain: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view ``<domain>.<table>`` per published output port that
    ``domain`` may read (``None``: a reader outside the domains, who sees public ports only), in the mesh at
    ``root`` (default: the mesh around the current directory).

    Sensitive columns are masked (HMAC-SHA256 hex) unless ``domain`` owns the port or holds a PII grant
    (mesh_assets.access). Ports never published, and domains whose contracts do not load, are left out with a
    warning on stderr; so are ports to be masked while the salt variable is unset.

    Raises:
        MeshError: no mesh at ``root``, or ``domain`` is not one of its domains.
    """
    mesh = load_mesh(find_mesh_root(root))
    settings = mesh.settings
    if domain is not None and domain not in mesh.domain_names:
        raise MeshError(f"no domain '{domain}' in the mesh; read as one of {', '.join(mesh.domain_names)}")
    engine = duckdb_engine(settings)
    storage = PortStorage(root=settings.storage_url)
    con = engine.connect(settings.storage_url)
    masking = False
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
                access = decide(producer.product_of(table), table, domain, settings.governance)
                if access.masked and not masking:
                    engine.enable_masking(con, pii_salt(settings.governance))
                    masking = True
                    atexit.register(con.close)  # a connection holding a Python function is closed before exit
            except AccessError:
                continue
            except MeshError as exc:
                print(f"warning: {name}.{table.name} left out: {exc}", file=sys.stderr)
                continue
            engine.register_view(con, producer.name, table.name, port.current_snapshot().glob, access.masked)
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
