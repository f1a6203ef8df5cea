"""The contract registry (docs/domain-repos.md): versioned, atomic entries; a consumer in another mesh folder
resolves a producer's port from it, pinned to a major; consumer expectations checked by the producer's
validation; ``mesh impact`` across the registry.

The producer is the tiny mesh (domain ``shop``, output port ``shop.order_totals``: ``customer`` primary key,
``total`` required); the consumer is a mesh of its own in another folder (domain ``billing``), sharing the
producer's registry folder.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from mesh_assets.cli.publish import publish
from mesh_assets.cli.validate import validate
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.errors import MeshError
from mesh_assets.governance.access import AccessError, authorize_input
from mesh_assets.governance.impact import impact
from mesh_assets.registry.store import ContractEntry, PortEntry, Registry, RegistryError
from mesh_assets.sql.inputs import find_inputs

ORDERS = Path("domains/shop/products/orders.yaml")
CONSUMER_SQL = "select customer, total * 1.2 as gross from shop.order_totals where total > 0"


def entry(version: str = "1.0.0", contract: str = "id: a\n", product: str = "orders") -> ContractEntry:
    return ContractEntry("shop", product, version, "shop-team", contract,
                         (PortEntry("order_totals", "shop.gold__order_totals", "public"),))


def edit(root: Path, change, path: Path = ORDERS) -> None:
    data = yaml.safe_load((root / path).read_text())
    change(data)
    (root / path).write_text(yaml.safe_dump(data, sort_keys=False))


def totals(data: dict[str, Any]) -> dict[str, Any]:
    return next(t for t in data["schema"] if t["name"] == "order_totals")


def make_consumer(parent: Path, registry: Path, input_ports: list[dict] | None = None,
                  sql: str = CONSUMER_SQL) -> Path:
    """A mesh of its own (domain ``billing``, gold port ``invoices`` read from ``shop.order_totals``) that
    resolves other domains from ``registry``."""
    root = parent / "billing-repo"
    (root / "domains/billing/products").mkdir(parents=True)
    (root / "domains/billing/sql/gold").mkdir(parents=True)
    (root / "mesh.yaml").write_text(f"name: billing\nregistry: {{path: {registry}}}\n")
    (root / "domains/billing/domain.yaml").write_text(
        "name: billing\nteam: billing-team\nmembers: [bo@example.com]\ndescription: Invoices.\n")
    contract: dict[str, Any] = {
        "apiVersion": "v3.1.0", "kind": "DataContract", "id": "billing-invoices", "name": "invoices",
        "version": "1.0.0", "status": "active", "domain": "billing", "team": {"name": "billing-team"},
        "description": {"purpose": "Gross amounts per customer."},
        "slaProperties": [{"property": "latency", "value": 1, "unit": "d"}],
        "servers": [{"server": "mesh", "type": "custom", "format": "iceberg", "catalog": "mesh", "schema": "billing"}],
        "schema": [{"name": "invoices", "physicalName": "gold__invoices", "physicalType": "table",
                    "description": "Gross per customer.", "customProperties": [{"property": "layer", "value": "gold"}],
                    "properties": [
                        {"name": "customer", "logicalType": "string", "physicalType": "VARCHAR", "primaryKey": True,
                         "description": "Customer name."},
                        {"name": "gross", "logicalType": "number", "physicalType": "DECIMAL(38,3)",
                         "description": "Total with tax."}]}]}
    if input_ports is not None:
        contract["customProperties"] = [{"property": "inputPorts", "value": input_ports}]
    (root / "domains/billing/products/invoices.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    (root / "domains/billing/sql/gold/invoices.sql").write_text(sql)
    return root


@pytest.fixture
def producer(tiny_root: Path) -> Path:
    """The tiny mesh, its registry in ``<tmp>/registry``."""
    registry = tiny_root.parent / "registry"
    (tiny_root / "mesh.yaml").write_text((tiny_root / "mesh.yaml").read_text() + f"registry: {{path: {registry}}}\n")
    return tiny_root


def registry_of(root: Path) -> Registry:
    return load_mesh(root).registry


# -- the store ---------------------------------------------------------------------------------------------------

def test_a_version_is_registered_once_and_never_changes(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "reg"))
    assert registry.publish_contract(entry()) == "registered"
    assert registry.publish_contract(entry()) == "unchanged"
    with pytest.raises(RegistryError, match="registered already with another contract.*bump"):
        registry.publish_contract(entry(contract="id: b\n"))
    assert registry.publish_contract(entry("1.1.0", "id: b\n")) == "registered"
    assert registry.publish_contract(entry("1.10.0", "id: c\n")) == "registered"
    assert [e.version for e in registry.contracts("shop")] == ["1.0.0", "1.1.0", "1.10.0"]  # semver order
    assert registry.contracts("shop")[0].contract == "id: a\n"


def test_an_object_store_prefix_holds_the_registry_too() -> None:
    registry = Registry("memory://mesh-registry-test")  # fsspec's in-memory store: the object-store code path
    assert not registry.local
    assert registry.publish_contract(entry()) == "registered"
    assert registry.publish_contract(entry()) == "unchanged"
    with pytest.raises(RegistryError, match="registered already"):
        registry.publish_contract(entry(contract="id: b\n"))
    assert [e.contract for e in registry.contracts("shop")] == ["id: a\n"]
    assert registry.contract_domains() == ["shop"]
    registry.fs.rm(registry.base, recursive=True)


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0/../../x", "", "1.0.0-"])
def test_a_version_that_is_no_semantic_version_is_refused(tmp_path: Path, version: str) -> None:
    with pytest.raises(RegistryError, match="not a semantic version"):
        Registry(str(tmp_path / "reg")).publish_contract(entry(version))
    assert not (tmp_path / "reg").exists()


def test_two_publishers_of_one_version_never_tear_it_and_only_one_wins(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "reg"))
    contracts = [f"id: writer-{i}\n" + "x: " + "y" * 200_000 + "\n" for i in range(8)]
    outcomes: list[str] = []

    def write(text: str) -> None:
        try:
            outcomes.append(registry.publish_contract(entry(contract=text)))
        except RegistryError as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=write, args=(c,)) for c in contracts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("registered") == 1
    assert sum("registered already" in o for o in outcomes) == 7
    [stored] = registry.contracts("shop")
    assert stored.contract in contracts  # whole: its sha256 was checked when read
    folder = tmp_path / "reg/contracts/shop/orders"
    assert sorted(p.name for p in folder.iterdir()) == ["1.0.0.json"]  # no temporary file left


def test_expectations_are_replaced_whole(tmp_path: Path) -> None:
    from mesh_assets.registry.store import Expectation, ExpectationsEntry

    registry = Registry(str(tmp_path / "reg"))
    for n in (3, 1):
        registry.publish_expectations(ExpectationsEntry("billing", "billing-team", tuple(
            Expectation(f"shop.t{i}", "invoices", "billing-team", {"a": "BIGINT"}, 1) for i in range(n))))
    [stored] = registry.expectations()
    assert [e.port for e in stored.expectations] == ["shop.t0"]
    assert sorted(p.name for p in (tmp_path / "reg/expectations").iterdir()) == ["billing.json"]


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[: len(text) // 2], "not a JSON entry"),
    (lambda text: text.replace("id: a", "id: z"), "does not match its sha256"),
    (lambda text: text.replace('"format": 1', '"format": 9'), "entry format 9"),
    (lambda text: text.replace('"version": "1.0.0"', '"version": "1.0.1"'), "not where it is"),
    (lambda text: text.replace('"ports": [', '"portz": ['), "missing or malformed"),
])
def test_a_bad_entry_is_named_with_the_fix(tmp_path: Path, damage, message: str) -> None:
    registry = Registry(str(tmp_path / "reg"))
    registry.publish_contract(entry())
    path = tmp_path / "reg/contracts/shop/orders/1.0.0.json"
    path.write_text(damage(path.read_text()))
    with pytest.raises(RegistryError, match=message) as caught:
        registry.contracts("shop")
    assert "contracts/shop/orders/1.0.0.json" in str(caught.value) and "mesh publish" in str(caught.value)


# -- publishing and resolving ------------------------------------------------------------------------------------

def test_publish_registers_output_ports_with_their_iceberg_table(producer: Path) -> None:
    published = publish(producer)
    assert [(p.what, p.name, p.version, p.outcome) for p in published] == [
        ("contract", "orders", "1.0.0", "registered"), ("expectations", "shop", "", "0 input port(s)")]
    [stored] = registry_of(producer).contracts("shop")
    assert stored.ports == (PortEntry("order_totals", "shop.gold__order_totals", "public"),)
    assert stored.team == "shop-team" and stored.members == ("sam@example.com", "sara@example.com")
    assert stored.contract == (producer / ORDERS).read_text()
    assert publish(producer)[0].outcome == "unchanged"
    edit(producer, lambda d: totals(d).update(description="Reworded."))
    with pytest.raises(MeshError, match="orders version 1.0.0 is registered already"):
        publish(producer)


def test_a_consumer_resolves_the_port_from_the_registry_at_its_pinned_major(producer: Path) -> None:
    publish(producer)
    edit(producer, lambda d: (d.update(version="2.0.0"), totals(d)["properties"].append(
        {"name": "currency", "logicalType": "string", "physicalType": "VARCHAR", "description": "ISO code."})))
    publish(producer)
    consumer = make_consumer(producer.parent, producer.parent / "registry", [{"port": "shop.order_totals",
                                                                              "major": 1}])
    mesh = load_mesh(consumer)
    port = mesh.output_port("shop", "order_totals")
    assert [c.name for c in port.columns] == ["customer", "total"]  # version 1.0.0, not 2.0.0
    assert mesh.domain("shop").published == (("orders", "1.0.0"),) and port.sql is None
    report = validate(consumer)
    assert report.errors == []
    [pin] = [f for f in report.warnings if f.rule == "change/pin"]
    assert "pins major 1 of shop.order_totals" in pin.message and "2.0.0" in pin.message
    assert pin.file == consumer / "domains/billing/products/invoices.yaml" and pin.line is not None


def test_an_unpinned_port_from_the_registry_warns_and_a_pin_to_a_missing_major_fails(producer: Path) -> None:
    publish(producer)
    consumer = make_consumer(producer.parent, producer.parent / "registry")
    [warning] = [f for f in validate(consumer).warnings if f.rule == "change/pin"]
    assert "without pinning" in warning.message and "major: 1" in warning.fix
    (consumer / "domains/billing/products/invoices.yaml").write_text(
        (consumer / "domains/billing/products/invoices.yaml").read_text() +
        "customProperties:\n- property: inputPorts\n  value:\n  - {port: shop.order_totals, major: 3}\n")
    errors = validate(consumer).errors
    assert any("pins major 3 of shop.orders" in f.message and "1.0.0" in f.message for f in errors), errors


def test_access_decisions_read_grants_from_the_registry(producer: Path) -> None:
    edit(producer, lambda d: totals(d)["customProperties"].append({"property": "visibility", "value": "restricted"}))
    publish(producer)
    consumer = make_consumer(producer.parent, producer.parent / "registry")
    mesh = load_mesh(consumer)
    [ref] = find_inputs(CONSUMER_SQL, "billing")
    with pytest.raises(AccessError, match="restricted output port.*billing"):
        authorize_input(mesh, mesh.domain("billing"), ref, "invoices.sql")
    assert any(f.rule == "access/restricted" for f in validate(consumer).errors)


def test_the_reference_mesh_needs_no_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_REGISTRY", str(tmp_path / "empty"))
    mesh = load_mesh(Path(__file__).parent.parent)
    assert mesh.output_port("customers", "customer_profile").sql is not None  # from its files
    with pytest.raises(MeshError, match="no domain 'nowhere' in .* nor in the contract registry"):
        mesh.domain("nowhere")


# -- consumer-driven contracts -----------------------------------------------------------------------------------

@pytest.fixture
def published_consumer(producer: Path) -> Path:
    """The producer published; the consumer published its expectations (it reads customer and total, and
    declares customer unique and a latency of at most 1 day)."""
    publish(producer)
    consumer = make_consumer(producer.parent, producer.parent / "registry", [
        {"port": "shop.order_totals", "major": 1, "properties": [{"name": "customer", "unique": True}],
         "freshness": {"property": "latency", "value": 1, "unit": "d"}}])
    publish(consumer)
    return consumer


def test_the_consumer_registers_the_columns_its_sql_reads(published_consumer: Path, producer: Path) -> None:
    [entry_] = [e for e in registry_of(producer).expectations() if e.consumer == "billing"]
    [expectation] = entry_.expectations
    assert (entry_.consumer, expectation.port, expectation.product, expectation.team) == (
        "billing", "shop.order_totals", "invoices", "billing-team")
    assert expectation.columns == {"customer": "VARCHAR", "total": "DECIMAL(38,2)"}  # total: only in WHERE too
    assert expectation.unique == ("customer",) and expectation.major == 1 and expectation.freshness_seconds == 86400
    assert [(e.table, e.column, e.sources) for e in entry_.lineage] == [
        ("gold.invoices", "customer", ("shop.order_totals.customer",)),
        ("gold.invoices", "gross", ("shop.order_totals.total",))]


def expectation_errors(root: Path) -> list:
    return [f for f in validate(root).errors if f.rule == "change/expectation"]


def test_dropping_a_column_the_consumer_reads_fails_the_producer_naming_the_consumer(
        published_consumer: Path, producer: Path) -> None:
    assert expectation_errors(producer) == []
    edit(producer, lambda d: totals(d)["properties"].pop())  # total
    [error] = expectation_errors(producer)
    assert "column total: column removed" in error.message
    assert "consumer billing (product invoices, team billing-team)" in error.message
    assert error.file == producer / ORDERS and error.line is not None
    with pytest.raises(MeshError, match="(?s)not published.*consumer billing"):
        publish(producer)


@pytest.mark.parametrize("change, expected", [
    (lambda d: totals(d)["properties"][1].update(physicalType="DOUBLE", logicalType="number"),
     "column total: type changed from DECIMAL(38,2) to DOUBLE"),
    (lambda d: totals(d)["properties"][0].pop("primaryKey"), "column customer: no longer unique"),
    (lambda d: d["slaProperties"][0].update(value=3, unit="d"), "a latency SLA of 3 d, longer than the 1 d"),
    (lambda d: totals(d)["customProperties"].append({"property": "visibility", "value": "restricted"}),
     "restricted, and domain 'billing' holds no grant"),
])
def test_each_broken_expectation_is_named(published_consumer: Path, producer: Path, change, expected: str) -> None:
    edit(producer, change)
    messages = [f.message for f in expectation_errors(producer)]
    assert any(expected in m and "billing" in m for m in messages), messages


def test_a_compatible_change_passes(published_consumer: Path, producer: Path) -> None:
    edit(producer, lambda d: (d.update(version="1.1.0"), totals(d)["properties"].append(
        {"name": "currency", "logicalType": "string", "physicalType": "VARCHAR", "description": "ISO code."})))
    assert expectation_errors(producer) == []
    assert [p.outcome for p in publish(producer)][0] == "registered"


def test_impact_follows_column_lineage_across_the_registry(published_consumer: Path, producer: Path) -> None:
    mesh = load_mesh(producer)
    [row] = impact(mesh, "shop.order_totals.total", mesh.domains())
    assert (row.domain, row.product, row.team, row.table, row.column, row.via, row.depth, row.output_port) == (
        "billing", "invoices", "billing-team", "gold.invoices", "gross", "shop.order_totals.total", 1, True)
    assert {r.column for r in impact(mesh, "shop.order_totals", mesh.domains())} == {"customer", "gross"}
    with pytest.raises(MeshError, match="has no column 'nope'"):
        impact(mesh, "shop.order_totals.nope", mesh.domains())


def test_impact_reports_a_column_read_only_in_a_filter(producer: Path) -> None:
    publish(producer)
    consumer = make_consumer(producer.parent, producer.parent / "registry",
                             sql="select customer, 1.0 as gross from shop.order_totals where total > 0")
    publish(consumer)
    mesh = load_mesh(producer)
    rows = impact(mesh, "shop.order_totals.total", mesh.domains())
    assert [(r.domain, r.table, r.column) for r in rows] == [("billing", "gold.invoices", None)]
    assert json.loads(json.dumps([r.to_dict() for r in rows]))[0]["team"] == "billing-team"


def test_access_requests_for_a_registered_domain_are_made_in_its_repository(producer: Path) -> None:
    from mesh_assets.governance.access_requests import request_access

    edit(producer, lambda d: totals(d)["customProperties"].append({"property": "visibility", "value": "restricted"}))
    publish(producer)
    consumer = make_consumer(producer.parent, producer.parent / "registry")
    with pytest.raises(MeshError, match="published from another repository.*its repository"):
        request_access(load_mesh(consumer), "shop.order_totals", "billing", "invoices", requested_by="bo@example.com")
    assert not (consumer / ".mesh/registry-cache/shop/access").exists()


def test_two_products_pinning_different_majors_of_one_producer_are_refused(producer: Path) -> None:
    publish(producer)
    edit(producer, lambda d: d.update(version="2.0.0"))
    publish(producer)
    consumer = make_consumer(producer.parent, producer.parent / "registry", [{"port": "shop.order_totals",
                                                                              "major": 1}])
    other = yaml.safe_load((consumer / "domains/billing/products/invoices.yaml").read_text())
    other.update(id="billing-credits", name="credits")
    other["schema"][0].update(name="credits", physicalName="gold__credits")
    other["customProperties"][0]["value"][0]["major"] = 2
    (consumer / "domains/billing/products/credits.yaml").write_text(yaml.safe_dump(other, sort_keys=False))
    (consumer / "domains/billing/sql/gold/credits.sql").write_text(CONSUMER_SQL)
    with pytest.raises(MeshError, match="pins majors 1, 2 of its ports"):
        load_mesh(consumer).domain("shop")


def test_a_consumer_in_another_repository_is_granted_access_in_the_producers(producer: Path) -> None:
    from mesh_assets.governance.access_requests import decide_request, request_access

    edit(producer, lambda d: totals(d)["customProperties"].append({"property": "visibility", "value": "restricted"}))
    publish(producer)
    consumer = make_consumer(producer.parent, producer.parent / "registry", [{"port": "shop.order_totals",
                                                                              "major": 1}])
    publish(consumer)  # registers its team's members with its expectations
    with pytest.raises(MeshError, match="not a member of team 'billing-team'"):
        request_access(load_mesh(producer), "shop.order_totals", "billing", "invoices", requested_by="sam@example.com")
    request = request_access(load_mesh(producer), "shop.order_totals", "billing", "invoices",
                             requested_by="bo@example.com")
    decide_request(load_mesh(producer), request.id, True, "invoicing", decided_by="sam@example.com")
    edit(producer, lambda d: d.update(version="1.0.1"))
    assert [f for f in validate(producer).findings if f.rule.startswith("access/")] == []
    publish(producer)
    mesh = load_mesh(consumer)
    [ref] = find_inputs(CONSUMER_SQL, "billing")
    assert authorize_input(mesh, mesh.domain("billing"), ref, "invoices.sql").grant.domain == "billing"
    assert validate(consumer).errors == []
