"""The contract registry's storage: a folder or an object-store prefix (fsspec) of JSON entries, written atomically.

Layout under the registry's root (``mesh.yaml`` ``registry.path``, default ``.mesh/registry``; env
``MESH_REGISTRY``)::

    contracts/<domain>/<product>/<version>.json   one published version of a data product's contract
    expectations/<consumer domain>.json           what a consumer domain relies on in the ports it reads

A **contract entry** (:class:`ContractEntry`) holds the ODCS document as the producer's repository has it
(``contract``), its SHA-256, the domain's team, members and description, and each output port with its Iceberg
table identifier. Entries are versioned by the contract's ODCS ``version`` (semantic versioning): a version is
written once; publishing it again with the same document is a no-op (``unchanged``), with another document it is
refused (bump the version). An **expectations entry** (:class:`ExpectationsEntry`) is replaced whole by each
publication of its consumer.

Writes never tear: on a local folder the entry is written to a temporary file beside it, flushed, then linked
into place (``os.link``, which fails if the version exists: two publishers of one version cannot both win) or
renamed over the old one (``os.replace``, expectations); on an object store one ``PUT`` of the whole object is
atomic, but *create if absent* is a check then a write, so two publishers racing on one new version there can
both succeed, the last one winning.

This module knows nothing of contracts' meaning: it stores text and the few fields readers need to find it.
Every entry read is checked (size, JSON, fields, names), and a bad one is reported with its location and the fix.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Literal

import fsspec
from fsspec.implementations.local import LocalFileSystem
from packaging.version import InvalidVersion, Version

from mesh_assets.errors import MeshError

FORMAT = 1  # the entries' ``format``; a reader refuses entries of a format it does not know
MAX_ENTRY_BYTES = 2 * 1024 * 1024  # a contract is at most 1 MiB (mesh_assets.yaml_source), plus its fields
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")  # domains, products, tables: snake_case (mesh_assets.contract.model)
# MAJOR.MINOR.PATCH with an optional pre-release or build suffix (semver.org), nothing a path could abuse
_SEMVER = re.compile(r"^(\d{1,9})\.(\d{1,9})\.(\d{1,9})(?:[-+][0-9A-Za-z.-]{1,64})?$")


class RegistryError(MeshError):
    """The registry cannot be read or written, an entry is malformed, or a publication is refused; the message
    names the entry and the fix."""


def semver(text: str) -> Version | None:
    """``text`` as an orderable version when it is a semantic version ``MAJOR.MINOR.PATCH[-pre][+build]``
    (semver.org), else ``None``."""
    if not isinstance(text, str) or not _SEMVER.fullmatch(text):
        return None
    try:
        return Version(text)
    except InvalidVersion:  # a pre-release tag packaging cannot order, e.g. 1.0.0-alpha.beta
        return None


@dataclass(frozen=True)
class PortEntry:
    """One output port of a published contract: ``table`` its name, ``iceberg_table`` its identifier in the
    mesh's Iceberg catalog (``<domain>.gold__<table>``), ``visibility`` ``public`` or ``restricted``."""

    table: str
    iceberg_table: str
    visibility: str


@dataclass(frozen=True)
class ContractEntry:
    """One published version of a data product's contract (see the module docstring).

    ``contract`` is the ODCS YAML document as written in the producer's repository; ``team``, ``members`` and
    ``description`` are its domain's (``domain.yaml``), so a consumer can tell who owns the port and who decides
    on access to it; ``published_at`` is an ISO 8601 UTC time; ``source`` where it was published from (the
    repository's commit, when known).
    """

    domain: str
    product: str
    version: str
    team: str
    contract: str
    ports: tuple[PortEntry, ...]
    members: tuple[str, ...] = ()
    description: str = ""
    published_at: str = ""
    source: str = ""

    @property
    def sha256(self) -> str:
        """The SHA-256 of the contract document: two publications of one version must agree on it."""
        return hashlib.sha256(self.contract.encode("utf-8")).hexdigest()

    @property
    def semver(self) -> Version:
        """The version, ordered (an entry's version was checked when it was read or written)."""
        found = semver(self.version)
        assert found is not None
        return found

    def to_json(self) -> dict[str, Any]:
        """The entry as stored: its fields, ``format``, ``kind: contract`` and the contract's ``sha256``."""
        return {"format": FORMAT, "kind": "contract", **asdict(self), "sha256": self.sha256}


