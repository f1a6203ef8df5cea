"""Output ports as Apache Iceberg tables (docs/architecture.md#storage).

Every table of the mesh — bronze, silver, gold, a bronze table's rejects, metrics, labels — is an Iceberg table
in the mesh's SQL catalog (mesh_assets.engine.iceberg_catalog), identified as ``<domain>.<layer>__<table>`` and
located at ``<root>/<domain>/<layer>/<table>``::

    <root>/<domain>/<layer>/<table>/
        metadata/                          Iceberg's metadata (table metadata JSON, manifest lists, manifests)
        data/<staging id>/part-*.parquet   the files one step wrote; in the table once committed
        data/<staging id>/_writer.json     the process writing them (host, pid, its start time)
        data/<staging id>/_published.json  they were committed (written right after the commit)
        data/<staging id>/_unpublished.json a blocking check failed: never committed, kept for inspection
        data/<staging id>/profile.json     the profile of the staged rows
    <root>/<domain>/<layer>/<table>__masked/   the masked copy, its own table ``<layer>__<table>__masked``

A staging id is ``<UTC time %Y%m%dT%H%M%S%fZ>-<run id prefix>``, so ids sort by creation time. Write–audit–publish
(mesh_assets.engine.write_audit_publish): an engine writes Parquet files into a new staging folder
(:meth:`Port.new_snapshot`), invisible to every reader since no snapshot of the table names them; the checks
run on them; :meth:`Port.publish` then makes ONE Iceberg commit that replaces the table's files with them (an
overwrite registering the files as they are: no second write of the data), its snapshot summary carrying
``mesh.publication`` (the staging id), ``mesh.run-id`` and the rows. A crash before the commit leaves the
previous snapshot current; the catalog's compare-and-swap (and pyiceberg's validation of an overwrite against
commits made since it started) makes a losing concurrent commit retry (at most :data:`COMMIT_ATTEMPTS` times)
on the new current state, so no writer's commit is torn or lost unseen.

Readers (:meth:`Port.current_snapshot`) read the snapshot's manifests through pyiceberg and get the exact list
of its data files (pyiceberg's ``plan_files`` would leave out a file with no rows, all an empty port has); a
snapshot with delete files is refused (the mesh never writes any). A staging folder neither published
nor refused whose writer is gone — a process killed mid-write — is an orphan: the next write of the port
deletes it unless a snapshot references its files (:meth:`Port.clean_orphans`). Retention (:meth:`Port.prune`)
expires old snapshots and deletes the files no kept snapshot references.

The masked copy of a publication (mesh_assets.engine.masked_copy) is committed to the masked table BEFORE the
clear commit, with the same ``mesh.publication``; a masked reader resolves the clear table's snapshot from its
metadata only (never its manifests, whose column bounds hold clear values; the clear table also keeps no
bounds for sensitive columns), then the masked table's snapshot of that publication (:meth:`Port.current_masked`).
"""

from __future__ import annotations

import json
import random
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import fsspec
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pyiceberg.conversions import from_bytes
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchNamespaceError,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationException,
)
from pyiceberg.io.pyarrow import parquet_file_to_data_file
from pyiceberg.manifest import DataFile, ManifestContent
from pyiceberg.table import Table as IcebergTable
from pyiceberg.table.name_mapping import create_mapping_from_schema
from pyiceberg.table.snapshots import Snapshot as IcebergSnapshot
from pyiceberg.transforms import DayTransform, HourTransform, IdentityTransform, MonthTransform
from pyiceberg.types import DateType, StringType, TimestampType

from mesh_assets.contract.iceberg_types import NotAnIcebergType, iceberg_type
from mesh_assets.contract.model import REJECTS_SUFFIX, PartitionColumns, Partitioning, Window
from mesh_assets.engine.iceberg_catalog import MASKED_SUFFIX, iceberg_catalog, table_identifier
from mesh_assets.errors import MeshError, PortError

DATA = "data"  # under a table's location: one folder per staging id
PUBLISHED = "_published.json"  # in a staging folder: its files were committed
UNPUBLISHED = "_unpublished.json"  # a blocking check failed: never committed, kept for inspection
WRITER = "_writer.json"  # the process writing the staging folder
LEGACY_POINTER = "_current.json"  # the pointer of the layout before Iceberg (mesh_assets < Iceberg ports)
DATA_FILE = "part-0.parquet"  # the file DuckDB writes into a staging folder
# An unfinished staging folder written from another host, whose process cannot be checked, is an orphan after
# this long (seconds); Iceberg's remove_orphan_files waits 3 days for the same reason (a write may still run).
ORPHAN_AGE = 86400
# Metadata files (manifests, manifest lists) no kept snapshot references are deleted once this old (seconds):
# a concurrent writer writes its manifests before its commit, and they must survive until it commits.
METADATA_ORPHAN_AGE = 3600
EXPORT_TAG_PREFIX = "mesh-export-"  # tags of snapshots an exported DuckDB file's views read (mesh export duckdb)
COMMIT_ATTEMPTS = 5  # commits tried when another writer commits first, with a random pause between
# Snapshot summary properties the mesh writes (strings, as Iceberg's summaries are).
PUBLICATION, RUN_ID, ENGINE, ROWS = "mesh.publication", "mesh.run-id", "mesh.engine", "mesh.rows"
QUALITY_PASSED, QUALITY_TOTAL, MASKED_COLUMNS = "mesh.quality-passed", "mesh.quality-total", "mesh.masked-columns"
PARTITION, PARTITION_ROWS = "mesh.partition", "mesh.partition-rows"  # a partition's publication: its key(s), rows
# a partitioned table's commit: for each partition, the publication (staging id, the same in a port's clear and
# masked tables) of each unpartitioned input it was built from, carried from commit to commit so it outlives the
# snapshots that wrote the partitions: JSON {"<schema>.<table>": {"<publication>": ["<partition key>", ...]}}
INPUTS = "mesh.inputs"
EPOCH = datetime(1970, 1, 1)  # Iceberg's dates count days, its timestamps microseconds, from it
# A granularity's Iceberg partition transform (Iceberg spec, "Partition Transforms"); Iceberg has no week: a
# weekly port is partitioned by day, and a week's publication replaces its seven days
TRANSFORMS = {"hour": HourTransform, "day": DayTransform, "week": DayTransform, "month": MonthTransform}
TABLE_PROPERTIES = {
    "format-version": "2",
    "write.metadata.delete-after-commit.enabled": "true",  # old metadata JSON files go with their snapshots
    "write.metadata.previous-versions-max": "20",
}
NAME_MAPPING = "schema.name-mapping.default"  # DuckDB and Spark write Parquet without Iceberg field ids
METRICS_NONE = "write.metadata.metrics.column.{}"  # = "none": no bounds of a sensitive column in the manifests
# A key part is a safe identifier: snake_case, at most 63 characters (the contract layer's rule for domain and
# table names), so it can be neither a path (``..``, ``a/b``) nor SQL (quotes, ``;``). A bronze table's rejects
# port adds this suffix to the table name (mesh_assets.engine.ingestion.rejects_key). Matched with fullmatch: `$`
# alone would also accept a trailing newline.
SAFE_KEY_PART = re.compile(rf"[a-z][a-z0-9_]{{0,62}}(?:{REJECTS_SUFFIX})?")
# What new_snapshot writes; a summary naming anything else (``../../x``) was not written by the mesh.
SNAPSHOT_ID = re.compile(r"[0-9]{8}T[0-9]{12}Z-[A-Za-z0-9_]{0,8}")


