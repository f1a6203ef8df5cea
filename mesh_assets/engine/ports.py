"""Output ports: versioned Parquet snapshots with an atomically swapped pointer (docs/architecture.md).

Layout of the port ``<domain>/<layer>/<table>`` under the storage root::

    <root>/<domain>/<layer>/<table>/
        snapshots/<snapshot id>/part-0.parquet   immutable once written
        masked/<snapshot id>/part-0.parquet      the same rows, sensitive columns masked (output ports with
                                                  sensitive columns only); _masked.json lists those columns
        _current.json                             {"snapshot": id, "rows": n, "published_at": …, "run_id": …}

A snapshot id is ``<UTC time %Y%m%dT%H%M%S%fZ>-<run id prefix>``, so ids sort by creation time. Readers
resolve ``_current.json`` first; writers create a new snapshot, audit it, then :meth:`Port.publish` replaces
the pointer in one atomic step (``os.replace`` locally, a single object PUT on object stores). A crash before
publishing leaves the previous snapshot current and readable. The storage root may be any fsspec URL.

A snapshot folder records how it ended: ``_published.json`` (it passed its audit and was published) or
``_unpublished.json`` (a blocking check failed; kept for inspection until retention prunes it). While it is
written, ``_writer.json`` names the writing process (host, pid, its start time). A snapshot with neither
ending whose writer is gone — a process killed mid-write — is an orphan: the next write of the port deletes it
(:meth:`Port.clean_orphans`).

The masked copy of a snapshot (mesh_assets.engine.masked_copy.write_masked_copy) sits in a sibling folder, never under
the clear one, so a reader can be allowed the one without the other: DuckDB's ``allowed_directories`` and
object-store permissions both work by path prefix. It belongs to its snapshot: discarding, pruning and orphan
cleaning delete both.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import fsspec
import psutil
from fsspec.implementations.local import LocalFileSystem

from mesh_assets.contract.model import REJECTS_SUFFIX
from mesh_assets.errors import PortError

POINTER = "_current.json"
DATA_FILE = "part-0.parquet"
PUBLISHED = "_published.json"  # in a snapshot folder: the snapshot passed its audit and was published
UNPUBLISHED = "_unpublished.json"  # a blocking check failed: never published, kept for inspection
WRITER = "_writer.json"  # the process writing the snapshot
MASKED = "masked"  # beside snapshots/: the masked copy of each snapshot of a port with sensitive columns
MASKED_COLUMNS = "_masked.json"  # in a masked copy's folder, written last: {"snapshot": id, "columns": [...]}
# An unfinished snapshot written from another host, whose process cannot be checked, is an orphan after this
# long (seconds); Iceberg's remove_orphan_files waits 3 days for the same reason (a write may still be running).
ORPHAN_AGE = 86400
# A key part is a safe identifier: snake_case, at most 63 characters (the contract layer's rule for domain and
# table names), so it can be neither a path (``..``, ``a/b``) nor SQL (quotes, ``;``). A bronze table's rejects
# port adds this suffix to the table name (mesh_assets.engine.ingestion.rejects_key). Matched with fullmatch: `$`
# alone would also accept a trailing newline.
SAFE_KEY_PART = re.compile(rf"[a-z][a-z0-9_]{{0,62}}(?:{REJECTS_SUFFIX})?")
# What new_snapshot writes; a pointer naming anything else (``../../x``) was not written by the mesh.
SNAPSHOT_ID = re.compile(r"[0-9]{8}T[0-9]{12}Z-[A-Za-z0-9_]{0,8}")


def process_owner() -> dict[str, Any]:
    """This process as the owner of something it writes (a snapshot's ``_writer.json``, a dbt step's folder):
    ``host``, ``pid`` and ``process_started`` (its start time, seconds since the epoch)."""
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
    """A snapshot of a port: ``id``, its folder ``path`` and the ``glob`` of its Parquet files."""

    id: str
    path: str

    @property
    def glob(self) -> str:
        return f"{self.path}/*.parquet"

    @property
    def data_file(self) -> str:
        return f"{self.path}/{DATA_FILE}"


def check_key(key: tuple[str, str, str]) -> tuple[str, str, str]:
    """``key`` if it is three safe identifiers (:data:`SAFE_KEY_PART`), else :class:`PortError`.

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
    return key