@dataclass(frozen=True)
class Expectation:
    """What a consumer's data product relies on in one input port (mesh_assets.governance.expectations).

    ``port`` is ``<producer>.<table>``; ``major`` the producer's major version the consumer pinned (``None``:
    unpinned); ``columns`` column → DuckDB type the consumer reads; ``required`` and ``unique`` the columns it
    relies on being never null and unique; ``freshness_seconds`` the largest latency it accepts (``None``: no
    demand); ``read_by`` the consumer's tables that read the port (``<layer>.<table>``).
    """

    port: str
    product: str
    team: str
    columns: dict[str, str]
    major: int | None = None
    required: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    freshness_seconds: float | None = None
    read_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class LineageEdge:
    """One column of a consumer's table computed from columns of other domains' ports: ``table`` is
    ``<layer>.<table>`` of the consumer's ``product`` (owned by ``team``), ``visibility`` its visibility (an
    output port's is ``public`` or ``restricted``), ``sources`` the port columns as ``<domain>.<table>.<column>``."""

    product: str
    team: str
    table: str
    visibility: str
    column: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class ExpectationsEntry:
    """What one consumer domain relies on, as its last ``mesh publish`` registered it: an :class:`Expectation`
    per input port of each of its products, and the column lineage of its tables from other domains' ports
    (what ``mesh impact`` follows across repositories), and its team's members."""

    consumer: str
    team: str
    expectations: tuple[Expectation, ...]
    lineage: tuple[LineageEdge, ...] = ()
    published_at: str = ""
    source: str = ""
    members: tuple[str, ...] = ()  # the consumer's team (domain.yaml members): who may request access for it

    def to_json(self) -> dict[str, Any]:
        """The entry as stored: its fields, ``format`` and ``kind: expectations``."""
        return {"format": FORMAT, "kind": "expectations", **asdict(self)}


PublishOutcome = Literal["registered", "unchanged"]


