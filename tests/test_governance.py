"""Governance by code: policies of mesh.yaml, structural errors at validate and at load, deprecation."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
import yaml
from typer.testing import CliRunner

from conftest import mesh_cli
from mesh_assets import build_domain_definitions
from mesh_assets.cli.main import app
from mesh_assets.cli.validate import validate
from mesh_assets.contract.servers import mesh_server
from mesh_assets.errors import MeshError

REPO = Path(__file__).parent.parent
ORDERS = Path("domains/shop/products/orders.yaml")


def edit_contract(root: Path, edit, path: Path = ORDERS) -> None:
    data = yaml.safe_load((root / path).read_text())
    edit(data)
    (root / path).write_text(yaml.safe_dump(data, sort_keys=False))


def add_consumer(root: Path, sql: str = "select customer, total from shop.order_totals") -> Path:
    """A second domain, ``billing``, whose gold table ``invoices`` reads ``sql``."""
    domain = root / "domains" / "billing"
    (domain / "products").mkdir(parents=True)
    (domain / "sql" / "gold").mkdir(parents=True)
    (domain / "domain.yaml").write_text("name: billing\nteam: billing-team\n"
                                       "members: [bea@example.com, bob@example.com]\n"
                                       "description: Invoices.\n")
    (domain / "sql" / "gold" / "invoices.sql").write_text(sql)
    contract = {
        "apiVersion": "v3.1.0", "kind": "DataContract", "id": "billing-invoices", "name": "invoices",
        "version": "1.0.0", "status": "active", "domain": "billing", "team": {"name": "billing-team"},
        "description": {"purpose": "What each customer owes."},
        "slaProperties": [{"property": "latency", "value": 1, "unit": "d"}],
        "servers": [mesh_server("billing")],
        "schema": [{"name": "invoices", "physicalName": "gold__invoices", "physicalType": "table",
                    "description": "One row per customer.",
                    "customProperties": [{"property": "layer", "value": "gold"}],
                    "properties": [
                        {"name": "customer", "logicalType": "string", "physicalType": "VARCHAR", "primaryKey": True,
                         "description": "Customer."},
                        {"name": "total", "logicalType": "number", "physicalType": "DECIMAL(38,2)",
                         "description": "Amount owed in EUR."}]}],
    }
    (domain / "products" / "invoices.yaml").write_text(yaml.safe_dump(contract, sort_keys=False))
    return domain


def findings(root: Path) -> list[dict]:
    return [f.to_dict(root) for f in validate(root).findings]


def test_reference_mesh_passes_every_policy_and_reports_json() -> None:
    result = mesh_cli(REPO, "validate", "--format", "json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    assert report["errors"] == 0 and set(report["domains"]) == {"customers", "finance", "sales", "supply"}
    assert report["domains"]["finance"]["checks"] > 0


@pytest.mark.parametrize(
    ("edit", "rule", "field", "says"),
    [
        (lambda d: d.pop("team"), "policy/owner_team", "team", "names no owner team"),
        (lambda d: d["schema"][2]["properties"][1].pop("description"), "policy/descriptions",
         "schema[2].properties[1].description", "column 'total' of output port 'order_totals'"),
        (lambda d: d.pop("slaProperties"), "policy/port_sla", "schema[2]", "output port 'order_totals' has no SLA"),
        (lambda d: d["schema"][2]["properties"][0].pop("primaryKey"), "policy/gold_primary_key",
         "schema[2].properties", "gold table 'order_totals' has no primary key"),
        (lambda d: d["schema"][2]["properties"][0].update(classification="top-secret"), "policy/classification",
         "schema[2].properties[0].classification", "classification 'top-secret'"),
        (lambda d: d["schema"][2]["properties"][1].update(name="Total"), "policy/naming",
         "schema[2].properties[1].name", "'Total' is not snake_case"),
    ],
)
def test_policy_violations_name_file_line_rule_and_fix(tiny_root: Path, edit, rule: str, field: str,
                                                       says: str) -> None:
    if rule == "policy/naming":  # the SQL must still produce the renamed column
        sql = tiny_root / "domains/shop/sql/gold/order_totals.sql"
        sql.write_text(sql.read_text().replace("as total", 'as "Total"'))
    edit_contract(tiny_root, edit)
    # `mesh validate` in this process (test_reference_mesh_passes_every_policy_and_reports_json runs the command)
    result = CliRunner().invoke(app, ["validate", "--format", "json", "--root", str(tiny_root)])
    assert result.exit_code == 1, result.stdout
    found = [f for f in json.loads(result.stdout)["findings"] if f["rule"] == rule]
    assert len(found) == 1, result.stdout
    assert found[0]["file"] == str(ORDERS) and found[0]["field"] == field and found[0]["line"] > 0
    assert says in found[0]["message"] and found[0]["fix"]
    text = CliRunner().invoke(app, ["validate", "--root", str(tiny_root)])
    assert text.exit_code == 1 and f"[{rule}]" in text.stderr and f"{ORDERS}:{found[0]['line']}" in text.stderr


def test_a_reserved_word_column_is_refused(tiny_root: Path) -> None:
    sql = tiny_root / "domains/shop/sql/gold/order_totals.sql"
    sql.write_text(sql.read_text().replace("as total", 'as "select"'))
    edit_contract(tiny_root, lambda d: d["schema"][2]["properties"][1].update(name="select"))
    assert [f["message"] for f in findings(tiny_root) if f["rule"] == "policy/naming"] == [
        "column name 'select' is not snake_case or is a reserved SQL word"]


def test_policy_levels_come_from_mesh_yaml(tiny_root: Path) -> None:
    edit_contract(tiny_root, lambda d: d.pop("team"))
    with (tiny_root / "mesh.yaml").open("a") as handle:
        handle.write("governance:\n  policies:\n    owner_team: warning\n")
    result = mesh_cli(tiny_root, "validate", "--format", "json")
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["errors"] == 0
    assert [f["rule"] for f in report["findings"] if f["severity"] == "warning"] == ["policy/owner_team"]


def test_an_output_port_without_its_server_entry_is_reported_with_the_entry_to_add(tiny_root: Path) -> None:
    def edit(contract: dict) -> None:
        contract.pop("servers")
        contract["schema"][2].pop("physicalName")
    edit_contract(tiny_root, edit)
    found = [f for f in findings(tiny_root) if f["rule"] == "policy/port_server"]
    assert [f["field"] for f in found] == ["servers", "schema[2]"], found
    assert "schema: shop" in found[0]["fix"] and "format: iceberg" in found[0]["fix"]
    assert found[1]["fix"] == "set physicalName: gold__order_totals"


@pytest.mark.parametrize("edit, field, says", [
    (lambda d: d["servers"][0].update(schema="sales"), "servers[0]", "schema: shop"),
    (lambda d: d["servers"][0].update(catalog="prod"), "servers[0]", "catalog: mesh"),
    (lambda d: d["schema"][2].update(physicalName="order_totals"), "schema[2].physicalName",
     "set physicalName: gold__order_totals"),
])
def test_a_server_entry_that_misnames_the_iceberg_table_is_refused(tiny_root: Path, edit, field: str,
                                                                  says: str) -> None:
    """A consumer outside the mesh follows the entry: a wrong catalog, schema or table name would send it to
    another table, so the contract does not load."""
    edit_contract(tiny_root, edit)
    result = mesh_cli(tiny_root, "validate", "--format", "json")
    found = [f for f in json.loads(result.stdout)["findings"] if f["severity"] == "error"]
    assert result.returncode == 1 and len(found) == 1, result.stdout
    assert found[0]["field"] == field and says in found[0]["message"], found[0]


def test_private_port_of_another_domain_fails_validate_and_load(tiny_root: Path) -> None:
    add_consumer(tiny_root, "select customer, sum(amount) as total from shop.orders group by customer")
    found = [f for f in findings(tiny_root) if f["domain"] == "billing"]
    assert [f["rule"] for f in found] == ["access/private"]
    assert "shop.orders is private to domain 'shop'" in found[0]["message"]
    with pytest.raises(MeshError, match=r"invoices\.sql: shop\.orders is private"):
        build_domain_definitions(tiny_root / "domains" / "billing")


def test_restricted_port_without_grant_says_how_to_request(tiny_root: Path) -> None:
    add_consumer(tiny_root)
    edit_contract(tiny_root, lambda d: d["schema"][2].setdefault("customProperties", []).append(
        {"property": "visibility", "value": "restricted"}))
    result = mesh_cli(tiny_root, "validate")
    assert result.returncode == 1
    assert "shop.order_totals is a restricted output port and domain 'billing' holds no grant to it" in result.stderr
    assert 'mesh access request shop.order_totals --for billing --purpose' in result.stderr
    with pytest.raises(MeshError, match="holds no grant"):
        build_domain_definitions(tiny_root / "domains" / "billing")


def test_cycle_across_domains_fails_validate_and_load(tiny_root: Path) -> None:
    add_consumer(tiny_root)
    sql = tiny_root / "domains/shop/sql/gold/order_totals.sql"
    sql.write_text("select o.customer, sum(o.amount) as total from silver.orders o "
                   "join billing.invoices i on i.customer = o.customer group by o.customer")
    cycle = [f for f in findings(tiny_root) if f["rule"] == "structure/cycle"]
    assert len(cycle) == 1
    assert "billing/gold/invoices → shop/gold/order_totals → billing/gold/invoices" in cycle[0]["message"]
    with pytest.raises(MeshError, match="dependency cycle"):
        build_domain_definitions(tiny_root / "domains" / "shop")


def test_rejects_port_key_cannot_be_declared_twice(tiny_root: Path) -> None:
    def clash(d):
        twin = json.loads(json.dumps(d["schema"][0]))
        twin["name"] = "raw_orders__rejects"
        d["schema"].append(twin)
    edit_contract(tiny_root, clash)
    with pytest.raises(MeshError, match=r"asset key shop/bronze/raw_orders__rejects is also declared"):
        build_domain_definitions(tiny_root / "domains" / "shop")


def test_deprecated_port_warns_its_readers_and_shows_in_metadata(tiny_root: Path) -> None:
    add_consumer(tiny_root)
    edit_contract(tiny_root, lambda d: d.update(status="deprecated", customProperties=[
        {"property": "endOfSupport", "value": "2027-03-31"}, {"property": "replacedBy", "value": "shop.totals_v2"}]))
    warnings = [f for f in findings(tiny_root) if f["rule"] == "access/deprecated"]
    assert len(warnings) == 1 and warnings[0]["severity"] == "warning"
    assert ("shop.order_totals is deprecated, supported until 2027-03-31; move to shop.totals_v2"
            in warnings[0]["message"])
    assert mesh_cli(tiny_root, "validate").returncode == 0  # warnings do not fail
    billing = build_domain_definitions(tiny_root / "domains" / "billing")
    shop = build_domain_definitions(tiny_root / "domains" / "shop")
    consumer = billing.resolve_assets_def(dg.AssetKey(["billing", "gold", "invoices"]))
    producer = shop.resolve_assets_def(dg.AssetKey(["shop", "gold", "order_totals"]))
    assert "deprecated" in consumer.specs_by_key[consumer.key].metadata["deprecated_inputs"]
    spec = producer.specs_by_key[producer.key]
    assert spec.metadata["deprecation"].startswith("shop.order_totals is deprecated")
    assert spec.tags["mesh/status"] == "deprecated"


def test_deprecated_needs_an_end_of_support_date(tiny_root: Path) -> None:
    edit_contract(tiny_root, lambda d: d.update(status="deprecated"))
    with pytest.raises(MeshError, match=r"status \(line \d+\): a deprecated product needs its end of support"):
        build_domain_definitions(tiny_root / "domains" / "shop")


@pytest.mark.parametrize("logical, physical, fix", [("integer", "HUGEINT", "DECIMAL(38,0)"),
                                                    ("integer", "UBIGINT", "DECIMAL(20,0)"),
                                                    ("timestamp", "TIMESTAMP_NS", "TIMESTAMP"),
                                                    ("time", "TIME WITH TIME ZONE", "TIME")])
def test_a_type_iceberg_cannot_hold_is_refused_at_validate_and_load(tiny_root: Path, logical: str, physical: str,
                                                                     fix: str) -> None:
    """Output ports are Iceberg tables: a contract type no Iceberg type holds exactly is refused with the file,
    the column and the type to use, by `mesh validate` and when the domain loads."""
    edit_contract(tiny_root, lambda d: d["schema"][2]["properties"][1].update(logicalType=logical,
                                                                              physicalType=physical))
    result = CliRunner().invoke(app, ["validate", "--format", "json", "--root", str(tiny_root)])
    assert result.exit_code == 1, result.stdout
    found = [f for f in json.loads(result.stdout)["findings"] if "Iceberg" in f["message"]]
    assert len(found) == 1, result.stdout
    assert found[0]["file"] == str(ORDERS) and found[0]["field"] == "schema[2].properties[1].physicalType"
    assert f"{physical} cannot be stored in an Iceberg table" in found[0]["message"]
    assert f"use {fix}" in found[0]["message"]
    with pytest.raises(MeshError, match="cannot be stored in an Iceberg table"):
        build_domain_definitions(tiny_root / "domains" / "shop")