class Port:
    """The storage of one table, keyed ``(domain, layer, table)``, under the storage root ``root``.

    Raises :class:`PortError` when a key part is not a safe identifier (:func:`check_key`), before any path
    is built.
    """

    def __init__(self, root: str, key: tuple[str, str, str]):
        self.key = check_key(tuple(key) if isinstance(key, list) else key)
        self.fs, base = fsspec.core.url_to_fs(root)
        self.local = isinstance(self.fs, LocalFileSystem)
        self._protocol = "" if self.local else f"{root.split('://')[0]}://"
        self.path = "/".join([base.rstrip("/"), *key])

    def __repr__(self) -> str:
        return f"Port({'/'.join(self.key)} at {self.url(self.path)})"

    def url(self, path: str) -> str:
        """``path`` as DuckDB must see it (with the protocol for object stores)."""
        return path if self.local else f"{self._protocol}{path.lstrip('/')}"

    def new_snapshot(self, run_id: str) -> Snapshot:
        """Delete the port's orphaned snapshots (:meth:`clean_orphans`), then create an empty, unpublished
        snapshot folder for the run ``run_id``, owned by this process (``_writer.json``), and return it."""
        self.clean_orphans()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        snapshot_id = f"{stamp}-{re.sub(r'[^A-Za-z0-9]', '', run_id)[:8]}"  # a valid SNAPSHOT_ID
        path = f"{self.path}/snapshots/{snapshot_id}"
        self.fs.makedirs(path, exist_ok=True)
        self.fs.pipe_file(f"{path}/{WRITER}", json.dumps({"run_id": run_id, **process_owner()}).encode())
        return Snapshot(snapshot_id, self.url(path))

    def masked(self, snapshot_id: str) -> Snapshot:
        """Where the masked copy of ``snapshot_id`` lives (it may not exist). Raises :class:`PortError` for a
        string that is not a snapshot id."""
        self.snapshot(snapshot_id)  # validates the id before a path is built from it
        return Snapshot(snapshot_id, self.url(f"{self.path}/{MASKED}/{snapshot_id}"))

    def mark_masked(self, snapshot_id: str, columns: tuple[str, ...] | list[str]) -> None:
        """Record that the masked copy of ``snapshot_id`` is complete, with ``columns`` masked."""
        self.fs.pipe_file(f"{self.path}/{MASKED}/{snapshot_id}/{MASKED_COLUMNS}", json.dumps(
            {"snapshot": snapshot_id, "columns": list(columns)}).encode())

    def masked_columns(self, snapshot_id: str) -> tuple[str, ...] | None:
        """The columns masked in the complete masked copy of ``snapshot_id``; ``None`` when it has none (a
        snapshot published before masked copies were written, or a copy whose writer died)."""
        self.snapshot(snapshot_id)
        try:
            with self.fs.open(f"{self.path}/{MASKED}/{snapshot_id}/{MASKED_COLUMNS}", "r") as handle:
                columns = json.load(handle).get("columns")
        except (OSError, ValueError, AttributeError):
            return None
        return tuple(columns) if isinstance(columns, list) else None

    def current_masked(self, columns: tuple[str, ...] | list[str]) -> Snapshot:
        """The masked copy of the current snapshot, for a reader who must see ``columns`` masked.

        Raises:
            PortError: nothing was published, or the current snapshot has no masked copy masking every one of
                ``columns`` (published before masked copies existed, or before a column was classified): the
                message says to run the producer again. The clear files are never offered instead.
        """
        snapshot = self.current_snapshot()
        done = self.masked_columns(snapshot.id)
        missing = [c for c in columns if c not in (done or ())]
        if missing:
            what = "has no masked copy" if done is None else f"has a masked copy that leaves {', '.join(missing)} clear"
            raise PortError(f"port {'/'.join(self.key)}: its current snapshot {snapshot.id} {what}, so readers "
                            f"without a PII grant cannot read it; run its producer again (mesh run --domain "
                            f"{self.key[0]}) to publish a snapshot with a masked copy")
        return self.masked(snapshot.id)

    def _remove(self, snapshot_id: str) -> None:
        """Delete the snapshot ``snapshot_id`` and its masked copy, the copy first (a copy never outlives its
        snapshot, even when the deletion is interrupted)."""
        for folder in (f"{self.path}/{MASKED}/{snapshot_id}", f"{self.path}/snapshots/{snapshot_id}"):
            if self.fs.exists(folder):
                self.fs.rm(folder, recursive=True)

    def _marked(self, snapshot_id: str, marker: str) -> bool:
        return self.fs.exists(f"{self.path}/snapshots/{snapshot_id}/{marker}")

    def finished(self, snapshot_id: str) -> bool:
        """Whether the snapshot was published or refused by its audit (as opposed to being written, or
        orphaned by a writer that died)."""
        return self._marked(snapshot_id, PUBLISHED) or self._marked(snapshot_id, UNPUBLISHED)

    def mark_unpublished(self, snapshot_id: str, reason: str) -> None:
        """Record that ``snapshot_id`` failed its audit (``reason``: the blocking checks that failed)."""
        self.fs.pipe_file(f"{self.path}/snapshots/{snapshot_id}/{UNPUBLISHED}", json.dumps(
            {"snapshot": snapshot_id, "reason": reason, "at": datetime.now(UTC).isoformat()}).encode())

    def discard(self, snapshot_id: str) -> bool:
        """Delete the snapshot ``snapshot_id`` whose write failed, unless it is current; True if deleted.
        Raises :class:`PortError` for a string that is not a snapshot id."""
        self.snapshot(snapshot_id)  # validates the id before a path is built from it
        try:
            if snapshot_id == (self.current() or {}).get("snapshot"):
                return False
        except PortError:  # a broken pointer: keep everything for `mesh rollback`
            return False
        self._remove(snapshot_id)
        return True

    def orphans(self, max_age: float = ORPHAN_AGE) -> list[str]:
        """The snapshots neither published nor refused whose writer is gone: its process on this host no
        longer runs, or (another host, or no ``_writer.json``) the snapshot is older than ``max_age`` seconds.
        The current snapshot is never one."""
        try:
            current = (self.current() or {}).get("snapshot")
        except PortError:  # a broken pointer: keep everything for `mesh rollback`
            return []
        return [s for s in self.snapshot_ids()
                if s != current and not self.finished(s) and self._writer_gone(s, max_age)]

    def _writer_gone(self, snapshot_id: str, max_age: float) -> bool:
        try:
            with self.fs.open(f"{self.path}/snapshots/{snapshot_id}/{WRITER}", "r") as handle:
                writer = json.load(handle)
        except (OSError, ValueError):
            writer = {}
        created = datetime.strptime(snapshot_id.split("-")[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        return owner_gone(writer, created.timestamp(), max_age)

    def clean_orphans(self, max_age: float = ORPHAN_AGE) -> list[str]:
        """Delete the port's orphaned snapshots (:meth:`orphans`) with their masked copies, and masked copies
        whose snapshot is gone; return the ids of the orphaned snapshots."""
        doomed = self.orphans(max_age)
        for snapshot_id in doomed:
            self._remove(snapshot_id)
        folder = f"{self.path}/{MASKED}"
        if self.fs.exists(folder):
            kept = set(self.snapshot_ids())
            for path in self.fs.ls(folder, detail=False):
                if path.rstrip("/").rsplit("/", 1)[-1] not in kept:
                    self.fs.rm(path, recursive=True)
        return doomed

    def current(self) -> dict[str, Any] | None:
        """The pointer's content (``snapshot``, ``rows``, ``published_at``, ``run_id``, …), ``None`` if never
        published. Raises :class:`PortError` when the pointer is unreadable or names a missing snapshot."""
        pointer = f"{self.path}/{POINTER}"
        try:
            with self.fs.open(pointer, "r") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise PortError(f"{self.url(pointer)} is unreadable ({exc}); restore it with `mesh rollback`") from None
        named = data.get("snapshot") if isinstance(data, dict) else data
        if not SNAPSHOT_ID.fullmatch(str(named)):
            raise PortError(f"{self.url(pointer)} names snapshot {str(named)[:80]!r}, which is not a snapshot id; "
                            "restore the pointer with `mesh rollback`")
        if not self.fs.exists(f"{self.path}/snapshots/{data.get('snapshot')}"):
            raise PortError(f"{self.url(pointer)} names snapshot {data.get('snapshot')!r}, which does not exist")
        return data

    def current_snapshot(self) -> Snapshot:
        """The published snapshot readers use. Raises :class:`PortError` when nothing was ever published."""
        info = self.current()
        if info is None:
            raise PortError(f"port {'/'.join(self.key)} has no published snapshot yet at {self.url(self.path)}; "
                            f"materialize it first (mesh run)")
        return self.snapshot(info["snapshot"])

    def snapshot(self, snapshot_id: str) -> Snapshot:
        """The snapshot ``snapshot_id``. Raises :class:`PortError` for a string that is not a snapshot id."""
        if not SNAPSHOT_ID.fullmatch(str(snapshot_id)):
            raise PortError(f"{str(snapshot_id)[:80]!r} is not a snapshot id of port {'/'.join(self.key)}")
        return Snapshot(snapshot_id, self.url(f"{self.path}/snapshots/{snapshot_id}"))

    def snapshot_ids(self) -> list[str]:
        """Every snapshot id, published or not, oldest first."""
        folder = f"{self.path}/snapshots"
        if not self.fs.exists(folder):
            return []
        return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(folder, detail=False))

    def publish(self, snapshot_id: str, info: dict[str, Any] | None = None) -> None:
        """Make ``snapshot_id`` current in one atomic step; ``info`` (row count, run id, …) is stored with it.

        Raises :class:`PortError` when the snapshot does not exist.
        """
        if snapshot_id not in self.snapshot_ids():
            raise PortError(f"cannot publish {'/'.join(self.key)}: no snapshot {snapshot_id!r}")
        body = json.dumps({"snapshot": snapshot_id, "published_at": datetime.now(UTC).isoformat(), **(info or {})})
        # the snapshot keeps what it was published with, so a rollback knows which snapshots passed their audit
        self.fs.pipe_file(f"{self.path}/snapshots/{snapshot_id}/{PUBLISHED}", body.encode())
        pointer = f"{self.path}/{POINTER}"
        if self.local:
            tmp = f"{pointer}.{uuid.uuid4().hex}.tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, pointer)
        else:
            self.fs.pipe_file(pointer, body.encode())

    def rollback(self, to: str | None = None) -> str:
        """Make the published snapshot ``to`` current again (default: the last one published before the current
        one, or the last published one when the pointer is broken) and return its id. Snapshots that never
        passed their audit are never candidates.

        Raises:
            PortError: no such published snapshot (the message lists the candidates).
        """
        try:
            current = (self.current() or {}).get("snapshot")
        except PortError:
            current = None
        published = [s for s in self.snapshot_ids() if self.fs.exists(f"{self.path}/snapshots/{s}/{PUBLISHED}")]
        if to is None:
            older = [s for s in published if current is None or s < current]
            to = older[-1] if older else None
        if to is None or to not in published or to == current:
            raise PortError(f"port {'/'.join(self.key)}: {'no earlier published snapshot' if to is None else repr(to)} "
                            f"to roll back to; published: {', '.join(published) or 'none'} (current: {current})")
        with self.fs.open(f"{self.path}/snapshots/{to}/{PUBLISHED}", "r") as handle:
            info = {k: v for k, v in json.load(handle).items() if k not in ("snapshot", "published_at")}
        self.publish(to, {**info, "rolled_back_from": current})
        return to

    def prune(self, keep: int) -> list[str]:
        """Delete all but the ``keep`` newest finished snapshots (published or refused by their audit), never
        the current one nor one still being written; return the deleted ids."""
        current = (self.current() or {}).get("snapshot")
        ids = [s for s in self.snapshot_ids() if self.finished(s)]
        doomed = [s for s in ids[: max(len(ids) - keep, 0)] if s != current]
        for snapshot_id in doomed:
            self._remove(snapshot_id)
        return doomed