def process_owner() -> dict[str, Any]:
    """This process as the owner of something it writes (a staging folder's ``_writer.json``, a dbt step's
    folder): ``host``, ``pid`` and ``process_started`` (its start time, seconds since the epoch)."""
    process = psutil.Process()
    return {"host": socket.gethostname(), "pid": process.pid, "process_started": process.create_time()}


def owner_gone(owner: dict[str, Any], created: float, max_age: float = ORPHAN_AGE) -> bool:
    """Whether the process ``owner`` (as :func:`process_owner` wrote it) no longer runs: on this host, its pid
    is gone or now belongs to a process started at another time (the number was reused); on another host, or
    when ``owner`` says nothing, whether what it owns (``created``, seconds since the epoch) is older than
    ``max_age`` seconds."""
    if owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int):
        try:
            return abs(psutil.Process(owner["pid"]).create_time() - float(owner.get("process_started", 0))) > 1
        except (psutil.Error, ValueError, TypeError):
            return True
    return time.time() - created > max_age


@dataclass(frozen=True)
class Snapshot:
    """Files of a port: a staging folder being written or audited (``files`` empty: the Parquet files in
    ``path``), or a committed Iceberg snapshot (``files``: exactly its data files, ``iceberg_id`` its id).

    Attributes:
        id: the staging id the files were written under (the snapshot's ``mesh.publication``).
        path: the staging folder (URL as DuckDB sees it); for a committed snapshot, the folder of its files.
        files: the committed snapshot's data files, in order; empty for a staging folder.
        iceberg_id: the Iceberg snapshot id, for a committed snapshot.
    """

    id: str
    path: str
    files: tuple[str, ...] = ()
    iceberg_id: int | None = None

    @property
    def glob(self) -> str:
        """The Parquet files of a staging folder, as a glob."""
        return f"{self.path}/*.parquet"

    @property
    def data_file(self) -> str:
        """Where DuckDB writes a staging folder's one file."""
        return f"{self.path}/{DATA_FILE}"

    @property
    def source(self) -> str:
        """What DuckDB's ``read_parquet`` reads, as SQL: the list of the committed files (quoted), else the
        staging folder's glob."""
        paths = self.files or (self.glob,)
        return "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in paths) + "]"

    @property
    def read_sql(self) -> str:
        """``read_parquet(<source>)``: the relation of these files, in DuckDB's SQL."""
        return f"read_parquet({self.source})"


def check_key(key: tuple[str, str, str], masked: bool = False) -> tuple[str, str, str]:
    """``key`` if it is three safe identifiers (:data:`SAFE_KEY_PART`), else :class:`PortError`. A table name
    ending in ``__masked`` is the masked copy's (``masked``) and no other port's.

    Defence in depth: contracts already refuse such names (``mesh_assets.contract.loader``); this check keeps a name
    that slipped through any other way out of file paths and object-store keys.
    """
    if not isinstance(key, tuple) or len(key) != 3:
        raise PortError(f"port key {key!r} must be (domain, layer, table)")
    for part, what in zip(key, ("domain", "layer", "table")):
        if not isinstance(part, str) or not SAFE_KEY_PART.fullmatch(part):
            shown = part if not isinstance(part, str) or len(part) <= 80 else f"{part[:80]}… ({len(part)} characters)"
            raise PortError(f"port key {what} {shown!r} is not a safe identifier (snake_case: a-z, 0-9, _, starting "
                            f"with a letter, at most 63 characters); no path is built from it")
    if key[2].endswith(MASKED_SUFFIX) != masked:
        raise PortError(f"port key table {key[2]!r}: a name ending in {MASKED_SUFFIX} is reserved for the masked "
                        "copy of a port; rename the table")
    return key


