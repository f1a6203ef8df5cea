"""Read output ports from notebooks, scripts and ``mesh sql``: a DuckDB connection with ``<domain>.<table>``
views over the current snapshot of every published gold port."""

from __future__ import annotations

import sys
from pathlib import Path

import duckdb

from mesh_assets.errors import MeshError
from mesh_assets.mesh import load_mesh
from mesh_assets.settings import find_mesh_root
from mesh_assets.sql_inputs import SqlInputError, parse_select
from mesh_assets.definitions import duckdb_engine
from resources import PortStorage


def connect(root: Path | str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view ``<domain>.<table>`` per published output port of the mesh
    at ``root`` (default: the mesh around the current directory). Ports never published are left out; a domain
    whose contracts do not load is reported on stderr and left out.

    Raises:
        MeshError: no mesh at ``root``.
    """
    mesh = load_mesh(find_mesh_root(root))
    settings = mesh.settings
    engine = duckdb_engine(settings)
    storage = PortStorage(root=settings.storage_url)
    con = engine.connect(settings.storage_url)
    for name in mesh.domain_names:
        try:
            domain = mesh.domain(name)
        except MeshError as exc:
            print(f"warning: domain {name} skipped: {exc}", file=sys.stderr)
            continue
        for table in domain.tables:
            if table.layer != "gold":
                continue
            port = storage.port(table.key)
            if port.current() is not None:
                engine.register_view(con, domain.name, table.name, port.current_snapshot().glob)
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
