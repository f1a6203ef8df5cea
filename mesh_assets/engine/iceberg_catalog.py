"""The Apache Iceberg catalog of the mesh's ports: a SQL catalog (pyiceberg's ``SqlCatalog``) named ``mesh``.

Where it lives (docs/architecture.md, docs/operations.md):

- ``mesh.yaml`` ``catalog.uri`` or the environment variable ``MESH_CATALOG_URI`` (which wins): any SQLAlchemy URL,
  e.g. ``postgresql+psycopg2://mesh@db/mesh`` in production (the PostgreSQL of the Dagster instance is fine);
- otherwise, when the storage root is a local folder, an embedded SQLite catalog ``<storage root>/catalog.db``
  (no server), opened with a busy timeout so that several processes (Dagster's multiprocess executor, two
  runs) can commit to it;
- a storage root on an object store with no catalog URL is a settings error: a SQLite file on an object store
  cannot be locked.

Table identifiers are stable (:func:`table_identifier`): namespace ``<domain>``, table ``<layer>__<table>``.
One catalog object is kept per process and URL (it holds a connection pool).
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.io import SCHEMA_TO_FILE_IO
from pyiceberg.io.fsspec import FsspecFileIO

from mesh_assets.contract.servers import CATALOG_NAME, physical_name
from mesh_assets.errors import MeshError

CATALOG_ENV = "MESH_CATALOG_URI"
CATALOG_FILE = "catalog.db"  # the embedded SQLite catalog, at the storage root
SQLITE_BUSY_TIMEOUT = 60  # seconds a SQLite commit waits for another process's lock before failing
OPEN_ATTEMPTS = 3  # tries to open the catalog
MASKED_SUFFIX = "__masked"  # the masked copy of a port: its own table, ``<layer>__<table>__masked``


def table_identifier(key: tuple[str, str, str]) -> str:
    """The Iceberg identifier of the port ``(domain, layer, table)``: ``<domain>.<layer>__<table>``, e.g.
    ``sales.gold__order_lines_wide``; a bronze table's rejects port is ``sales.bronze__lineitem__rejects`` and
    the masked copy of an output port ``sales.gold__customers__masked``."""
    domain, layer, table = key
    return f"{domain}.{physical_name(layer, table)}"


def catalog_uri(storage_root: str, configured: str | None = None) -> str:
    """The SQL catalog's URL: ``MESH_CATALOG_URI``, else ``configured`` (``mesh.yaml`` ``catalog.uri``), else the
    SQLite file ``<storage_root>/catalog.db`` when the root is a local folder.

    Raises:
        MeshError: the root is not local and no URL is configured (the message says what to set).
    """
    uri = os.environ.get(CATALOG_ENV) or configured
    if uri:
        return uri
    fs, base = fsspec.core.url_to_fs(storage_root)
    if not isinstance(fs, LocalFileSystem):
        raise MeshError(f"the storage root {storage_root} is not a local folder, so the Iceberg catalog cannot be "
                        f"the embedded SQLite file; set mesh.yaml catalog.uri or {CATALOG_ENV} to a SQL database, "
                        "e.g. postgresql+psycopg2://user@host/mesh (docs/operations.md)")
    return f"sqlite:///{os.path.abspath(base)}/{CATALOG_FILE}?timeout={SQLITE_BUSY_TIMEOUT}"


def iceberg_catalog(storage_root: str, configured: str | None = None) -> SqlCatalog:
    """The mesh's catalog for ports under ``storage_root`` (see :func:`catalog_uri`), one per process and URL.

    Raises:
        MeshError: no catalog can be chosen (:func:`catalog_uri`), or the database cannot be reached (the
            message names the URL without its password).
    """
    uri = catalog_uri(storage_root, configured)
    file = None
    if uri.startswith("sqlite:///"):  # a file replaced (a backup restored) gets a new catalog: the pooled
        path = uri.removeprefix("sqlite:///").split("?")[0]  # connections hold the old one
        os.makedirs(os.path.dirname(path), exist_ok=True)
        file = os.stat(path).st_ino if os.path.exists(path) else None
    scheme = storage_root.split("://", 1)[0] if "://" in storage_root else "file"
    return _catalog(uri, scheme, os.getpid(), file)


@functools.cache
def _catalog(uri: str, scheme: str, pid: int, file: int | None) -> SqlCatalog:
    """One catalog per URL, storage scheme, process (a forked child must not share its parent's pool) and
    SQLite file (its inode)."""
    properties: dict[str, Any] = {"uri": uri}
    if scheme not in SCHEMA_TO_FILE_IO:  # e.g. memory://: any fsspec file system, as the rest of the mesh uses
        properties["py-io-impl"] = f"{__name__}.MeshFileIO"
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return SqlCatalog(CATALOG_NAME, **properties)
        except Exception as exc:  # sqlalchemy's errors: unreachable server, bad URL, missing driver, and two
            # processes creating a new catalog's tables at once (the loser finds them on its next attempt)
            error = exc
            time.sleep(0.2 * (attempt + 1))
    shown = uri.split("@", 1)[-1] if "@" in uri else uri
    raise MeshError(f"the Iceberg catalog at {shown} cannot be opened: {str(error).splitlines()[0][:300]}; check "
                    f"mesh.yaml catalog.uri or {CATALOG_ENV}")


class MeshFileIO(FsspecFileIO):
    """pyiceberg's fsspec file IO, also for the file systems pyiceberg has no entry for (``memory://`` in tests,
    any fsspec protocol the storage root uses), opened as the rest of the mesh opens them (``fsspec.filesystem``)."""

    def _get_fs(self, scheme: str, hostname: str | None = None) -> Any:
        if scheme in self._scheme_to_fs:
            return super()._get_fs(scheme, hostname)
        return fsspec.filesystem(scheme)
