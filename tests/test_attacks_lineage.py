"""PII laundering through a consumer (security issue, item 11): classification follows the data.

The attack: ``finance`` holds a PII grant on ``customers.customer_profile`` and republished ``c_name``, ``c_phone``
and ``c_address`` in its public port ``finance.returned_item_reporting`` unclassified, so any reader saw them in
clear. ``mesh validate`` now refuses a column computed from a sensitive column unless it is classified sensitive
or declassified with a reason (mesh_assets.governance.classification).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from mesh_assets.catalog import build_catalog
from mesh_assets.cli.validate import validate
from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.errors import MeshError
from mesh_assets.governance.access import decide
from mesh_assets.governance.changes import compare_products
from mesh_assets.governance.classification import classification_findings
from mesh_assets.sql.lineage import column_sources

REPO = Path(__file__).parent.parent
Q10 = Path("domains/finance/products/returned_item_reporting.yaml")
Q10_SQL = Path("domains/finance/sql/gold/returned_item_reporting.sql")
TINY = Path("domains/shop/products/orders.yaml")
RULE = "security/classification"
PII_COLUMNS = {"c_name", "c_address", "c_phone"}


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    """The reference mesh copied to a temporary folder, with ``finance.returned_item_reporting`` as it was
    before the fix: its customer columns selected from a pii port and published unclassified."""
    root = tmp_path / "mesh"
    shutil.copytree(REPO / "domains", root / "domains", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "dbt", root / "dbt", ignore=shutil.ignore_patterns("logs"))
    shutil.copy(REPO / "mesh.yaml", root / "mesh.yaml")
    contract = root / Q10
    contract.write_text(re.sub(r"\n *classification: pii[^\n]*", "", contract.read_text()))
    return root


def _finance(root: Path) -> list:
    mesh = load_mesh(root)
    return [f for f in classification_findings(mesh, [mesh.domain("finance")]) if f.rule == RULE]


def _column(root: Path, name: str, *lines: str) -> None:
    """Add ``lines`` (YAML, indented as a column's keys) to column ``name`` of the Q10 contract."""
    contract = root / Q10
    text = contract.read_text()
    anchor = f"      - name: {name}\n"
    assert text.count(anchor) == 1
    contract.write_text(text.replace(anchor, anchor + "".join(f"        {line}\n" for line in lines)))


def test_unclassified_pii_republished_by_a_public_port_is_a_validate_error(reference: Path) -> None:
    findings = [f for f in validate(reference).findings if f.rule == RULE]
    by_column = {f.field: f for f in findings}
    assert {f.severity for f in findings} == {"error"}
    assert all(f.file == reference / Q10 for f in findings), [str(f) for f in findings]
    # schema[0].properties[1] is c_name, [5] c_address, [6] c_phone: exactly the three clear PII columns
    assert set(by_column) == {"schema[0].properties[1]", "schema[0].properties[5]", "schema[0].properties[6]"}
    c_name = by_column["schema[0].properties[1]"]
    assert "'c_name'" in c_name.message and "customers.customer_profile.c_name (pii)" in c_name.message
    assert "classification: pii" in c_name.fix and "declassified" in c_name.fix
    assert c_name.line == (reference / Q10).read_text().splitlines().index("      - name: c_name") + 1
    assert "customers.customer_profile.c_phone (pii)" in by_column["schema[0].properties[6]"].message


def test_classifying_the_columns_clears_the_findings(reference: Path) -> None:
    for name in PII_COLUMNS:
        _column(reference, name, "classification: pii")
    assert _finance(reference) == []


def test_declassifying_with_a_reason_clears_the_finding(reference: Path) -> None:
    _column(reference, "c_name", "customProperties:",
            "  - {property: declassified, value: 'TPC-H names are synthetic: Customer# and the key, no person'}")
    assert "'c_name'" not in " ".join(f.message for f in _finance(reference))
    assert len(_finance(reference)) == 2  # c_address and c_phone are still reported


@pytest.mark.parametrize("value", ["''", "true", "ok", "'   '"])
def test_declassified_without_a_reason_is_refused(reference: Path, value: str) -> None:
    _column(reference, "c_name", "customProperties:", f"  - {{property: declassified, value: {value}}}")
    with pytest.raises(MeshError, match="declassified needs the reason"):
        load_mesh(reference).domain("finance")


def test_classified_and_declassified_at_once_is_refused(reference: Path) -> None:
    _column(reference, "c_name", "classification: pii", "customProperties:",
            "  - {property: declassified, value: 'an aggregate of the names, not a name'}")
    with pytest.raises(MeshError, match="both classified 'pii' and declassified"):
        load_mesh(reference).domain("finance")


def test_a_column_computed_through_an_expression_is_caught(reference: Path) -> None:
    sql = reference / Q10_SQL
    text = sql.read_text().replace("    c.c_name,\n", "    upper(c.c_name) AS c_name,\n")
    sql.write_text(text.replace("    c.c_comment\n", "    concat(c.c_phone, ' ', c.c_address) AS c_comment\n"))
    for name in PII_COLUMNS:
        _column(reference, name, "classification: pii")
    messages = {f.field: f.message for f in _finance(reference)}
    assert set(messages) == {"schema[0].properties[7]"}  # c_comment; upper(c_name) is classified pii
    assert "customers.customer_profile.c_phone (pii)" in messages["schema[0].properties[7]"]
    assert "customers.customer_profile.c_address (pii)" in messages["schema[0].properties[7]"]


def _tiny(tmp_path: Path, gold_sql: str | None = None) -> Path:
    """The tiny mesh with ``raw_orders.customer`` classified pii (and gold ``order_totals`` built by
    ``gold_sql`` when given)."""
    root = tmp_path / "tiny"
    shutil.copytree(REPO / "tests" / "fixtures" / "tiny_mesh", root)
    contract = root / TINY
    contract.write_text(contract.read_text().replace(
        "{name: customer, logicalType: string, physicalType: VARCHAR, required: true, description: Customer name.}",
        "{name: customer, classification: pii, logicalType: string, physicalType: VARCHAR, required: true, "
        "description: Customer name.}", 1))
    if gold_sql is not None:
        (root / "domains" / "shop" / "sql" / "gold" / "order_totals.sql").write_text(gold_sql)
    return root


def _shop(root: Path) -> dict[str, str]:
    mesh = load_mesh(root)
    return {f"{f.field}": f.message for f in classification_findings(mesh, [mesh.domain("shop")])}


def test_a_column_computed_through_two_layers_is_caught(tmp_path: Path) -> None:
    root = _tiny(tmp_path)
    found = _shop(root)
    # silver orders.customer = trim(bronze customer); gold order_totals.customer = silver customer
    assert set(found) == {"schema[1].properties[1]", "schema[2].properties[0]"}, found
    assert "bronze.raw_orders.customer (pii)" in found["schema[1].properties[1]"]
    gold = found["schema[2].properties[0]"]
    assert "silver.orders.customer (pii, from shop/bronze/raw_orders.customer)" in gold
    # classifying silver alone leaves gold reported: gold reads a pii column
    contract = root / TINY
    contract.write_text(contract.read_text().replace(
        "      - name: customer\n        logicalType: string",
        "      - name: customer\n        classification: pii\n        logicalType: string", 1))
    assert set(_shop(root)) == {"schema[2].properties[0]"}


def test_count_star_is_not_flagged_but_an_aggregate_of_pii_is_until_declassified(tmp_path: Path) -> None:
    root = _tiny(tmp_path, "select count(distinct customer) as customer, count(*) as total from bronze.raw_orders")
    assert set(_shop(root)) == {"schema[1].properties[1]", "schema[2].properties[0]"}  # total is not reported
    contract = root / TINY
    contract.write_text(contract.read_text().replace(
        "{name: customer, logicalType: string, physicalType: VARCHAR, primaryKey: true, description: Customer name.}",
        "{name: customer, logicalType: string, physicalType: VARCHAR, primaryKey: true, description: Customer name., "
        "customProperties: [{property: declassified, value: 'a count of distinct customers, no name'}]}"))
    assert set(_shop(root)) == {"schema[1].properties[1]"}  # only silver's trim(customer) is left
    site = tmp_path / "site"
    build_catalog(load_mesh(root), site)  # the reason is shown where readers look for the column
    page = "".join(p.read_text() for p in site.rglob("*.html"))
    assert "declassified: a count of distinct customers, no name" in page


def test_column_sources_follow_expressions_and_skip_constants() -> None:
    sources = column_sources("select count(*) as n, upper(a) as u, count(distinct a) as d, 1 as one "
                             "from silver.t where b > 0", {("silver", "t"): {"a": "VARCHAR", "b": "BIGINT"}})
    assert sources == {"n": set(), "u": {("silver", "t", "a")}, "d": {("silver", "t", "a")}, "one": set()}


PYTHON = ("def transform(inputs, session):\n"
          "    return inputs['silver.orders'].aggregate('customer, sum(amount) AS total')\n")


def test_a_python_transform_is_assumed_to_carry_every_input_column_unless_it_declares(tmp_path: Path) -> None:
    root = _tiny(tmp_path)
    (root / "domains" / "shop" / "python" / "gold").mkdir(parents=True)
    (root / "domains" / "shop" / "python" / "gold" / "order_totals.py").write_text(PYTHON)
    contract = root / TINY
    text = contract.read_text().replace(
        "    description: Total amount per customer.\n    customProperties:\n",
        "    description: Total amount per customer.\n    customProperties:\n"
        "      - {property: transform, value: python/gold/order_totals.py}\n"
        "      - {property: inputs, value: [silver.orders]}\n")
    text = text.replace("      - name: customer\n        logicalType: string",
                        "      - name: customer\n        classification: pii\n        logicalType: string", 1)
    contract.write_text(text)
    found = _shop(root)
    assert set(found) == {"schema[2].properties[0]", "schema[2].properties[1]"}  # customer and total
    assert "Python is not traced" in found["schema[2].properties[1]"]
    contract.write_text(text.replace(
        "description: Sum of amounts in EUR.}",
        "description: Sum of amounts in EUR., customProperties: [{property: derivedFrom, "
        "value: [silver.orders.amount]}]}"))
    assert set(_shop(root)) == {"schema[2].properties[0]"}
    contract.write_text(text.replace(
        "description: Sum of amounts in EUR.}",
        "description: Sum of amounts in EUR., customProperties: [{property: derivedFrom, "
        "value: [silver.orders.price]}]}"))
    assert "silver.orders.price, which is no column" in _shop(root)["schema[2].properties[1].customProperties"]


def test_derived_from_on_a_sql_table_is_refused(tmp_path: Path) -> None:
    root = _tiny(tmp_path)
    contract = root / TINY
    contract.write_text(contract.read_text().replace(
        "description: Sum of amounts in EUR.}",
        "description: Sum of amounts in EUR., customProperties: [{property: derivedFrom, value: []}]}"))
    with pytest.raises(MeshError, match="derivedFrom is declared by Python transforms only"):
        load_mesh(root).domain("shop")


def test_classifying_a_port_column_is_a_breaking_change(reference: Path) -> None:
    old = load_contract(reference / Q10, "finance", "")
    new = load_contract(REPO / Q10, "finance", "")
    changes = {c.column: c for c in compare_products(old, new) if c.column in PII_COLUMNS}
    assert set(changes) == PII_COLUMNS and {c.kind for c in changes.values()} == {"breaking"}
    assert "masked" in changes["c_name"].what


def test_reference_mesh_validates_and_q10_customer_columns_are_pii_masked_for_public_readers() -> None:
    report = validate(REPO)
    assert [str(f) for f in report.findings if f.rule == RULE] == []
    assert report.errors == [], [str(f) for f in report.errors]
    mesh = load_mesh(REPO)
    table = mesh.output_port("finance", "returned_item_reporting")
    product = mesh.domain("finance").product_of(table)
    assert {c.name for c in table.columns if c.classification == "pii"} == PII_COLUMNS
    assert set(decide(product, table, None, mesh.settings.governance).masked) == PII_COLUMNS
    assert set(decide(product, table, "sales", mesh.settings.governance).masked) == PII_COLUMNS
    assert decide(product, table, "finance", mesh.settings.governance).masked == ()


def test_a_metric_reading_a_pii_column_is_reported_on_its_generated_port(reference: Path) -> None:
    contract = reference / "domains" / "sales" / "products" / "order_lines_wide.yaml"
    contract.write_text(contract.read_text().replace(
        "            expression: count(DISTINCT l_orderkey)\n            dimensions: [customer_nation, c_mktsegment]",
        "            expression: count(DISTINCT l_orderkey)\n            dimensions: [customer_nation, c_name]", 1))
    mesh = load_mesh(reference)
    found = classification_findings(mesh, [mesh.domain("sales")])
    assert len(found) == 1 and found[0].file == contract, [str(f) for f in found]
    assert "'dimensions' of gold table 'order_lines_wide__metrics'" in found[0].message
    assert "gold.order_lines_wide.c_name (pii)" in found[0].message and "metrics" in found[0].fix


def test_a_labels_port_keeps_the_classification_of_its_entity_columns(reference: Path) -> None:
    contract = reference / "domains" / "customers" / "products" / "customer_profile.yaml"
    text = contract.read_text()
    gold = text.index("  - name: customer_profile\n")
    key = text.index("      - name: c_custkey\n", gold) + len("      - name: c_custkey\n")
    contract.write_text(text[:key] + "        classification: pii\n" + text[key:])
    labels = load_mesh(reference).domain("customers").table("gold", "customer_profile__labels")
    assert {c.name: c.classification for c in labels.columns}["c_custkey"] == "pii"