class Port:
    """The Iceberg table of one table of the mesh, keyed ``(domain, layer, table)``, under the storage root
    ``root``, in the catalog ``catalog_uri`` (``None``: ``MESH_CATALOG_URI`` or the SQLite file at the root;
    mesh_assets.engine.iceberg_catalog.catalog_uri). ``masked``: the port is the masked copy of another.

    Raises :class:`PortError` when a key part is not a safe identifier (:func:`check_key`), before any path
    is built.
    """

    def __init__(self, root: str, key: tuple[str, str, str], catalog_uri: str | None = None, *,
                 masked: bool = False):
        self.key = check_key(tuple(key) if isinstance(key, list) else key, masked)
        self.root, self.catalog_uri, self.is_masked_copy = root, catalog_uri, masked
        self.fs, base = fsspec.core.url_to_fs(root)
        self.local = isinstance(self.fs, LocalFileSystem)
        self._protocol = "" if self.local else f"{root.split('://')[0]}://"
        self.path = "/".join([base.rstrip("/"), *self.key])
        self.identifier = table_identifier(self.key)

    def __repr__(self) -> str:
        return f"Port({self.identifier} at {self.url(self.path)})"

    def url(self, path: str) -> str:
        """``path`` as DuckDB, Spark and pyiceberg must see it (with the protocol for object stores)."""
        return path if self.local else f"{self._protocol}{path.lstrip('/')}"

    @property
    def location(self) -> str:
        """The Iceberg table's location (URL)."""
        return self.url(self.path)

    def masked_port(self) -> Port:
        """The port of this port's masked copy: table ``<layer>__<table>__masked``, location
        ``<root>/<domain>/<layer>/<table>__masked`` (a sibling, never under this port's folder)."""
        domain, layer, table = self.key
        return Port(self.root, (domain, layer, f"{table}{MASKED_SUFFIX}"), self.catalog_uri, masked=True)

    # ---- the Iceberg table ----

    def table(self) -> IcebergTable | None:
        """The port's Iceberg table, ``None`` when nothing was ever committed.

        Raises:
            PortError: the folder holds a port of the layout before Iceberg (``_current.json``): the message
                says to import it (``mesh migrate``) or rebuild it; MeshError: no catalog can be opened.
        """
        catalog = iceberg_catalog(self.root, self.catalog_uri)
        try:
            return catalog.load_table(self.identifier)
        except (NoSuchTableError, NoSuchNamespaceError):
            if self.fs.exists(f"{self.path}/{LEGACY_POINTER}"):
                raise PortError(f"port {'/'.join(self.key)} at {self.location} was written by a version of the mesh "
                                "before Iceberg ports (it has _current.json), which this version does not read; "
                                "import its current snapshot with `mesh migrate`, or move the storage root away and "
                                "rebuild every port with `mesh run`") from None
            return None

    def _create(self, first_file: str) -> IcebergTable:
        """The port's table, created with the schema of ``first_file`` (every column optional) if absent."""
        catalog = iceberg_catalog(self.root, self.catalog_uri)
        try:
            catalog.create_namespace(self.key[0])
        except NamespaceAlreadyExistsError:
            pass
        try:
            return catalog.create_table(self.identifier, schema=_file_schema(self.fs, first_file),
                                        location=self.location, properties=TABLE_PROPERTIES)
        except TableAlreadyExistsError:  # another writer created it first
            return catalog.load_table(self.identifier)

    def _resolve(self, table: IcebergTable | None, as_of: str | int | None = None) -> IcebergSnapshot:
        """The snapshot readers use: the current one, or with ``as_of`` the one with that Iceberg snapshot id
        or publication (staging) id, or the one current at that ISO 8601 time (UTC when no zone is given).

        Raises:
            PortError: nothing was published (yet, or by that time), or no such snapshot.
        """
        name = "/".join(self.key)
        if table is None or table.current_snapshot() is None:
            raise PortError(f"port {name} has no published snapshot yet at {self.location}; materialize it first "
                            "(mesh run)")
        if as_of is None:
            return table.current_snapshot()
        text = str(as_of).strip()
        if text.isdigit():
            found = table.snapshot_by_id(int(text))
        elif SNAPSHOT_ID.fullmatch(text):
            found = next((s for s in table.snapshots() if _summary(s, PUBLICATION) == text), None)
        else:
            moment = as_of_time(text)
            found = table.snapshot_as_of_timestamp(int(moment.timestamp() * 1000))
        if found is None:
            raise PortError(f"port {name} has no snapshot {text[:80]!r} (kept: "
                            f"{', '.join(str(s.snapshot_id) for s in table.snapshots()) or 'none'}; retention expires "
                            "older ones)")
        return found

    def _data_files(self, table: IcebergTable, snapshot: IcebergSnapshot) -> list[DataFile]:
        """Every live data file of ``snapshot``, read from its manifests without a filter: pyiceberg's
        ``plan_files`` leaves out files with no rows, which a port with no rows is. Raises :class:`PortError`
        for a snapshot with delete files (the mesh never writes any: another writer changed the table)."""
        files = []
        for manifest in snapshot.manifests(table.io):
            if manifest.content != ManifestContent.DATA:
                raise PortError(f"port {'/'.join(self.key)}: snapshot {snapshot.snapshot_id} has delete files, "
                                "which the mesh does not read; it was not written by the mesh (rewrite it without "
                                "deletes)")
            files += [entry.data_file for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True)]
        return files

    @staticmethod
    def _pruned(files: list[DataFile], table: IcebergTable,
                within: tuple[PartitionColumns, Window] | None = None) -> list[DataFile]:
        """``files`` (a snapshot's data files, :meth:`_data_files`); with ``within`` (partition columns and a
        window) only those whose partition values or column bounds (from the manifests) may hold rows of the
        window — partition pruning — and always one file, so a reader gets the table's shape even when none
        does."""
        if within is None or not files:
            return files
        columns, window = within
        return [f for f in files if _placement(f, table, columns, window) != "outside"] or files[:1]

    def _snapshot(self, table: IcebergTable, snapshot: IcebergSnapshot,
                  within: tuple[PartitionColumns, Window] | None = None,
                  data_files: list[DataFile] | None = None) -> Snapshot:
        """``snapshot`` as the files a reader reads, sorted (of ``within``: :meth:`_pruned`); ``data_files``:
        its data files when already read."""
        if data_files is None:
            data_files = self._data_files(table, snapshot)
        files = tuple(sorted(f.file_path for f in self._pruned(data_files, table, within)))
        publication = _summary(snapshot, PUBLICATION) or str(snapshot.snapshot_id)
        folder = files[0].rsplit("/", 1)[0] if files else self.url(f"{self.path}/{DATA}/{publication}")
        return Snapshot(publication, folder, files, snapshot.snapshot_id)

    # ---- readers ----

    def current(self) -> dict[str, Any] | None:
        """What the current snapshot says (:func:`snapshot_info`: ``snapshot`` the publication, ``rows``,
        ``published_at``, ``run_id``, ``iceberg_snapshot_id``, ``iceberg_table`` …), ``None`` if never
        published. Raises :class:`PortError` for a port of the previous layout (:meth:`table`)."""
        table = self.table()
        current = table.current_snapshot() if table is not None else None
        return self.snapshot_info(current) if current is not None else None

    def snapshot_info(self, snapshot: IcebergSnapshot) -> dict[str, Any]:
        """``snapshot``'s summary as the mesh reads it: ``snapshot`` (its publication, the staging id),
        ``iceberg_snapshot_id``, ``iceberg_table``, ``rows``, ``published_at`` (ISO 8601 UTC), ``run_id``,
        ``engine`` and ``quality`` (``passed``, ``total``: severity-weighted check results) when recorded."""
        rows = _summary(snapshot, ROWS) or _summary(snapshot, "total-records")
        info: dict[str, Any] = {
            "snapshot": _summary(snapshot, PUBLICATION) or str(snapshot.snapshot_id),
            "iceberg_snapshot_id": snapshot.snapshot_id, "iceberg_table": self.identifier,
            "rows": int(rows) if rows is not None else None,
            "published_at": datetime.fromtimestamp(snapshot.timestamp_ms / 1000, UTC).isoformat(),
            "run_id": _summary(snapshot, RUN_ID), "engine": _summary(snapshot, ENGINE)}
        if _summary(snapshot, QUALITY_TOTAL) is not None:
            info["quality"] = {"passed": float(_summary(snapshot, QUALITY_PASSED) or 0),
                               "total": float(_summary(snapshot, QUALITY_TOTAL) or 0)}
        return info

    def history(self) -> list[dict[str, Any]]:
        """Every kept snapshot (:meth:`snapshot_info`), oldest first, ``current`` marking the current one."""
        table = self.table()
        if table is None:
            return []
        current = table.current_snapshot()
        return [{**self.snapshot_info(s), "current": current is not None and s.snapshot_id == current.snapshot_id}
                for s in sorted(table.snapshots(), key=lambda s: s.timestamp_ms)]

    def current_snapshot(self, as_of: str | int | None = None,
                         within: tuple[PartitionColumns, Window] | None = None) -> Snapshot:
        """The files readers read: the current snapshot's (``as_of``: an earlier one, see :meth:`_resolve`);
        ``within`` (partition columns, a window): only the files that may hold rows of the window (a partitioned
        step's read of its partition, filtered by its SQL as well). Raises :class:`PortError` when nothing was
        published, or there is no such snapshot."""
        table = self.table()
        return self._snapshot(table, self._resolve(table, as_of), within)  # type: ignore[arg-type]

    def partition_snapshots(self, columns: PartitionColumns, windows: Sequence[Window],
                            as_of: str | int | None = None) -> list[tuple[Snapshot, int]]:
        """For each window of ``windows``, :meth:`current_snapshot` ``within`` it (``columns``: the partition
        columns) and the rows its files hold (their record counts in the manifests: an upper bound of the window's
        rows; 0 when no file may hold any), the snapshot's manifests read once for all windows — a range built one
        partition at a time reads each input's manifests once per step, not once per partition. Raises
        :class:`PortError` as :meth:`current_snapshot` does."""
        table = self.table()
        snapshot = self._resolve(table, as_of)
        data_files = self._data_files(table, snapshot)  # type: ignore[arg-type]
        reads = []
        for window in windows:
            kept = [f for f in data_files if _placement(f, table, columns, window) != "outside"]  # type: ignore
            reads.append((self._snapshot(table, snapshot, data_files=kept or data_files[:1]),  # type: ignore
                          sum(f.record_count for f in kept)))
        return reads

    def files_outside(self, columns: PartitionColumns, window: Window) -> tuple[str, ...]:
        """The current snapshot's data files that hold rows and none of ``window`` (by the partition
        ``columns``' values or bounds in the manifests): what a publication of the window keeps. Empty before the
        first publication."""
        table = self.table()
        current = table.current_snapshot() if table is not None else None
        if current is None:
            return ()
        return tuple(sorted(f.file_path for f in self._data_files(table, current)  # type: ignore[arg-type]
                            if f.record_count and _placement(f, table, columns, window) == "outside"))

    def partition_inputs(self) -> dict[str, dict[str, str]]:
        """Each partition of the current snapshot built since :data:`INPUTS` was recorded: key → the versions
        of the unpartitioned inputs it was built from (``<schema>.<table>`` → publication). Empty before the
        first publication of a partition."""
        table = self.table()
        recorded = _summary(table.current_snapshot() if table is not None else None, INPUTS)
        found: dict[str, dict[str, str]] = {}
        for name, versions in (json.loads(recorded) if recorded else {}).items():
            for publication, keys in versions.items():
                for key in keys:
                    found.setdefault(key, {})[name] = publication
        return found

    def masked_columns(self, publication: str) -> tuple[str, ...] | None:
        """The columns masked in the masked copy of ``publication`` (a staging id); ``None`` when it has none
        (published before its columns were classified, or a copy whose writer died before committing)."""
        masked = self.masked_port()
        table = masked.table()
        found = masked._publication(table, publication) if table is not None else None
        if found is None:
            return None
        return tuple(c for c in (_summary(found, MASKED_COLUMNS) or "").split(",") if c)

    def _publication(self, table: IcebergTable, publication: str) -> IcebergSnapshot | None:
        return next((s for s in table.snapshots() if _summary(s, PUBLICATION) == publication), None)

    def current_masked(self, columns: Sequence[str], as_of: str | int | None = None) -> Snapshot:
        """The masked copy of the current snapshot (``as_of``: of an earlier one), for a reader who must see
        ``columns`` masked. Only the clear table's metadata is read (its snapshot's ``mesh.publication``),
        never its manifests.

        Raises:
            PortError: nothing was published, or the snapshot has no masked copy masking every one of
                ``columns`` (published before masked copies existed, or before a column was classified): the
                message says to run the producer again. The clear files are never offered instead.
        """
        snapshot = self._resolve(self.table(), as_of)
        publication = _summary(snapshot, PUBLICATION) or ""
        masked = self.masked_port()
        table = masked.table()
        found = masked._publication(table, publication) if table is not None and publication else None
        done = tuple(c for c in (_summary(found, MASKED_COLUMNS) or "").split(",") if c) if found else None
        missing = [c for c in columns if c not in (done or ())]
        if found is None or missing:
            what = ("has no masked copy" if found is None
                    else f"has a masked copy that leaves {', '.join(missing)} clear")
            raise PortError(f"port {'/'.join(self.key)}: its snapshot {publication or snapshot.snapshot_id} {what}, "
                            f"so readers without a PII grant cannot read it; run its producer again (mesh run "
                            f"--domain {self.key[0]}) to publish a snapshot with a masked copy")
        return masked._snapshot(table, found)  # type: ignore[arg-type]

    # ---- staging ----

    def new_snapshot(self, run_id: str, snapshot_id: str | None = None) -> Snapshot:
        """Delete the port's orphaned staging folders (:meth:`clean_orphans`), then create an empty staging
        folder ``data/<staging id>`` for the run ``run_id``, owned by this process (``_writer.json``), and
        return it. Nothing reads it until :meth:`publish` commits its files. ``snapshot_id``: the staging id to
        use (a masked copy takes its clear snapshot's); default a new one."""
        self.clean_orphans()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        snapshot_id = self.snapshot(snapshot_id).id if snapshot_id else \
            f"{stamp}-{re.sub(r'[^A-Za-z0-9]', '', run_id)[:8]}"  # a valid SNAPSHOT_ID
        path = f"{self.path}/{DATA}/{snapshot_id}"
        self.fs.makedirs(path, exist_ok=True)
        self.fs.pipe_file(f"{path}/{WRITER}", json.dumps({"run_id": run_id, **process_owner()}).encode())
        return Snapshot(snapshot_id, self.url(path))

    def snapshot(self, snapshot_id: str) -> Snapshot:
        """The staging folder ``snapshot_id``. Raises :class:`PortError` for a string that is not a staging id."""
        if not SNAPSHOT_ID.fullmatch(str(snapshot_id)):
            raise PortError(f"{str(snapshot_id)[:80]!r} is not a snapshot id of port {'/'.join(self.key)}")
        return Snapshot(snapshot_id, self.url(f"{self.path}/{DATA}/{snapshot_id}"))

    def staged_files(self, snapshot_id: str) -> list[str]:
        """The Parquet files in the staging folder ``snapshot_id`` (URLs), in name order."""
        folder = f"{self.path}/{DATA}/{self.snapshot(snapshot_id).id}"
        if not self.fs.exists(folder):
            return []
        return sorted(self.url(p) for p in self.fs.ls(folder, detail=False) if p.endswith(".parquet")
                      and not p.rsplit("/", 1)[-1].startswith((".", "_")))

    def snapshot_ids(self) -> list[str]:
        """Every staging id with a folder (committed, refused, or being written), oldest first."""
        folder = f"{self.path}/{DATA}"
        if not self.fs.exists(folder):
            return []
        return sorted(name for p in self.fs.ls(folder, detail=False)
                      if SNAPSHOT_ID.fullmatch(name := p.rstrip("/").rsplit("/", 1)[-1]))

    def _marked(self, snapshot_id: str, marker: str) -> bool:
        return self.fs.exists(f"{self.path}/{DATA}/{snapshot_id}/{marker}")

    def finished(self, snapshot_id: str) -> bool:
        """Whether the staging folder was committed or refused by its audit (as opposed to being written, or
        orphaned by a writer that died)."""
        return self._marked(snapshot_id, PUBLISHED) or self._marked(snapshot_id, UNPUBLISHED)

    def mark_unpublished(self, snapshot_id: str, reason: str) -> None:
        """Record that ``snapshot_id`` failed its audit (``reason``: the blocking checks that failed)."""
        self.fs.pipe_file(f"{self.path}/{DATA}/{snapshot_id}/{UNPUBLISHED}", json.dumps(
            {"snapshot": snapshot_id, "reason": reason, "at": datetime.now(UTC).isoformat()}).encode())

    def referenced(self, table: IcebergTable | None = None) -> set[str]:
        """The data files any kept snapshot of the table references (URLs); empty without a table."""
        table = table if table is not None else self.table()
        if table is None:
            return set()
        files = set()
        for snapshot in table.snapshots():
            for manifest in snapshot.manifests(table.io):
                files.update(e.data_file.file_path for e in manifest.fetch_manifest_entry(table.io))
        return files

    def _folder_referenced(self, snapshot_id: str, referenced: set[str]) -> bool:
        prefix = self.url(f"{self.path}/{DATA}/{snapshot_id}/")
        return any(f.startswith(prefix) for f in referenced)

    def discard(self, snapshot_id: str) -> bool:
        """Delete the staging folder ``snapshot_id`` whose write failed, with the masked copy staged for it,
        unless a snapshot references its files; True if deleted. Raises :class:`PortError` for a string that
        is not a staging id."""
        self.snapshot(snapshot_id)  # validates the id before a path is built from it
        if self._folder_referenced(snapshot_id, self.referenced()):
            return False
        if not self.is_masked_copy:
            self.masked_port().discard(snapshot_id)
        self._rm(f"{self.path}/{DATA}/{snapshot_id}")
        return True

    def orphans(self, max_age: float = ORPHAN_AGE) -> list[str]:
        """The staging folders neither committed nor refused whose writer is gone (its process on this host no
        longer runs, or — another host, or no ``_writer.json`` — the folder is older than ``max_age`` seconds)
        and whose files no snapshot references."""
        candidates = [s for s in self.snapshot_ids() if not self.finished(s) and self._writer_gone(s, max_age)]
        if not candidates:
            return []
        referenced = self.referenced()  # read after listing: a commit seen as unfinished is then seen here
        return [s for s in candidates if not self._folder_referenced(s, referenced)]

    def _writer_gone(self, snapshot_id: str, max_age: float) -> bool:
        try:
            with self.fs.open(f"{self.path}/{DATA}/{snapshot_id}/{WRITER}", "r") as handle:
                writer = json.load(handle)
        except (OSError, ValueError):
            writer = {}
        created = datetime.strptime(snapshot_id.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        return owner_gone(writer if isinstance(writer, dict) else {}, created.timestamp(), max_age)

    def clean_orphans(self, max_age: float = ORPHAN_AGE) -> list[str]:
        """Delete the port's orphaned staging folders (:meth:`orphans`) and those of its masked copy; return
        the ids of the port's own."""
        doomed = self.orphans(max_age)
        for snapshot_id in doomed:
            self._rm(f"{self.path}/{DATA}/{snapshot_id}")
        if not self.is_masked_copy:
            self.masked_port().clean_orphans(max_age)
        return doomed

    # ---- publication ----

    def publish(self, snapshot_id: str, info: Mapping[str, Any] | None = None, *,
                columns: Mapping[str, str] | None = None, sensitive: Sequence[str] = (),
                partitioning: Partitioning | None = None, window: Window | None = None) -> dict[str, Any]:
        """Make the files of the staging folder ``snapshot_id`` the table's content in ONE Iceberg commit
        (created with the files' schema on the first publication; the schema evolved in the same commit when
        the files' columns changed), and return the new current snapshot's :meth:`snapshot_info`.

        ``partitioning``: the table's partition spec is its ``month``/``day`` transform of the time column and
        the identity of the static column (evolved in the same commit when it differs). ``window``: the files
        replace only that window's — the current files whose partition columns lie in it are deleted, the
        others kept (a metadata-only commit: nothing is rewritten); the summary's ``mesh.rows`` is then the
        table's rows after the commit, ``mesh.partition`` the window and ``mesh.partition-rows`` its rows.
        Each staged file must hold one partition's rows.

        ``info``: ``rows``, ``run_id``, ``engine``, ``quality`` (``passed``, ``total``), ``masked_columns``,
        stored in the snapshot's summary. ``columns``: the contract's columns and DuckDB types; each must be
        the Iceberg type mesh_assets.contract.iceberg_types maps it to (nothing widens silently). ``sensitive``:
        columns whose bounds the table's manifests must not keep. A commit another writer beat is retried on
        the new state (at most :data:`COMMIT_ATTEMPTS` times, with a random pause).

        Raises:
            PortError: the folder holds no Parquet file, a column's type differs from the contract's, a current
                file holds rows both inside and outside ``window`` (written before the table was partitioned:
                the message says to rebuild every partition in one range run), or the commit lost
                :data:`COMMIT_ATTEMPTS` times (nothing was published then).
        """
        files = self.staged_files(snapshot_id)
        if not files:
            raise PortError(f"cannot publish {'/'.join(self.key)}: staging folder {snapshot_id!r} holds no Parquet "
                            "file")
        info = dict(info or {})
        summary = {PUBLICATION: snapshot_id, **{k: str(v) for k, v in (
            (RUN_ID, info.get("run_id")), (ROWS, info.get("rows")), (ENGINE, info.get("engine")),
            (QUALITY_PASSED, (info.get("quality") or {}).get("passed")),
            (QUALITY_TOTAL, (info.get("quality") or {}).get("total"))) if v is not None}}
        if info.get("masked_columns") is not None:
            summary[MASKED_COLUMNS] = ",".join(info["masked_columns"])

        schema = _file_schema(self.fs, files[0])
        for attempt in range(COMMIT_ATTEMPTS):
            table = self.table() or self._create(files[0])
            try:
                self._commit(table, files, schema, summary, columns or {}, sensitive, partitioning, window,
                             info.get("inputs"))
                break
            # lost the catalog's compare-and-swap, or pyiceberg saw another writer's commit first (its conflict
            # validation of an overwrite): retry on the new current state
            except (CommitFailedException, ValidationException):
                time.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
        else:
            raise PortError(f"{'/'.join(self.key)}: the commit of {snapshot_id} lost to other writers "
                            f"{COMMIT_ATTEMPTS} times in a row, so it gave up: nothing of it was published and the "
                            f"table stays on another writer's snapshot; run the step again")
        self.fs.pipe_file(f"{self.path}/{DATA}/{snapshot_id}/{PUBLISHED}", json.dumps(
            {"snapshot": snapshot_id, "at": datetime.now(UTC).isoformat()}).encode())
        table = self.table()
        current = self._publication(table, snapshot_id) if table is not None else None
        return self.snapshot_info(current) if current is not None else {"snapshot": snapshot_id}

    def _commit(self, table: IcebergTable, files: list[str], schema: pa.Schema, summary: dict[str, str],
                columns: Mapping[str, str], sensitive: Sequence[str], partitioning: Partitioning | None = None,
                window: Window | None = None, inputs: Mapping[str, str] | None = None) -> None:
        """One transaction: table properties (name mapping, no bounds for ``sensitive`` columns), the schema
        of ``schema`` when it changed, the partition spec of ``partitioning`` when it differs, then an overwrite
        deleting every current file (with ``window``: the window's, :meth:`publish`) and adding ``files``;
        with ``window`` and ``inputs`` (``<schema>.<table>`` → publication), :data:`INPUTS` carried from the
        current snapshot with the window's partitions built from ``inputs``."""
        with table.transaction() as tx:
            properties = {}
            if NAME_MAPPING not in tx.table_metadata.properties:
                properties[NAME_MAPPING] = create_mapping_from_schema(tx.table_metadata.schema()).model_dump_json()
            for column in sensitive:
                if tx.table_metadata.properties.get(METRICS_NONE.format(column)) != "none":
                    properties[METRICS_NONE.format(column)] = "none"
            if properties:
                tx.set_properties(**properties)
            if _arrow_fields(tx.table_metadata.schema().as_arrow()) != _arrow_fields(schema):
                with tx.update_schema(allow_incompatible_changes=True) as update:
                    for field in tx.table_metadata.schema().fields:
                        if field.name not in schema.names:
                            update.delete_column(field.name)
                    update.union_by_name(schema)
                    for before, name in zip(schema.names, schema.names[1:]):
                        update.move_after(name, before)
            current = tx.table_metadata.schema()
            for name, duckdb_type in columns.items():
                stored = current.find_field(name).field_type if name in current.column_names else None
                try:
                    wanted = iceberg_type(duckdb_type)
                except NotAnIcebergType as exc:
                    raise PortError(f"{'/'.join(self.key)}: column {name}: {exc}") from None
                if stored != wanted:
                    raise PortError(f"{'/'.join(self.key)}: column {name} would be stored as {stored}, but the "
                                    f"contract's {duckdb_type} is Iceberg {wanted}; nothing was published")
            _evolve_spec(tx, partitioning)
            current_snapshot = table.current_snapshot()
            if window is not None and inputs is not None:
                summary[INPUTS] = json.dumps(_carried_inputs(_summary(current_snapshot, INPUTS), window, inputs),
                                             sort_keys=True)
            old = self._data_files(table, current_snapshot) if current_snapshot is not None else []
            if window is not None and partitioning is not None:
                old = self._window_files(old, table, partitioning, window, summary)
            with tx.update_snapshot(snapshot_properties=summary).overwrite() as overwrite:
                for data_file in old:
                    overwrite.delete_data_file(data_file)
                for path in files:
                    overwrite.append_data_file(parquet_file_to_data_file(table.io, tx.table_metadata, path))

    def _window_files(self, files: list[DataFile], table: IcebergTable, partitioning: Partitioning, window: Window,
                      summary: dict[str, str]) -> list[DataFile]:
        """Of the current ``files``, those a publication of ``window`` replaces: the files of its partitions
        (by the partition columns' values or bounds in the manifests) and files with no rows; sets
        ``summary``'s rows to the table's rows after the commit. Raises :class:`PortError` for a file straddling
        the window."""
        doomed, kept_rows = [], 0
        for data_file in files:
            placement = _placement(data_file, table, partitioning.columns, window)
            if placement == "straddles":
                raise PortError(f"{'/'.join(self.key)}: data file {data_file.file_path} holds rows inside and outside "
                                f"partition {window.label} (written before the table was partitioned by "
                                f"{' and '.join(partitioning.column_names)}); "
                                "nothing was published. Rebuild every partition in one range run: mesh run --from "
                                "<first partition> --to <last partition>")
            if placement == "inside" or data_file.record_count == 0:
                doomed.append(data_file)
            else:
                kept_rows += data_file.record_count
        staged = summary.get(PARTITION_ROWS) or summary.get(ROWS, "0")  # set by an earlier attempt of the commit
        summary[PARTITION], summary[PARTITION_ROWS] = window.label, staged
        summary[ROWS] = str(kept_rows + int(staged))
        return doomed

    def migrate(self) -> str | None:
        """Import this port from the layout before Iceberg ports (``snapshots/<id>/`` plus ``_current.json``):
        the files of its current snapshot become the first snapshot of its Iceberg table, registered where they
        are (no copy), with the pointer's rows, run and check results; the masked copy of that snapshot
        (``masked/<id>/``, complete with ``_masked.json``) becomes the masked table's first snapshot. The
        pointer is then renamed ``_current.json.migrated``. Older snapshots are not imported (their folders
        stay, unread; delete them when the import is checked). Returns the imported snapshot id, ``None`` when
        the folder holds no port of that layout.

        Raises:
            PortError: the pointer is unreadable or names no snapshot with Parquet files, or the port already
                has an Iceberg table (a port written after the pointer: nothing is imported).
        """
        pointer = f"{self.path}/{LEGACY_POINTER}"
        if not self.fs.exists(pointer):
            return None
        name = "/".join(self.key)
        try:
            with self.fs.open(pointer, "r") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise PortError(f"{self.url(pointer)} is unreadable ({exc}); nothing of {name} was imported") from None
        snapshot_id = str(data.get("snapshot") if isinstance(data, dict) else data)
        if not SNAPSHOT_ID.fullmatch(snapshot_id):
            raise PortError(f"{self.url(pointer)} names {snapshot_id[:80]!r}, which is not a snapshot id; nothing "
                            f"of {name} was imported")
        catalog = iceberg_catalog(self.root, self.catalog_uri)
        if catalog.table_exists(self.identifier):
            raise PortError(f"port {name} already has the Iceberg table {self.identifier}; nothing was imported "
                            f"(remove {self.url(pointer)} if the table is the port's current state)")
        files = self._legacy_files(f"{self.path}/snapshots/{snapshot_id}")
        if not files:
            raise PortError(f"{self.url(pointer)} names snapshot {snapshot_id}, which has no Parquet file; nothing "
                            f"of {name} was imported")
        masked_folder = f"{self.path}/masked/{snapshot_id}"
        try:
            with self.fs.open(f"{masked_folder}/_masked.json", "r") as handle:
                masked_columns = json.load(handle).get("columns")
        except (OSError, ValueError, AttributeError):
            masked_columns = None
        if isinstance(masked_columns, list) and self._legacy_files(masked_folder):
            masked = self.masked_port()
            masked._adopt(snapshot_id, self._legacy_files(masked_folder),
                          {"run_id": data.get("run_id"), "masked_columns": masked_columns})
        self._adopt(snapshot_id, files, data, sensitive=masked_columns or ())
        self.fs.mv(pointer, f"{pointer}.migrated")
        return snapshot_id

    def _legacy_files(self, folder: str) -> list[str]:
        if not self.fs.exists(folder):
            return []
        return sorted(self.url(p) for p in self.fs.ls(folder, detail=False) if p.endswith(".parquet"))

    def _adopt(self, publication: str, files: list[str], info: Mapping[str, Any],
               sensitive: Sequence[str] = ()) -> None:
        """Commit ``files`` (anywhere under the table's location) as the first snapshot of the new table."""
        quality = info.get("quality") if isinstance(info.get("quality"), dict) else {}
        summary = {PUBLICATION: publication, **{k: str(v) for k, v in (
            (RUN_ID, info.get("run_id")), (ROWS, info.get("rows")), (ENGINE, info.get("engine")),
            (QUALITY_PASSED, quality.get("passed")), (QUALITY_TOTAL, quality.get("total"))) if v is not None}}
        if info.get("masked_columns") is not None:
            summary[MASKED_COLUMNS] = ",".join(info["masked_columns"])

        table = self._create(files[0])
        self._commit(table, files, _file_schema(self.fs, files[0]), summary, {}, sensitive)

    def rollback(self, to: str | None = None) -> str:
        """Make the snapshot ``to`` (an Iceberg snapshot id or a publication id; default: the one committed
        before the current one) current again and return its publication id. Every snapshot passed its audit:
        only audited files are ever committed.

        Raises:
            PortError: no such snapshot (the message lists the candidates).
        """
        table = self.table()
        snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms) if table is not None else []
        current = table.current_snapshot() if table is not None else None
        if to is None:
            older = [s for s in snapshots if current is not None and s.timestamp_ms < current.timestamp_ms]
            target = older[-1] if older else None
        else:
            target = next((s for s in snapshots if str(to) in (str(s.snapshot_id), _summary(s, PUBLICATION))), None)
        if target is None or (current is not None and target.snapshot_id == current.snapshot_id):
            listed = ", ".join(f"{s.snapshot_id} ({_summary(s, PUBLICATION)})" for s in snapshots) or "none"
            raise PortError(f"port {'/'.join(self.key)}: {'no earlier published snapshot' if to is None else repr(to)}"
                            f" to roll back to; published: {listed} (current: "
                            f"{current.snapshot_id if current is not None else None})")
        assert table is not None
        table.manage_snapshots().set_current_snapshot(target.snapshot_id).commit()
        return _summary(target, PUBLICATION) or str(target.snapshot_id)

    def tag(self, name: str, snapshot_id: int) -> None:
        """Point the tag ``name`` at the Iceberg snapshot ``snapshot_id`` (moving it if it exists): retention
        never expires a tagged snapshot (``mesh export duckdb`` tags what its views read)."""
        table = self.table()
        if table is None:
            raise PortError(f"port {'/'.join(self.key)} has no published snapshot to tag")
        refs = table.metadata.refs
        if name in refs and refs[name].snapshot_id == snapshot_id:
            return
        manage = table.manage_snapshots()
        if name in refs:
            manage = manage.remove_tag(name)
        manage.create_tag(snapshot_id, name).commit()

    def prune(self, keep: int) -> list[str]:
        """Retention: expire all but the ``keep`` newest snapshots (never the current one nor a tagged one),
        then delete the staging folders whose files no kept snapshot references, the refused ones beyond the
        ``keep`` newest, and metadata files no kept snapshot references (older than
        :data:`METADATA_ORPHAN_AGE`, since a concurrent writer's manifests exist before its commit). Folders
        still being written are never touched. The masked copy keeps the snapshots of the kept publications.
        Returns the expired publications."""
        finished = {s: self._marked(s, PUBLISHED) for s in self.snapshot_ids() if self.finished(s)}
        table = self.table()
        expired: list[str] = []
        if table is not None:
            snapshots = sorted(table.snapshots(), key=lambda s: s.timestamp_ms)
            current = table.current_snapshot()
            kept = ({s.snapshot_id for s in snapshots[-keep:]} | ({current.snapshot_id} if current else set())
                    | {ref.snapshot_id for ref in table.metadata.refs.values()})
            doomed = [s for s in snapshots if s.snapshot_id not in kept]
            if doomed:
                try:
                    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in doomed]).commit()
                    expired = [_summary(s, PUBLICATION) or str(s.snapshot_id) for s in doomed]
                except CommitFailedException:  # another writer committed: the next publication expires them
                    pass
            table = self.table()
        referenced = self.referenced(table)  # after listing the folders: see orphans()
        refused = [s for s, published in finished.items() if not published]
        for snapshot_id, published in finished.items():
            if self._folder_referenced(snapshot_id, referenced):
                continue
            if published or snapshot_id in refused[: max(len(refused) - keep, 0)]:
                self._rm(f"{self.path}/{DATA}/{snapshot_id}")
        if table is not None:
            self._remove_unreferenced_metadata(table)
        if not self.is_masked_copy:
            masked = self.masked_port()
            publications = {_summary(s, PUBLICATION) for s in table.snapshots()} if table is not None else set()
            masked.prune_to(publications, keep)
        return expired

    def prune_to(self, publications: set[str | None], keep: int) -> None:
        """The masked copy's retention: expire the snapshots of publications the clear table no longer keeps
        (never the current one), then delete what no kept snapshot references (see :meth:`prune`)."""
        table = self.table()
        if table is None:
            return
        current = table.current_snapshot()
        doomed = [s.snapshot_id for s in table.snapshots() if _summary(s, PUBLICATION) not in publications
                  and (current is None or s.snapshot_id != current.snapshot_id)]
        if doomed:
            try:
                table.maintenance.expire_snapshots().by_ids(doomed).commit()
            except CommitFailedException:
                pass
        self.prune(max(keep, len(publications)))

    def _rm(self, path: str) -> None:
        """Delete ``path`` (a folder with its content), unless another process deleted it first."""
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def _remove_unreferenced_metadata(self, table: IcebergTable) -> None:
        """Delete manifest lists and manifests under ``metadata/`` that no kept snapshot references and that
        are older than :data:`METADATA_ORPHAN_AGE` (pyiceberg has no orphan-file removal)."""
        keep = set()
        for snapshot in table.snapshots():
            keep.add(snapshot.manifest_list)
            keep.update(m.manifest_path for m in snapshot.manifests(table.io))
        folder = f"{self.path}/metadata"
        try:
            listed = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return
        now = time.time()
        for entry in listed:
            name = entry["name"]
            if not name.endswith(".avro") or self.url(name) in keep or name in keep:
                continue
            modified = _modified(entry)
            if modified is not None and now - modified > METADATA_ORPHAN_AGE:
                self._rm(name)


