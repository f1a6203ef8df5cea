"""A static catalog of the mesh's data products (``mesh catalog --out DIR``), to browse from disk or any web
server: no server, no network, no CDN.

Layout of ``DIR``::

    index.html                        every domain and data product, with a search box
    products/<domain>.<product>.html  one page per data product
    assets/catalog.css, catalog.js    style and the client-side search
    assets/search-index.js            the search index: ``window.MESH_SEARCH_INDEX = [...]`` (a script, not
                                      a fetch, so it loads from file://)
    .mesh-catalog                     marks the folder as a catalog, so a rebuild may replace it

Every value is HTML-escaped by Jinja's autoescape; links from contracts are kept only for http(s) and mailto.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import dagster as dg
import jinja2
from markupsafe import Markup

from mesh_assets.catalog.facts import (
    CheckResult,
    Freshness,
    LastRun,
    freshness,
    latest_checks,
    latest_runs,
    read_pointer,
    read_profile,
)
from mesh_assets.catalog.lineage import AssetGraph, Lineage, build_graph, label, lineage_svg
from mesh_assets.catalog.partitions import PartitionStatus, partition_status
from mesh_assets.contract.graph import Key, upstream_keys
from mesh_assets.contract.mesh import Domain, Mesh
from mesh_assets.contract.model import DataProduct, Grant, Rule, Table
from mesh_assets.engine.ports import Port
from mesh_assets.engine.profile import redact_profile
from mesh_assets.errors import MeshError
from mesh_assets.governance.access import sensitive_columns
from mesh_assets.governance.access_requests import AccessRequest, list_requests
from mesh_assets.orchestration.freshness import layer_default_slas

MARKER = ".mesh-catalog"
_OWNED = ("index.html", "products", "assets")  # what a rebuild replaces in an existing catalog folder
_LINK_SCHEMES = ("http://", "https://", "mailto:")


@dataclass
class TableView:
    """Everything a product page shows of one table (``anchor``: its id on the page)."""

    table: Table
    anchor: str
    pointer: dict[str, Any] | None
    pointer_problem: str
    freshness: Freshness
    last_run: LastRun | None
    checks: list[CheckResult]
    profile: list[dict[str, Any]]
    snapshot_source: str | None
    iceberg_table: str
    grants: list[Grant]
    pending: list[AccessRequest]
    sensitive: tuple[str, ...]
    column_rules: dict[str, list[Rule]]
    table_rules: list[Rule]
    partitions: PartitionStatus | None = None  # of a partitioned table, with an instance

    @property
    def is_port(self) -> bool:
        return self.table.layer == "gold"

    @property
    def port_name(self) -> str:
        return f"{self.table.domain}.{self.table.name}"

    @property
    def checks_failed(self) -> int:
        return sum(c.status in ("failed", "warning") for c in self.checks)


@dataclass
class ProductView:
    """A data product's page: ``page`` is its path relative to the catalog root."""

    domain: Domain
    product: DataProduct
    page: str
    tables: list[TableView]
    contacts: list[tuple[str, str, str]]  # (label, text, safe link or "")
    lineage: Lineage
    lineage_svg: Markup
    quality: float | None  # None: no table published with checks
    successor_href: str  # link to the port named by a deprecated product's replacedBy, when it exists

    @property
    def ports(self) -> list[TableView]:
        return [t for t in self.tables if t.is_port]

    @property
    def internal(self) -> list[TableView]:
        return [t for t in self.tables if not t.is_port]


@dataclass(frozen=True)
class CatalogResult:
    """What :func:`build_catalog` wrote: ``index`` (the home page), ``pages`` (product pages), ``warnings``
    (domains left out because their contracts do not load)."""

    index: Path
    pages: list[Path]
    warnings: list[str]


def product_page(domain: str, product: str) -> str:
    """The path of a product's page relative to the catalog root."""
    return f"products/{domain}.{product}.html"


