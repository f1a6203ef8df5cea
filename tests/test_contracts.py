"""Contract loading: valid contracts load; each kind of malformed contract gives its clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.mesh import load_domain, load_mesh
from mesh_assets.errors import ContractError, MeshError

CONTRACT = Path("domains/shop/products/orders.yaml")


def test_valid_contract_loads_tables_columns_and_rules(tiny_root: Path) -> None:
    product = load_contract(tiny_root / CONTRACT, "shop", "fallback-team")
    assert product.team == "shop-team"
    assert [(t.layer, t.name) for t in product.tables] == [
        ("bronze", "raw_orders"), ("silver", "orders"), ("gold", "order_totals")]
    silver = product.tables[1]
    assert silver.primary_key == ["order_id"]
    assert {r.name for r in silver.rules} == {"primary_key", "customer_required", "amount_minimum",
                                              "amount_is_small", "has_rows", "customer_references_raw_customers"}
    assert next(r for r in silver.rules if r.name == "amount_is_small").blocking is False
    assert silver.columns[2].physical_type == "DECIMAL(10,2)"
    assert product.tables[0].source.path == "shop/orders*.csv"
    assert product.tables[2].visibility == "public" and silver.visibility == "private"
    assert silver.slas[0].seconds == 7200


def test_reference_mesh_contracts_all_load() -> None:
    mesh = load_mesh(Path(__file__).parent.parent)
    assert mesh.domain_names == ["customers", "finance", "sales", "supply"]
    for domain in mesh.domains():
        assert domain.tables, domain.name
        for table in domain.tables:
            assert table.description and all(c.description for c in table.columns), table.key


def _write_variant(root: Path, edit) -> Path:
    path = root / CONTRACT
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _drop(key):
    return lambda d: d.pop(key)


@pytest.mark.parametrize(
    ("edit", "field", "says"),
    [
        (_drop("id"), "(top level)", "'id' is a required property"),
        (lambda d: d.update(owner="someone"), "(top level)", "'owner' was unexpected"),
        (lambda d: d.update(kind="Contract"), "kind", "use one of DataContract"),
        (lambda d: d.update(apiVersion="v2.2.2"), "apiVersion", "set apiVersion: v3.1.0"),
        (lambda d: d.update(domain="sales"), "domain", "set domain: shop"),
        (lambda d: d["schema"][0]["properties"][0].update(logicalType="int"),
         "schema[0].properties[0].logicalType", "'int' is not allowed"),
        (lambda d: d["schema"][0]["properties"][0].update(physicalType="VARCHAR"),
         "schema[0].properties[0].physicalType", "does not hold logicalType 'integer'"),
        (lambda d: d["schema"][0]["properties"][0].update(physicalType="NOT A TYPE(("),
         "schema[0].properties[0].physicalType", "is not a DuckDB type"),
        (lambda d: d["schema"][1].update(customProperties=[]), "schema[1].customProperties",
         "set the table's layer"),
        (lambda d: d["schema"][0].update(customProperties=[{"property": "layer", "value": "bronze"}]),
         "schema[0].customProperties", "a bronze table needs customProperties"),
        (lambda d: d["schema"][2]["customProperties"].append({"property": "transform", "value": "sql/nope.sql"}),
         "schema[2].customProperties", "transform file sql/nope.sql not found"),
        (lambda d: d["schema"][1]["quality"].append({"id": "dups", "metric": "duplicateValues", "mustBe": 0,
                                                     "arguments": {"properties": ["order_id", "nope"]}}),
         "schema[1].quality[1]", "unknown column nope"),
        (lambda d: d["schema"][1]["quality"].append({"id": "no_op", "metric": "rowCount"}),
         "schema[1].quality[1]", "exactly one operator"),
        (lambda d: d["schema"][1]["properties"][2]["logicalTypeOptions"].update(maxLength=3),
         "schema[1].properties[2].logicalTypeOptions", "'maxLength' was unexpected"),
        (lambda d: (d.update(apiVersion="v3.2.0"),  # v3.1.0's schema refuses the form before the mesh can
                    d["schema"][1]["properties"][1]["relationships"].append({"to": "a.b.c.d"})),
         "schema[1].properties[1].relationships[1].to", "'to' names columns of one table"),
        (lambda d: d["schema"][1].update(relationships=[{"from": ["orders.order_id", "orders.customer"],
                                                          "to": ["raw_customers.customer"]}]),
         "schema[1].relationships[0].to", "2 column(s) in 'from' but 1 in 'to'"),
        (lambda d: d["slaProperties"].append({"property": "latency", "value": 1, "unit": "fortnights"}),
         "slaProperties[1]", "needs a positive number value and a unit"),
        (lambda d: d["slaProperties"].append({"property": "latency", "value": 20, "unit": "s"}),
         "slaProperties[1]", "shorter than 1 minute"),
    ],
)
def test_malformed_contract_names_file_field_and_fix(tiny_root: Path, edit, field: str, says: str) -> None:
    path = _write_variant(tiny_root, edit)
    with pytest.raises(ContractError) as caught:
        load_contract(path, "shop", "shop-team")
    message = str(caught.value)
    assert str(path) in message
    line = next((ln for ln in message.splitlines() if says in ln), None)
    assert line is not None, message
    assert line.strip().startswith(f"- {field}"), message
    assert "(line " in line or field == "(top level)", message


def test_each_table_carries_its_sql_resolved_at_load(tiny_root: Path) -> None:
    sql = tiny_root / "domains" / "shop" / "sql" / "silver" / "orders.sql"
    text = sql.read_text()
    bronze, silver, _ = load_contract(tiny_root / CONTRACT, "shop", "shop-team").tables
    sql.write_text("select 1 as one")  # the table keeps what its contract resolved when it loaded
    assert silver.sql == text and silver.transform == sql.resolve() and not silver.generated
    assert bronze.sql is None and bronze.transform is None


def test_an_sql_file_that_is_not_text_names_contract_field_file_and_fix(tiny_root: Path) -> None:
    (tiny_root / "domains" / "shop" / "sql" / "silver" / "orders.sql").write_bytes(b"select '\xff\xfe' as bad")
    with pytest.raises(ContractError) as caught:
        load_contract(tiny_root / CONTRACT, "shop", "shop-team")
    says = "transform file sql/silver/orders.sql is not UTF-8 text; save it as UTF-8"
    line = next((ln for ln in str(caught.value).splitlines() if says in ln), None)
    assert line is not None and line.strip().startswith("- schema[1].customProperties (line "), str(caught.value)


def test_a_dbt_model_the_mesh_cannot_render_fails_its_contract_with_the_model_file(tiny_root: Path) -> None:
    model = tiny_root / "dbt" / "models" / "shop" / "order_totals.sql"
    model.parent.mkdir(parents=True)
    model.write_text("select customer, sum(amount) as total from {{ ref('orders') }} group by customer\n")
    path = _write_variant(tiny_root, lambda d: d["schema"][2]["customProperties"].append(
        {"property": "transform", "value": "dbt:order_totals"}))
    with pytest.raises(ContractError) as caught:
        load_contract(path, "shop", "shop-team")
    line = next((ln for ln in str(caught.value).splitlines() if "ref('orders')" in ln), "")
    assert line.strip().startswith("- schema[2].customProperties (line "), str(caught.value)
    assert f"{model}: ref('orders')" in line and "read it with source()" in line


def test_yaml_syntax_error_gives_the_line(tiny_root: Path) -> None:
    path = tiny_root / CONTRACT
    path.write_text(path.read_text().replace("name: orders\nversion", "name: [orders\nversion", 1))
    with pytest.raises(ContractError, match=r"line \d+, column \d+: not valid YAML"):
        load_contract(path, "shop", "shop-team")


def test_domain_reports_every_broken_contract(tiny_root: Path) -> None:
    products = tiny_root / "domains" / "shop" / "products"
    (products / "second.yaml").write_text("apiVersion: v3.1.0\nkind: DataContract\n")
    _write_variant(tiny_root, _drop("version"))
    with pytest.raises(MeshError) as caught:
        load_domain(tiny_root / "domains" / "shop")
    assert "second.yaml" in str(caught.value) and "orders.yaml" in str(caught.value)


def test_domain_descriptor_is_validated(tiny_root: Path) -> None:
    (tiny_root / "domains" / "shop" / "domain.yaml").write_text(
        "name: shop\nteam: t\ndescription: d\ningestion_schedule: every day\n")
    with pytest.raises(ContractError, match="'every day' is not a cron expression"):
        load_domain(tiny_root / "domains" / "shop")


def test_mesh_settings_reject_unknown_fields(tiny_root: Path) -> None:
    (tiny_root / "mesh.yaml").write_text("retention:\n  snapshot: 3\n")
    with pytest.raises(ContractError, match=r"retention\.snapshot \(line 2\): Extra inputs are not permitted"):
        load_mesh(tiny_root)
