"""`mesh catalog`: the static data-product catalog, from its HTML and search index, and browsed in Chromium
from file:// (search → product page → lineage link to another domain's product)."""

from __future__ import annotations

import html
import json
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from conftest import isolate, land_orders, make_tiny_root, mesh_cli
from mesh_assets import load_mesh
from mesh_assets.catalog import build_catalog, find_instance
from mesh_assets.engine.ports import Port
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.runner import run_mesh
from test_governance import add_consumer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
ORDERS = Path("domains/shop/products/orders.yaml")
HOSTILE = "Sum of amounts in EUR. <script>alert('pwned')</script> & more"


def search_entries(out: Path) -> list[dict]:
    """The entries of the catalog's search index (``assets/search-index.js``)."""
    script = (out / "assets" / "search-index.js").read_text(encoding="utf-8")
    prefix = "window.MESH_SEARCH_INDEX =\n"
    assert script.startswith(prefix) and script.endswith("\n;\n")
    return json.loads(script[len(prefix):-3])


def section(html: str, anchor: str) -> str:
    """The HTML of the element with id ``anchor`` up to the next port or table section."""
    start = html.index(f'id="{anchor}"')
    ends = [i for i in (html.find('<section class="port"', start + 1), html.find("<details class=\"internal\"",
                                                                                  start + 1)) if i > 0]
    return html[start:min(ends) if ends else len(html)]


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dg.DagsterInstance]]:
    """The tiny mesh with a hostile column description, a deprecated product with contacts, a second domain
    ``billing`` reading ``shop.order_totals`` and one order whose amount fails a warning rule, materialized once
    for the module: its folder and the instance that recorded the run (both read only)."""
    tiny_root = make_tiny_root(tmp_path_factory.mktemp("catalog"))
    contract = tiny_root / ORDERS
    text = contract.read_text()
    assert "description: Sum of amounts in EUR." in text
    contract.write_text(text.replace("description: Sum of amounts in EUR.", f"description: {json.dumps(HOSTILE)}"))
    customers = tiny_root / "domains/shop/products/customers.yaml"
    customers.write_text(customers.read_text().replace("status: active", """status: deprecated
customProperties:
  - {property: endOfSupport, value: '2030-01-31'}
  - {property: replacedBy, value: shop.order_totals}
support:
  - {channel: chat, url: "javascript:alert(1)", description: the shop channel}
  - {channel: tickets, url: "https://tickets.example.com/shop"}""").replace("  name: shop-team", """  name: shop-team
  members:
    - {username: ann@example.com, name: Ann, role: owner}"""))
    add_consumer(tiny_root)
    land_orders(tiny_root, "order_id,customer,amount\n1,ann,10.00\n2,bob,20.00\n3,ann,3.00\n")
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        isolate(mp)
        summary = run_mesh(load_mesh(tiny_root), instance)
        assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
        yield tiny_root, instance


@pytest.fixture
def two_domains(materialized: tuple[Path, dg.DagsterInstance]) -> Path:
    """The folder of :func:`materialized` (read only)."""
    return materialized[0]


@pytest.fixture
def instance(materialized: tuple[Path, dg.DagsterInstance]) -> dg.DagsterInstance:
    """In this module, the instance that recorded :func:`materialized`'s run (read only)."""
    return materialized[1]


def test_catalog_pages_and_search_index(two_domains: Path, instance, tmp_path: Path) -> None:
    mesh = load_mesh(two_domains)
    out = tmp_path / "catalog"
    result = build_catalog(mesh, out, instance)
    assert result.warnings == [] and result.index == out.resolve() / "index.html"
    assert {p.name for p in result.pages} == {"shop.orders.html", "shop.customers.html", "billing.invoices.html"}

    index = (out / "index.html").read_text()
    for page in ("products/shop.orders.html", "products/shop.customers.html", "products/billing.invoices.html"):
        assert f'href="{page}"' in index
    assert "team shop-team" in index and "billing-team" in index

    entries = search_entries(out)
    names = {(e["kind"], e["name"]) for e in entries}
    for domain in mesh.domains():
        for product in domain.products:
            assert ("product", f"{domain.name}.{product.name}") in names
            for table in product.tables:
                for column in table.columns:
                    url = f"products/{domain.name}.{product.name}.html#col-{table.name}-{column.name}"
                    assert any(e["kind"] == "column" and e["name"] == column.name and e["url"] == url
                               for e in entries), url
                    page = (out / url.split("#")[0]).read_text()
                    assert f'id="col-{table.name}-{column.name}"' in page
    assert ("port", "shop.order_totals") in names and ("table", "shop/silver/orders") in names

    # every value is escaped: in the pages as HTML entities, in the index as JSON escapes
    orders = (out / "products" / "shop.orders.html").read_text()
    assert "<script>alert" not in orders and "&lt;script&gt;alert(&#39;pwned&#39;)&lt;/script&gt; &amp; more" in orders
    script = (out / "assets" / "search-index.js").read_text()
    assert "<script>" not in script and "\\u003cscript\\u003e" in script
    assert any(e["description"] == HOSTILE for e in entries)

    port = section(orders, "port-order_totals")
    assert 'class="badge fresh-fresh"' in port and "latency 2 h" in port
    assert re.search(r"<code>primary_key</code>.*?check-passed", port, re.S)
    assert "rows checked" in port and "no run recorded" not in port.lower()
    text = html.unescape(port)
    snapshot = Port(str(two_domains / ".mesh/lake"), ("shop", "gold", "order_totals")).current()["snapshot"]
    folder = f"{two_domains.resolve()}/.mesh/lake/shop/gold/order_totals"
    assert f"read_parquet(['{folder}/data/{snapshot}/part-0.parquet'])" in text
    assert 'load_table("shop.gold__order_totals")' in text  # the Iceberg table, for any Iceberg reader
    assert 'mesh sql "select * from shop.order_totals limit 10" --domain <your domain>' in text
    assert 'mesh_assets.connect(domain="<your domain>")' in text
    assert "Public: every domain reads it" in port and "<code>customer</code>" in port  # schema and profile
    silver = section(orders, "table-orders")
    assert re.search(r"<code>amount_is_small</code>.*?check-warning", silver, re.S)  # 3.00 is not a valid value

    # lineage across domains, both ways, as links between the product pages (graph nodes and lists)
    assert '<a href="../products/billing.invoices.html#port-invoices">' in orders
    assert '<a class="lineage-link" href="../products/billing.invoices.html#port-invoices">' in orders
    billing = (out / "products" / "billing.invoices.html").read_text()
    assert '<svg class="lineage"' in billing
    assert '<a href="../products/shop.orders.html#port-order_totals">' in billing