def build_catalog(mesh: Mesh, out: Path | str, instance: dg.DagsterInstance | None = None,
                  now: datetime | None = None, progress: Callable[[int, int, str], None] | None = None
                  ) -> CatalogResult:
    """Write the catalog of ``mesh`` into the folder ``out`` (created if needed; see the module docstring).

    Run state comes from the ports (``_current.json``, ``profile.json``) and, when given, ``instance`` (latest
    materializations and check results; without it the pages say "no run recorded"). Freshness is judged at
    ``now`` (default: the current time, UTC). Domains whose contracts do not load are left out and listed in
    the result's ``warnings`` and on the home page. ``progress(done, total, product)`` is called before each
    data product is read (its ports, profile and checks: the slow part).

    Raises:
        MeshError: ``out`` is a file, or a non-empty folder that is not a catalog (it has no ``.mesh-catalog``
            marker), so nothing of the user's is overwritten; an access request file is malformed.
    """
    out = Path(out).resolve()
    now = now or datetime.now(UTC)
    domains, warnings = [], []
    for name in mesh.domain_names:
        try:
            domains.append(mesh.domain(name))
        except MeshError as exc:
            warnings.append(f"domain {name} is left out: its contracts do not load ({exc}). Run mesh validate.")
    tables = [t for d in domains for t in d.tables]
    graph = build_graph(tables, lambda t: upstream_keys(mesh, t))
    owners = {t.key: (d.name, d.product_of(t).name) for d in domains for t in d.tables}
    requests = list_requests(mesh)
    runs = latest_runs(instance, tables)
    units = [(domain, product) for domain in domains for product in domain.products]
    products = []
    for done, (domain, product) in enumerate(units):
        if progress is not None:
            progress(done, len(units), f"{domain.name}.{product.name}")
        products.append(_product_view(mesh, domain, product, instance, runs, requests, now, graph, owners))
    _prepare(out, mesh.root)  # only once everything was read: a failure leaves an earlier catalog whole
    env = _environment(now)
    pages = []
    for view in products:
        path = out / view.page
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template("product.html").render(
            root="../", view=view, link_of=_link_of(owners), label=label, mesh_name=mesh.settings.name,
            title=f"{view.domain.name}.{view.product.name}"), encoding="utf-8")
        pages.append(path)
    index = out / "index.html"
    index.write_text(env.get_template("index.html").render(
        root="", domains=domains, products=products, warnings=warnings, mesh_name=mesh.settings.name,
        title=mesh.settings.name), encoding="utf-8")
    assets = out / "assets"
    assets.mkdir(exist_ok=True)
    for name in ("catalog.css", "catalog.js"):
        (assets / name).write_text(resources.files(__package__).joinpath("static", name).read_text("utf-8"),
                                   encoding="utf-8")
    (assets / "search-index.js").write_text(search_index_script(search_index(products)), encoding="utf-8")
    return CatalogResult(index, pages, warnings)


def find_instance(root: Path) -> dg.DagsterInstance | None:
    """The Dagster instance ``mesh run`` records into (``DAGSTER_HOME``, default ``<root>/.dagster``), or
    ``None`` when that folder does not exist: the mesh was never run here, and none is created for it."""
    from mesh_assets.orchestration.runner import open_instance  # imports the definitions machinery; only when needed

    home = Path(os.environ.get("DAGSTER_HOME") or root / ".dagster")
    return open_instance(root) if home.is_dir() else None


def _prepare(out: Path, mesh_root: Path) -> None:
    """Make ``out`` an empty catalog folder, replacing only what an earlier build wrote."""
    if out.exists() and not out.is_dir():
        raise MeshError(f"--out {out} is a file; give a folder for the catalog")
    if out == mesh_root or mesh_root.is_relative_to(out):
        raise MeshError(f"--out {out} holds the mesh itself; give a folder of its own, e.g. {mesh_root}/catalog")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise MeshError(f"--out {out} is a non-empty folder that is not a catalog; give an empty or new folder "
                        "(a catalog folder is rebuilt in place)")
    out.mkdir(parents=True, exist_ok=True)
    for name in _OWNED:
        target = out / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    (out / MARKER).write_text("Built by `mesh catalog`; the command replaces index.html, products/ and assets/.\n",
                              encoding="utf-8")


def _snapshot_source(port: Port, sensitive: tuple[str, ...]) -> str | None:
    """The files of the current snapshot a catalog reader is shown, as DuckDB's list of paths: its masked
    copy's when the table has ``sensitive`` columns (None without a complete one), else the snapshot's own."""
    try:
        return (port.current_masked(sensitive) if sensitive else port.current_snapshot()).source
    except MeshError:
        return None


def _product_view(mesh: Mesh, domain: Domain, product: DataProduct, instance: dg.DagsterInstance | None,
                  runs: dict[Key, LastRun], requests: list[AccessRequest], now: datetime, graph: AssetGraph,
                  owners: dict[Key, tuple[str, str]]) -> ProductView:
    views = []
    storage = mesh.settings.storage_url
    for table in sorted(product.tables, key=lambda t: ({"gold": 0, "silver": 1, "bronze": 2}[t.layer], t.name)):
        port = Port(storage, table.key, mesh.settings.catalog.uri)
        pointer, problem = read_pointer(port)
        slas = list(table.slas) or layer_default_slas(mesh.settings, table.layer)
        port_name = f"{table.domain}.{table.name}"
        sensitive = sensitive_columns(table, mesh.settings.governance)
        column_rules: dict[str, list[Rule]] = {}
        table_rules = []
        for rule in table.rules:
            if len(rule.columns) == 1:
                column_rules.setdefault(rule.columns[0], []).append(rule)
            else:  # table rules and rules over several columns (a composite key)
                table_rules.append(rule)
        views.append(TableView(
            table=table,
            anchor=anchor(table.key),
            pointer=pointer,
            pointer_problem=problem,
            freshness=freshness(pointer, slas, now, domain.timezone),
            last_run=runs.get(table.key),
            checks=latest_checks(instance, table),
            profile=redact_profile(read_profile(port, pointer["snapshot"]), sensitive) if pointer else [],
            snapshot_source=_snapshot_source(port, sensitive) if pointer else None,
            iceberg_table=(port.masked_port() if sensitive else port).identifier,
            grants=[g for g in product.grants if g.covers(table.name)] if table.layer == "gold" else [],
            pending=[r for r in requests if r.port == port_name and r.status == "pending"],
            sensitive=sensitive,
            column_rules=column_rules,
            table_rules=table_rules,
            partitions=partition_status(instance, table, now) if instance is not None else None,
        ))
    lineage = graph.lineage(product)
    return ProductView(domain, product, product_page(domain.name, product.name), views, _contacts(product), lineage,
                       lineage_svg(lineage, _href_for(product, owners), lambda k: _node_title(k, owners)),
                       _product_quality(views), _successor_href(product, owners))