def as_of_time(text: str) -> datetime:
    """``text`` (ISO 8601, e.g. ``2026-01-02T03:04:05Z``) as an aware time, UTC when it gives no zone.

    Raises:
        PortError: ``text`` is neither a snapshot id nor such a time (the message shows both forms).
    """
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise PortError(f"--as-of {text[:80]!r} is neither an Iceberg snapshot id (digits, see `mesh ports`) nor an "
                        "ISO 8601 time such as 2026-01-02T03:04:05Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _evolve_spec(tx: Any, partitioning: Partitioning | None) -> None:
    """Make the partition spec of the transaction's table that of ``partitioning`` (the time column's
    ``hour``/``day``/``month`` transform, :data:`TRANSFORMS`, field ``<column>_<transform>``, then the static
    column's identity, field ``<column>``), or unpartitioned for ``None``, when it is not already."""
    spec, schema = tx.table_metadata.spec(), tx.table_metadata.schema()
    wanted: list[tuple[str, Any, str]] = []  # (column, transform, partition field name)
    if partitioning is not None and partitioning.time is not None:
        time = partitioning.time
        transform = TRANSFORMS[time.granularity]()
        wanted.append((time.column, transform, f"{time.column}_{transform}"))
    if partitioning is not None and partitioning.static is not None:
        wanted.append((partitioning.static.column, IdentityTransform(), partitioning.static.column))
    present = [(f.source_id, f.transform) for f in spec.fields]
    if present == [(schema.find_field(column).field_id, transform) for column, transform, _ in wanted]:
        return
    with tx.update_spec() as update:
        for spec_field in spec.fields:
            update.remove_field(spec_field.name)
        for column, transform, name in wanted:
            update.add_field(column, transform, name)


def _field_id(table: IcebergTable, column: str) -> int | None:
    """The Iceberg field id of ``column`` in ``table``'s current schema, ``None`` when it has no such column."""
    schema = table.schema()
    return schema.find_field(column).field_id if column in schema.column_names else None


def _placement(data_file: DataFile, table: IcebergTable, columns: PartitionColumns, window: Window) -> str:
    """Where ``data_file``'s rows lie against ``window``: ``inside``, ``outside``, or ``straddles`` (also when it
    cannot be told: no statistics kept), by each partition column of ``columns`` the window restricts — the time
    column by its bounds in the file's manifest entry (:func:`_time_placement`), the static column by the file's
    partition value (:func:`_static_placement`). Outside when outside by either."""
    if data_file.record_count == 0:
        return "outside"
    places = []
    if columns.time is not None and window.start is not None:
        places.append(_time_placement(data_file, table, _field_id(table, columns.time), window))
    if columns.static is not None and window.values is not None:
        places.append(_static_placement(data_file, table, _field_id(table, columns.static), window.values))
    return "outside" if "outside" in places else "straddles" if "straddles" in places else "inside"


def _time_placement(data_file: DataFile, table: IcebergTable, field_id: int | None, window: Window) -> str:
    """Where ``data_file``'s rows lie against ``window``'s dates or times, by the DATE or TIMESTAMP column
    ``field_id``'s bounds."""
    lower = (data_file.lower_bounds or {}).get(field_id) if field_id is not None else None
    upper = (data_file.upper_bounds or {}).get(field_id) if field_id is not None else None
    if lower is None or upper is None or window.start is None or window.end is None:
        return "straddles"
    field_type = table.schema().find_field(field_id).field_type  # type: ignore[arg-type]
    if isinstance(field_type, DateType):
        first, last = (EPOCH + timedelta(days=from_bytes(field_type, b)) for b in (lower, upper))
    elif isinstance(field_type, TimestampType):
        first, last = (EPOCH + timedelta(microseconds=from_bytes(field_type, b)) for b in (lower, upper))
    else:
        return "straddles"
    start, end = (_naive(moment) for moment in (window.start, window.end))
    if last < start or first >= end:
        return "outside"
    return "inside" if first >= start and last < end else "straddles"


def _naive(moment: date) -> datetime:
    """``moment`` (a date: its midnight) as a naive datetime, as an Iceberg ``timestamp`` (without zone) is."""
    return moment if isinstance(moment, datetime) else datetime.combine(moment, datetime.min.time())


def _static_placement(data_file: DataFile, table: IcebergTable, field_id: int | None,
                      values: tuple[str, ...]) -> str:
    """Where ``data_file``'s rows lie against the static ``values``: by its partition value of the string column
    ``field_id`` when its partition spec holds the column's identity, else by the column's bounds (which
    Iceberg may truncate: a file whose bounds differ straddles, unless no value lies between them)."""
    spec = table.specs().get(data_file.spec_id) if field_id is not None else None
    for position, spec_field in enumerate(spec.fields if spec is not None else ()):
        if spec_field.source_id == field_id and isinstance(spec_field.transform, IdentityTransform):
            return "inside" if data_file.partition[position] in values else "outside"
    lower = (data_file.lower_bounds or {}).get(field_id) if field_id is not None else None
    upper = (data_file.upper_bounds or {}).get(field_id) if field_id is not None else None
    if lower is None or upper is None:
        return "straddles"
    first, last = from_bytes(StringType(), lower), from_bytes(StringType(), upper)
    if all(v < first or v > last for v in values):
        return "outside"
    return "inside" if first == last and first in values else "straddles"


def _carried_inputs(recorded: str | None, window: Window, inputs: Mapping[str, str]) -> dict[str, dict[str, list]]:
    """:data:`INPUTS` after a publication of ``window`` built from ``inputs``: ``recorded`` (the current
    snapshot's, JSON, or None) without the window's partitions, then the window's under ``inputs``."""
    carried: dict[str, dict[str, list]] = {}
    for name, versions in (json.loads(recorded) if recorded else {}).items():
        for publication, keys in versions.items():
            kept = [k for k in keys if k not in window.keys]
            if kept:
                carried.setdefault(name, {})[publication] = kept
    for name, publication in inputs.items():
        keys = carried.setdefault(name, {}).setdefault(publication, [])
        carried[name][publication] = sorted({*keys, *window.keys})
    return carried


def _summary(snapshot: IcebergSnapshot | None, key: str) -> str | None:
    if snapshot is None or snapshot.summary is None:
        return None
    value = snapshot.summary[key]
    return None if value is None else str(value)


def _file_schema(fs: Any, path: str) -> pa.Schema:
    """The Arrow schema of the Parquet file ``path`` (read from its footer), every field optional."""
    try:
        with fs.open(path, "rb") as handle:
            schema = pq.read_schema(handle)
    except (OSError, pa.ArrowException) as exc:
        raise MeshError(f"{path} cannot be read as Parquet: {exc}") from None
    return pa.schema([f.with_nullable(True) for f in schema]).remove_metadata()


_SAME_ICEBERG_TYPE = {pa.int8(): pa.int32(), pa.int16(): pa.int32(), pa.large_string(): pa.string(),
                      pa.large_binary(): pa.binary(), pa.string_view(): pa.string()}


def _arrow_fields(schema: pa.Schema) -> list[tuple[str, str]]:
    """``(name, type)`` of ``schema``'s fields, with types Iceberg stores the same way made equal."""
    return [(f.name, str(_SAME_ICEBERG_TYPE.get(f.type, f.type))) for f in schema]


def _modified(entry: dict[str, Any]) -> float | None:
    value = entry.get("mtime") or entry.get("LastModified") or entry.get("created")
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else None
