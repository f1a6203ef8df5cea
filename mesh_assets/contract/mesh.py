"""The mesh on disk: ``mesh.yaml``, one folder per domain, one data contract per data product."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from mesh_assets.contract.identity import is_identity
from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.model import REJECTS_SUFFIX, SNAKE_CASE, DataProduct, Table
from mesh_assets.errors import ContractError, ContractsError, MeshError
from mesh_assets.registry.store import ContractEntry, Registry
from mesh_assets.settings import ENGINES, LAYERS, MeshSettings, load_settings
from mesh_assets.sql.inputs import PREVIOUS
from mesh_assets.yaml_source import load_yaml

DOMAIN_FILE = "domain.yaml"


@dataclass(frozen=True)
class Domain:
    """A domain: its descriptor (``domain.yaml``) and its data products (``products/*.yaml``).

    ``members`` are the identities of the owner team (``domain.yaml`` ``members``): who may approve access to
    its ports, request access for it, and review changes of its folder (``CODEOWNERS``).
    """

    name: str
    team: str
    description: str
    path: Path
    ingestion_schedule: str
    timezone: str
    products: tuple[DataProduct, ...]
    engine: str | None = None  # domain.yaml engine: the domain's engine choice (mesh_assets.engine.choice)
    members: tuple[str, ...] = ()  # domain.yaml members: the team's identities (mesh_assets.contract.identity)
    # versions resolved from the contract registry (product → version); empty for a domain of the mesh's folder
    published: tuple[tuple[str, str], ...] = ()

    @property
    def remote(self) -> bool:
        """Whether the domain was resolved from the contract registry (not in the mesh's domains folder)."""
        return bool(self.published)

    @property
    def tables(self) -> list[Table]:
        return [t for p in self.products for t in p.tables]

    def table(self, layer: str, name: str) -> Table | None:
        return next((t for t in self.tables if t.layer == layer and t.name == name), None)

    def product_of(self, table: Table) -> DataProduct:
        """The data product whose contract declares ``table``."""
        return next(p for p in self.products if table in p.tables)


def _valid_cron(schedule: str) -> bool:
    """Whether Dagster accepts ``schedule`` for the bronze tables' ``AutomationCondition.on_cron``, the condition
    it becomes; Dagster's public API raises its invariant error on an invalid cron string."""
    try:
        dg.AutomationCondition.on_cron(schedule)
    except Exception:  # noqa: BLE001 - dagster's check errors have no public class
        return False
    return True


def load_domain(path: Path) -> Domain:
    """Load the domain in folder ``path``: its descriptor and every contract under ``products/``.

    Raises:
        ContractError: the descriptor or one contract is malformed.
        MeshError: several contracts are malformed (every message is included), or a table is declared twice.
    """
    path = Path(path).resolve()
    descriptor = path / DOMAIN_FILE
    doc = load_yaml(descriptor)
    data = doc.data
    problems = []
    if not isinstance(data, dict):
        raise ContractError(descriptor, ["(top level): expected name, team, description, ingestion_schedule"])
    if data.get("name") != path.name:
        problems.append(doc.problem(["name"], f"must equal the folder name; set name: {path.name}"))
    if not SNAKE_CASE.fullmatch(path.name):
        problems.append(doc.problem(["name"], "domain names are snake_case"))
    elif path.name in (*LAYERS, PREVIOUS):  # SQL names <layer>.<t> and previous.<t> mean the domain's own
        problems.append(doc.problem(["name"], f"'{path.name}' is reserved in SQL names; rename the domain"))
    for field in ("team", "description"):
        if not isinstance(data.get(field), str) or not data.get(field):
            problems.append(doc.problem([field], f"set the domain's {field}"))
    schedule = data.get("ingestion_schedule", "0 0 * * *")
    if not isinstance(schedule, str) or not _valid_cron(schedule):
        problems.append(doc.problem(["ingestion_schedule"], f"{schedule!r} is not a cron expression, "
                                                              "e.g. '0 2 * * *' (02:00 daily)"))
    if data.get("engine") not in (None, *ENGINES):
        problems.append(doc.problem(["engine"], f"engine {data['engine']!r} is unknown; use one of "
                                                f"{', '.join(ENGINES)} or leave it out to use the mesh's"))
    members = data.get("members", [])
    if not isinstance(members, list):
        problems.append(doc.problem(["members"], "list the team's members, e.g. members: [alice@example.com]"))
        members = []
    for i, member in enumerate(members):
        if not is_identity(member):
            problems.append(doc.problem(["members", i], f"{member!r} is not an identity; write an e-mail "
                                                        "address (alice@example.com) or a git host handle (@alice)"))
    unknown = set(data) - {"name", "team", "members", "description", "ingestion_schedule", "timezone", "engine"}
    if unknown:
        problems.append(doc.problem([], f"unknown field(s) {', '.join(sorted(unknown))}"))
    if problems:
        raise ContractError(descriptor, problems)
    products, errors = [], []
    for contract in sorted((path / "products").glob("*.yaml")):
        try:
            products.append(load_contract(contract, path.name, data["team"]))
        except ContractError as exc:
            errors.append(exc)
    if errors:
        raise ContractsError(errors)
    keys: dict[tuple[str, str, str], Path] = {}
    for product in products:
        for table in product.tables:
            # a bronze table also owns the key of its rejects port
            owned = [table.key,
                     (*table.key[:2], table.name + REJECTS_SUFFIX)] if table.layer == "bronze" else [table.key]
            for key in owned:
                if key in keys:
                    raise MeshError(f"{product.path}: asset key {'/'.join(key)} is also declared in "
                                    f"{keys[key]}; an asset key belongs to exactly one table. Rename the table")
                keys[key] = product.path
    return Domain(path.name, data["team"], data["description"], path, schedule,
                  str(data.get("timezone") or "UTC"), tuple(products), data.get("engine"),
                  tuple(m.strip() for m in members))


class Mesh:
    """All domains under ``<root>/<domains_dir>``, loaded lazily one domain at a time, so a code location
    only parses the contracts it reads (its own and those of the ports it consumes).

    A domain that is not in that folder is resolved from the contract registry (``mesh.yaml`` ``registry``,
    mesh_assets.registry.store): the newest published version of each of its products, within the major version
    the loaded domains pin on its ports (``inputPorts``). Its tables carry no SQL: only its output ports are
    read, and how they are built stays in its producer's repository (docs/domain-repos.md). Resolving one loads
    the mesh's own domains first, for their pins.
    """

    def __init__(self, settings: MeshSettings):
        self.settings = settings
        self._domains: dict[str, Domain] = {}
        self._registry: Registry | None = None

    @property
    def registry(self) -> Registry:
        """The mesh's contract registry (``mesh.yaml`` ``registry.path``)."""
        if self._registry is None:
            self._registry = Registry(self.settings.registry_url)
        return self._registry

    @property
    def root(self) -> Path:
        return self.settings.root

    @property
    def domain_names(self) -> list[str]:
        base = self.settings.domains_path
        return sorted(p.name for p in base.iterdir() if (p / DOMAIN_FILE).is_file()) if base.is_dir() else []

    def domain(self, name: str) -> Domain:
        """The domain ``name``, loaded once. Raises :class:`MeshError` when there is no such domain folder."""
        if name not in self._domains:
            if name in self.domain_names:
                self._domains[name] = load_domain(self.settings.domains_path / name)
            elif SNAKE_CASE.fullmatch(name) and (entries := self.registry.contracts(name)):
                self._domains[name] = self._published_domain(name, entries)
            else:
                raise MeshError(f"no domain '{name}' in {self.settings.domains_path} nor in the contract registry "
                                f"{self.settings.registry_url}; the domains are "
                                f"{', '.join(self.domain_names) or '(none)'}")
        return self._domains[name]

    def pins(self, producer: str) -> dict[str, dict[int, Path]]:
        """The major versions the mesh's own domains pin on ``producer``'s ports: table → major → the contract
        pinning it. Every domain of the folder is loaded for it (a domain that does not load pins nothing here;
        its own errors are reported where it is loaded)."""
        found: dict[str, dict[int, Path]] = {}
        for name in self.domain_names:
            try:
                domain = self.domain(name)
            except MeshError:
                continue
            for product in domain.products:
                for pin in product.input_ports:
                    if pin.domain == producer and pin.major is not None:
                        found.setdefault(pin.table, {}).setdefault(pin.major, product.path)
        return found

    def _published_domain(self, name: str, entries: list[ContractEntry]) -> Domain:
        """Domain ``name`` from its registry ``entries`` (see the class docstring). Each chosen contract is copied into
        ``.mesh/registry-cache/<domain>/products/`` and loaded from there, without its transforms.

        Raises:
            MeshError: two loaded contracts pin different majors of one product, a pinned major has no
                published version, or a published contract does not load (the registry entry is named).
        """
        pins = self.pins(name)
        chosen = []
        for product, versions in _by_product(entries).items():
            tables = {p.table for e in versions for p in e.ports}
            majors = {major: path for t in sorted(tables & pins.keys()) for major, path in pins[t].items()}
            if len(majors) > 1:
                raise MeshError(f"{name}.{product}: the mesh pins majors {', '.join(map(str, sorted(majors)))} of "
                                f"its ports ({', '.join(str(p) for p in majors.values())}); pin one major")
            if majors:
                major, where = next(iter(majors.items()))
                fitting = [e for e in versions if e.semver.major == major]
                if not fitting:
                    raise MeshError(f"{where}: inputPorts pins major {major} of {name}.{product}, which the registry "
                                    f"has not: it has {', '.join(e.version for e in versions)}; pin one of those "
                                    "majors")
                versions = fitting
            chosen.append(versions[-1])
        folder = self.settings.registry_cache_path / name
        products = []
        for entry in chosen:
            path = folder / "products" / f"{entry.product}.yaml"
            write_atomic(path, entry.contract)
            try:
                products.append(load_contract(path, name, entry.team, transforms=False))
            except ContractError as exc:
                raise MeshError(f"{entry.product} {entry.version} of domain '{name}' in the contract registry "
                                f"{self.settings.registry_url} does not load: {exc}. Its producer must publish a "
                                "valid contract (mesh publish)") from None
        first = chosen[0]
        return Domain(name, first.team, first.description, folder, "0 0 * * *", "UTC", tuple(products),
                      members=first.members, published=tuple((e.product, e.version) for e in chosen))

    def is_loaded(self, name: str) -> bool:
        """Whether domain ``name`` was loaded already (its contracts parsed)."""
        return name in self._domains

    def domains(self) -> list[Domain]:
        return [self.domain(n) for n in self.domain_names]

    def output_port(self, domain: str, table: str) -> Table:
        """The gold table ``<domain>.<table>`` (an output port).

        Raises:
            MeshError: no such domain or gold table (the message lists the domain's ports).
        """
        found = self.domain(domain).table("gold", table)
        if found is None:
            ports = ", ".join(f"{domain}.{t.name}" for t in self.domain(domain).tables if t.layer == "gold")
            raise MeshError(f"'{domain}.{table}' is not an output port; {domain} publishes {ports or 'none'}")
        return found


def _by_product(entries: list[ContractEntry]) -> dict[str, list[ContractEntry]]:
    """Registry entries grouped by product, each group oldest version first (the registry's order)."""
    out: dict[str, list[ContractEntry]] = {}
    for entry in entries:
        out.setdefault(entry.product, []).append(entry)
    return out


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it, so a concurrent reader (another step
    resolving the same registry entry) sees the old file or the new one, never part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_mesh(root: Path | str) -> Mesh:
    """The mesh whose ``mesh.yaml`` is in ``root``. Raises :class:`ContractError` for a malformed ``mesh.yaml``."""
    return Mesh(load_settings(root))