def _product_quality(views: list[TableView]) -> float | None:
    """The product's quality score (0–1) from its tables' current snapshots (recorded at publication)."""
    passed = total = 0.0
    for view in views:
        quality = (view.pointer or {}).get("quality") or {}
        passed, total = passed + quality.get("passed", 0), total + quality.get("total", 0)
    return passed / total if total else None


def _contacts(product: DataProduct) -> list[tuple[str, str, str]]:
    """``(label, text, link)`` of the contract's ``support`` channels and ``team.members``; ``link`` is empty
    unless it is http(s) or mailto (a contract must not smuggle a ``javascript:`` link into the page)."""
    contacts = []
    odcs = product.odcs
    for item in odcs.support or []:
        url = item.url or ""
        contacts.append((item.channel or "support", item.description or url, url if _safe_link(url) else ""))
    members = odcs.team.members if odcs.team is not None and not isinstance(odcs.team, list) else odcs.team
    for member in members or []:
        who = member.name or member.username or ""
        link = f"mailto:{member.username}" if member.username and "@" in member.username else ""
        contacts.append((member.role or "member", f"{who} <{member.username}>" if link and member.name else who, link))
    return contacts


def _safe_link(url: str) -> bool:
    return url.lower().startswith(_LINK_SCHEMES)


def anchor(key: Key) -> str:
    """The id of a table's section on its product page: ``port-<table>`` or ``table-<table>`` (private)."""
    return f"{'port' if key[1] == 'gold' else 'table'}-{key[2]}"


def _link_of(owners: dict[Key, tuple[str, str]]):
    """``key → link`` from a product page to the table's section on its product's page (None: the table is
    in no loaded product)."""
    def link(key: Key) -> str | None:
        owner = owners.get(key)
        return f"../{product_page(*owner)}#{anchor(key)}" if owner else None
    return link


def _href_for(product: DataProduct, owners: dict[Key, tuple[str, str]]):
    """Links of lineage nodes, from a product page: own tables to their section, others to their product."""
    own = {t.key for t in product.tables}
    link = _link_of(owners)
    return lambda key: f"#{anchor(key)}" if key in own else link(key)


def _successor_href(product: DataProduct, owners: dict[Key, tuple[str, str]]) -> str:
    domain, _, table = (product.replaced_by or "").partition(".")
    return _link_of(owners)((domain, "gold", table)) or ""


def _node_title(key: Key, owners: dict[Key, tuple[str, str]]) -> str:
    owner = owners.get(key)
    return (f"{'/'.join(key)} — data product {owner[0]}.{owner[1]}" if owner
            else f"{'/'.join(key)} — not in the catalog (its domain did not load)")


def search_index(products: list[ProductView]) -> list[dict[str, str]]:
    """One entry per product, table and column: ``kind`` (product, port, table, column), ``name``,
    ``context`` (where it is), ``description`` and ``url`` (relative to the catalog root)."""
    entries = []
    for view in products:
        d, p = view.domain.name, view.product
        entries.append({"kind": "product", "name": f"{d}.{p.name}", "context": f"team {p.team} · {p.status}",
                        "description": p.description, "url": view.page})
        for tv in view.tables:
            t = tv.table
            kind = "port" if tv.is_port else "table"
            name = f"{d}.{t.name}" if tv.is_port else f"{d}/{t.layer}/{t.name}"
            entries.append({"kind": kind, "name": name, "context": f"{d}.{p.name} · {t.layer} · {t.visibility}",
                            "description": t.description, "url": f"{view.page}#{tv.anchor}"})
            for c in t.columns:
                entries.append({"kind": "column", "name": c.name, "context": f"{name} · {c.physical_type}",
                                "description": c.description, "url": f"{view.page}#col-{t.name}-{c.name}"})
    return entries


def search_index_script(entries: list[dict[str, str]]) -> str:
    """The search index as a script assigning ``window.MESH_SEARCH_INDEX``; ``<``, ``>`` and ``&`` are written
    as JSON escapes, so no value can close a ``<script>`` element if the file is ever inlined."""
    body = json.dumps(entries, ensure_ascii=False, indent=0)
    body = body.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f"window.MESH_SEARCH_INDEX =\n{body}\n;\n"


def _environment(now: datetime) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader(__package__, "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = lambda t: t.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if t else "—"
    env.filters["ago"] = lambda t: _ago(now - t) if t else ""
    env.filters["percent"] = lambda x: "—" if x is None else f"{100 * float(x):.1f} %"
    env.globals["now"] = now
    return env


def _ago(delta) -> str:
    seconds = delta.total_seconds()
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"