class Registry:
    """The registry at ``url``: an absolute folder or an fsspec URL (``s3://bucket/mesh-registry``)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        try:
            self.fs, self.base = fsspec.core.url_to_fs(self.url)
        except (ValueError, ImportError) as exc:
            raise RegistryError(f"registry {url}: {exc}; set mesh.yaml registry.path to a folder or an fsspec URL "
                                "whose file system is installed (s3fs for s3://, gcsfs for gs://)") from None
        self.local = isinstance(self.fs, LocalFileSystem)

    # -- contracts ---------------------------------------------------------------------------------------------

    def publish_contract(self, entry: ContractEntry) -> PublishOutcome:
        """Register ``entry`` as version ``entry.version`` of its product.

        Returns ``unchanged`` when that version is registered with the same document already, else
        ``registered``.

        Raises:
            RegistryError: a name or version the registry cannot hold, the version is registered with another
                document (the fix: bump the version), or the registry cannot be written.
        """
        _check_names(entry.domain, entry.product, where="contract")
        if semver(entry.version) is None:
            raise RegistryError(f"{entry.domain}.{entry.product}: version {entry.version!r} is not a semantic "
                                "version MAJOR.MINOR.PATCH; set the contract's version, e.g. 1.0.0")
        path = self._contract_path(entry.domain, entry.product, entry.version)
        data = json.dumps(entry.to_json(), indent=1, sort_keys=True).encode("utf-8")
        existing = self._read_contract_at(path) if self._exists(path) else None
        if existing is not None:
            return self._same_or_refuse(existing, entry)
        try:
            self._write(path, data, exclusive=True)
        except FileExistsError:  # another publisher created this version since we looked
            return self._same_or_refuse(self._read_contract_at(path), entry)
        return "registered"

    def _same_or_refuse(self, existing: ContractEntry, entry: ContractEntry) -> PublishOutcome:
        if existing.sha256 == entry.sha256:
            return "unchanged"
        raise RegistryError(f"{entry.domain}.{entry.product} version {entry.version} is registered already with "
                            f"another contract (published {existing.published_at or 'earlier'}"
                            f"{', from ' + existing.source if existing.source else ''}); a published version never "
                            "changes: bump the contract's version (a major one if the change breaks consumers)")

    def contract_domains(self) -> list[str]:
        """The domains with at least one registered contract, sorted."""
        return sorted(n for n in self._children(f"{self.base}/contracts") if _NAME.fullmatch(n))

    def contracts(self, domain: str) -> list[ContractEntry]:
        """Every registered version of every product of ``domain``, oldest version first per product (products
        sorted by name); empty when the domain published nothing.

        Raises:
            RegistryError: an entry is malformed (the message names it and the fix).
        """
        _check_names(domain, where="domain")
        out = []
        for product in sorted(self._children(f"{self.base}/contracts/{domain}")):
            if not _NAME.fullmatch(product):
                continue
            entries = []
            for name in self._children(f"{self.base}/contracts/{domain}/{product}"):
                if name.endswith(".json") and not name.startswith("."):
                    entries.append(self._read_contract_at(f"{self.base}/contracts/{domain}/{product}/{name}"))
            out += sorted(entries, key=lambda e: e.semver)
        return out

    def _read_contract_at(self, path: str) -> ContractEntry:
        data = self._read_json(path, "contract")
        where = self._shown(path)
        try:
            ports = tuple(PortEntry(**p) for p in data["ports"])
            entry = ContractEntry(data["domain"], data["product"], data["version"], data["team"], data["contract"],
                                  ports, tuple(data.get("members") or ()), data.get("description") or "",
                                  data.get("published_at") or "", data.get("source") or "")
        except (KeyError, TypeError) as exc:
            raise _bad(where, f"a field is missing or malformed ({exc})") from None
        fields = [entry.domain, entry.product, entry.version, entry.team, entry.contract, *entry.members]
        if not all(isinstance(v, str) for v in fields) or not all(isinstance(p.table, str) for p in ports):
            raise _bad(where, "every name, version, team and the contract must be text")
        expected = path.rsplit("/", 3)[-3:]
        if [entry.domain, entry.product, f"{entry.version}.json"] != expected:
            raise _bad(where, f"it says {entry.domain}/{entry.product}/{entry.version}, which is not where it is")
        if semver(entry.version) is None or not _NAME.fullmatch(entry.domain) or not _NAME.fullmatch(entry.product):
            raise _bad(where, "its domain, product or version is not a name the registry holds")
        if data.get("sha256") != entry.sha256:
            raise _bad(where, "its contract does not match its sha256: the entry was altered or truncated")
        return entry

    def _contract_path(self, domain: str, product: str, version: str) -> str:
        return f"{self.base}/contracts/{domain}/{product}/{version}.json"

    # -- expectations ------------------------------------------------------------------------------------------

    def publish_expectations(self, entry: ExpectationsEntry) -> None:
        """Replace what consumer ``entry.consumer`` relies on with ``entry`` (atomically: a reader sees the old
        entry or the new one, never part of either).

        Raises:
            RegistryError: a bad consumer name, or the registry cannot be written.
        """
        _check_names(entry.consumer, where="consumer")
        data = json.dumps(entry.to_json(), indent=1, sort_keys=True).encode("utf-8")
        self._write(f"{self.base}/expectations/{entry.consumer}.json", data, exclusive=False)

    def expectations(self) -> list[ExpectationsEntry]:
        """Every consumer domain's registered expectations, by consumer name.

        Raises:
            RegistryError: an entry is malformed (the message names it and the fix).
        """
        out = []
        for name in sorted(self._children(f"{self.base}/expectations")):
            if name.endswith(".json") and not name.startswith(".") and _NAME.fullmatch(name[:-5]):
                out.append(self._read_expectations_at(f"{self.base}/expectations/{name}"))
        return out

    def _read_expectations_at(self, path: str) -> ExpectationsEntry:
        data = self._read_json(path, "expectations")
        where = self._shown(path)
        try:
            expectations = tuple(Expectation(**{**e, "required": tuple(e.get("required") or ()),
                                                "unique": tuple(e.get("unique") or ()),
                                                "read_by": tuple(e.get("read_by") or ())})
                                 for e in data["expectations"])
            lineage = tuple(LineageEdge(**{**e, "sources": tuple(e["sources"])}) for e in data.get("lineage") or ())
            entry = ExpectationsEntry(data["consumer"], data["team"], expectations, lineage,
                                      data.get("published_at") or "", data.get("source") or "",
                                      tuple(data.get("members") or ()))
        except (KeyError, TypeError) as exc:
            raise _bad(where, f"a field is missing or malformed ({exc})") from None
        if f"{entry.consumer}.json" != path.rsplit("/", 1)[-1]:
            raise _bad(where, f"it says consumer {entry.consumer!r}, which is not its file name")
        if not all(isinstance(m, str) for m in entry.members):
            raise _bad(where, "members must be identities (text)")
        for e in expectations:
            if not (isinstance(e.port, str) and isinstance(e.columns, dict)
                    and all(isinstance(k, str) and isinstance(v, str) for k, v in e.columns.items())
                    and (e.major is None or isinstance(e.major, int))):
                raise _bad(where, f"expectation on {e.port!r}: port, columns (name: type) or major is malformed")
        return entry

    # -- storage -----------------------------------------------------------------------------------------------

    def _shown(self, path: str) -> str:
        """``path`` as a user can find it: the registry's URL and the entry's place in it."""
        return f"{self.url}/{path[len(self.base):].lstrip('/')}" if path.startswith(self.base) else path

    def _exists(self, path: str) -> bool:
        try:
            return bool(self.fs.exists(path))
        except OSError as exc:
            raise RegistryError(f"registry {self.url} cannot be read ({exc}); check registry.path in mesh.yaml and "
                                "the credentials of its store") from None

    def _children(self, path: str) -> list[str]:
        """The names directly under the folder ``path`` (none when it does not exist)."""
        try:
            if not self.fs.isdir(path):
                return []
            return [str(p).rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(path, detail=False)]
        except OSError as exc:
            raise RegistryError(f"registry {self.url} cannot be read ({exc}); check registry.path in mesh.yaml and "
                                "the credentials of its store") from None

    def _read_json(self, path: str, kind: str) -> dict[str, Any]:
        where = self._shown(path)
        try:
            with self.fs.open(path, "rb") as handle:
                raw = handle.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            raise _bad(where, "the entry does not exist") from None
        except OSError as exc:
            raise RegistryError(f"{where}: cannot be read ({exc})") from None
        if len(raw) > MAX_ENTRY_BYTES:
            raise _bad(where, f"the entry is over {MAX_ENTRY_BYTES:,} bytes")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad(where, f"not a JSON entry ({exc})") from None
        if not isinstance(data, dict) or data.get("kind") != kind:
            raise _bad(where, f"not a {kind} entry")
        if data.get("format") != FORMAT:
            raise _bad(where, f"entry format {data.get('format')!r}, and this mesh-assets reads format {FORMAT}; "
                              "upgrade mesh-assets or re-publish with this one")
        return data

    def _write(self, path: str, data: bytes, exclusive: bool) -> None:
        """Write ``data`` at ``path`` atomically; ``exclusive``: refuse (``FileExistsError``) if it exists."""
        try:
            if not self.local:  # one PUT of the whole object: readers see the old object or the new one
                if exclusive and self.fs.exists(path):
                    raise FileExistsError(path)
                self.fs.pipe_file(path, data)
                return
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                if exclusive:
                    os.link(tmp, path)  # fails with FileExistsError if another publisher won
                else:
                    os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except FileExistsError:
            raise
        except OSError as exc:
            raise RegistryError(f"registry {self.url} cannot be written ({exc}); check registry.path in mesh.yaml "
                                "and that this user may write there") from None


def now_utc() -> str:
    """The current UTC time in ISO 8601, seconds precision (an entry's ``published_at``)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def _check_names(*names: str, where: str) -> None:
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise RegistryError(f"{where} name {name!r} is not snake_case; the registry holds snake_case names only")


def _bad(where: str, problem: str) -> RegistryError:
    return RegistryError(f"{where}: bad registry entry: {problem}; publish it again from its repository (mesh "
                         "publish), or remove the file")