def test_deprecation_and_contacts(two_domains: Path, instance, tmp_path: Path) -> None:
    build_catalog(load_mesh(two_domains), tmp_path / "c", instance)
    page = (tmp_path / "c" / "products" / "shop.customers.html").read_text()
    assert "Deprecated." in page and "Supported until 2030-01-31" in page
    assert 'Move to <a href="../products/shop.orders.html#port-order_totals">shop.order_totals</a>' in page
    assert '<a href="https://tickets.example.com/shop">' in page and '<a href="mailto:ann@example.com">' in page
    assert "javascript:" not in page and "the shop channel" in page  # an unsafe link is shown as text only
    index = (tmp_path / "c" / "index.html").read_text()
    assert "status-deprecated" in index and "supported until 2030-01-31" in index


def test_freshness_goes_stale_and_never_run_says_so(two_domains: Path, instance, tmp_path: Path) -> None:
    mesh = load_mesh(two_domains)
    later = datetime.now(UTC) + timedelta(hours=3)  # the contract's latency SLA is 2 h
    build_catalog(mesh, tmp_path / "later", instance, now=later)
    port = section((tmp_path / "later" / "products" / "shop.orders.html").read_text(), "port-order_totals")
    assert 'class="badge fresh-stale"' in port and "expected after" in port

    never = tmp_path / "never"  # a fresh copy of the mesh, never run, and no Dagster instance
    fresh_root = tmp_path / "fresh"
    shutil.copytree(two_domains, fresh_root, ignore=shutil.ignore_patterns(".mesh"))
    build_catalog(load_mesh(fresh_root), never, None)
    page = (never / "products" / "shop.orders.html").read_text()
    assert "never published" in page and "No run recorded" in page and "no run recorded" in page
    assert "read_parquet" not in page and "Nothing published yet" in page


def test_out_folder_is_rebuilt_only_when_it_is_a_catalog(tiny_root: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    mesh = load_mesh(tiny_root)
    out = tmp_path / "site"
    build_catalog(mesh, out)
    (out / "products" / "stale.html").write_text("from an older build")
    build_catalog(mesh, out)  # rebuilt in place
    assert not (out / "products" / "stale.html").exists() and (out / "index.html").is_file()

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(MeshError, match="not a catalog"):
        build_catalog(mesh, mine)
    with pytest.raises(MeshError, match="holds the mesh"):
        build_catalog(mesh, tiny_root)
    assert (mine / "notes.txt").read_text() == "keep me"

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert find_instance(tiny_root) is None  # never run here: no instance, and none created
    assert not (tiny_root / ".dagster").exists()


def test_cli_catalog(tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = mesh_cli(tiny_root, "catalog", "--out", str(out))  # no DAGSTER_HOME (conftest.isolate)
    assert result.returncode == 0, result.stderr
    assert "catalog of 2 data product(s) written" in result.stdout and "no Dagster instance" in result.stderr
    assert (out / "index.html").is_file()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file.txt").write_text("x")
    refused = mesh_cli(tiny_root, "catalog", "--out", str(tmp_path / "taken"))
    assert refused.returncode == 2 and "not a catalog" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (Debian package chromium)")
def test_browse_the_catalog_in_chromium(two_domains: Path, instance, tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    out = tmp_path / "catalog"
    build_catalog(load_mesh(two_domains), out, instance)
    ARTIFACTS.mkdir(exist_ok=True)
    shots = [ARTIFACTS / f"catalog-{name}.png" for name in ("search", "column", "lineage")]
    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto((out / "index.html").as_uri())
            expect(page.locator("article[data-product='shop.orders']")).to_be_visible()

            page.locator("#search").fill("total")
            result = page.locator("#search-results a", has_text="shop.order_totals").filter(has_text="total").first
            expect(result).to_be_visible()
            page.screenshot(path=str(shots[0]))
            result.click()
            page.wait_for_url("**/products/shop.orders.html#col-order_totals-total")
            row = page.locator("#col-order_totals-total")
            expect(row).to_be_in_viewport()
            expect(row).to_contain_text(HOSTILE)  # the hostile description, shown as text…
            assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0  # …never run
            page.screenshot(path=str(shots[1]))

            page.locator("svg.lineage a[href*='billing.invoices.html']").click()
            page.wait_for_url("**/products/billing.invoices.html#port-invoices")
            expect(page.locator("h1")).to_contain_text("billing.invoices")
            expect(page.locator("svg.lineage a[href*='shop.orders.html']")).to_have_count(1)
            page.screenshot(path=str(shots[2]))
        finally:
            browser.close()
    assert errors == []
    assert requests and all(url.startswith("file://") for url in requests), requests
    for shot in shots:
        data = shot.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000, shot
