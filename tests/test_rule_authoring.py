"""Rules as authors need them (issue 21, problems 1–3): every kind of rule can be a warning, written where ODCS
tools accept it; a SQL rule's ``{property}`` is its column, and a query that fails records a failed check
instead of failing the step; a SQL rule may read any table its product may read, checked by ``mesh validate``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from conftest import FIXTURES
from mesh_assets.cli.validate import validate
from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.contract.model import Column, Table
from mesh_assets.contract.rules import RuleError, primary_key_severity, quality_rule, relationship_rule
from mesh_assets.engine.checks import redact_samples, run_rules
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.errors import ContractError
from mesh_assets.orchestration.definitions import build_mesh_definitions
from mesh_assets.orchestration.runner import run_mesh
from test_access import masked
from test_blocking_checks import _evaluations
from test_governance import ORDERS, add_consumer, edit_contract

SILVER = ("shop", "silver", "orders")
GOLD = ("shop", "gold", "order_totals")
EXAMPLE = FIXTURES / "severity_example.yaml"


def _silver(data: dict) -> dict:
    return data["schema"][1]


def _prop(data: dict, name: str) -> dict:
    return next(p for p in _silver(data)["properties"] if p["name"] == name)


def _severity(value) -> list[dict]:
    return [{"property": "severity", "value": value}]


def _warn_all(data: dict) -> None:
    """silver.orders: the relationship, the minimum and the key as warnings, ``required`` as info."""
    _prop(data, "customer")["relationships"][0]["customProperties"] = _severity("warning")
    _prop(data, "customer")["customProperties"] = _severity({"required": "info"})
    _prop(data, "amount")["customProperties"] = _severity("warning")
    _prop(data, "order_id")["customProperties"] = _severity({"primaryKey": "warning"})


def _metadata(evaluation: dg.AssetCheckEvaluation) -> dict:
    return {k: v.value for k, v in evaluation.metadata.items()}


# 1. Every rule kind can be a warning or an error ---------------------------------------------------------------

def test_every_constraint_and_relationship_takes_a_severity_in_custom_properties(tiny_root: Path) -> None:
    edit_contract(tiny_root, _warn_all)
    silver = load_contract(tiny_root / ORDERS, "shop", "t").tables[1]
    assert {r.name: r.severity for r in silver.rules} == {
        "primary_key": "warning", "customer_required": "info", "customer_references_raw_customers": "warning",
        "amount_minimum": "warning", "amount_is_small": "warning", "has_rows": "error"}
    assert [r.name for r in silver.rules if r.blocking] == ["has_rows"]
    asset = build_mesh_definitions(load_mesh(tiny_root)).resolve_assets_def(dg.AssetKey(list(SILVER)))
    specs = {s.name: s.blocking for s in asset.check_specs}
    assert specs["customer_references_raw_customers"] is False and specs["amount_minimum"] is False
    assert specs["primary_key"] is False and specs["has_rows"] is True


def test_the_documented_severities_pass_odcs_and_datacontract_cli_lint() -> None:
    from datacontract.data_contract import DataContract

    product = load_contract(EXAMPLE, "shop", "t")  # the ODCS JSON Schema and Pydantic model accept it
    assert {r.name: r.severity for r in product.tables[0].rules} == {
        "primary_key": "warning", "customer_required": "warning", "customer_valid_values": "info",
        "customer_max_length": "error", "amount_minimum": "warning", "amount_maximum": "error",
        "customer_references_customers": "warning", "amount_is_positive": "warning"}
    run = DataContract(data_contract_file=str(EXAMPLE)).lint()
    assert [(c.result, c.reason) for c in run.checks if c.result != "passed"] == []


@pytest.mark.parametrize(("edit", "field", "says"), [
    (lambda d: _prop(d, "customer")["relationships"][0].update(severity="warning"),
     "schema[1].properties[1].relationships[0]", "customProperties: [{property: severity, value: warning}]"),
    (lambda d: _prop(d, "amount").update(customProperties=_severity({"maximum": "warning"})),
     "schema[1].properties[2].customProperties[0].value.maximum", "name one of minimum"),
    (lambda d: _prop(d, "amount").update(customProperties=_severity("severe")),
     "schema[1].properties[2].customProperties[0].value.minimum", "'severe' is not a severity"),
    (lambda d: _prop(d, "customer")["relationships"][0].update(customProperties=_severity("low")),
     "schema[1].properties[1].relationships[0].customProperties[0].value", "use error, warning or info"),
])
def test_a_misplaced_or_unknown_severity_names_the_field_and_the_fix(tiny_root: Path, edit, field: str,
                                                                     says: str) -> None:
    edit_contract(tiny_root, edit)
    with pytest.raises(ContractError) as err:
        load_contract(tiny_root / ORDERS, "shop", "t")
    assert any(p.startswith(field) and says in p for p in err.value.problems), err.value.problems


def test_the_key_columns_agree_on_the_primary_keys_severity() -> None:
    first = ({"name": "a", "primaryKey": True, "customProperties": _severity({"primaryKey": "warning"})}, [0])
    assert primary_key_severity([first, ({"name": "b", "primaryKey": True}, [1])], []) == "warning"
    with pytest.raises(RuleError, match=r"different severities \(a: warning, b: error\)"):
        primary_key_severity([first, ({"name": "b", "primaryKey": True, "customProperties": _severity("error")},
                                      [1])], [])


def test_warning_relationship_with_orphans_publishes_and_counts_orphans(tiny_root: Path, land,
                                                                       instance: dg.DagsterInstance) -> None:
    edit_contract(tiny_root, _warn_all)
    land("order_id,customer,amount\n1,ann,10.00\n2,ed,-5.00\n3,ed,1.50\n4,fay,2.00\n")
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert summary.success
    checks = _evaluations(instance, summary.run_id)
    fk = checks["shop/silver/orders:customer_references_raw_customers"]
    assert fk.passed is False and fk.severity == dg.AssetCheckSeverity.WARN
    metadata = _metadata(fk)
    assert (metadata["failing_rows"], metadata["orphan_rows"], metadata["distinct_orphan_keys"],
            metadata["null_keys"]) == (3, 3, 2, 0)
    assert sorted((r["customer"], r["rows"]) for r in metadata["sample"]) == [("ed", 2), ("fay", 1)]
    minimum = checks["shop/silver/orders:amount_minimum"]
    assert minimum.passed is False and minimum.severity == dg.AssetCheckSeverity.WARN
    port = PortStorage(root=load_mesh(tiny_root).settings.storage_url).port(SILVER)
    assert port.current()["rows"] == 4  # published with its warnings; gold ran on it
    assert {a.key: a.status for a in summary.assets}["shop/gold/order_totals"] == "materialized"


def _table(rules, columns=("id", "code", "price")) -> Table:
    cols = tuple(Column(n, "string", "VARCHAR", n) for n in columns)
    return Table("d", "p", "t", "silver", "test", cols, tuple(rules), "private", None, None, (), Path("x.yaml"))


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA silver")
    con.execute("""CREATE TABLE silver.t AS SELECT * FROM (VALUES
        (1, 'AA', 10.00::DECIMAL(10,2)), (2, 'AB', -1.00::DECIMAL(10,2)), (2, NULL, 5.50::DECIMAL(10,2)),
        (NULL, 'zz', NULL), (5, '', 3.00::DECIMAL(10,2)), (7, 'AA', 1.00::DECIMAL(10,2))) v(id, code, price)""")
    con.execute("CREATE TABLE silver.codes AS SELECT * FROM (VALUES (1, 'AA'), (2, 'AB')) v(k, c)")
    return con


def _outcomes(con, rules, targets=None):
    return {o.name: o for o in run_rules(con, "silver.t", _table(rules), 10, targets)}


def test_foreign_key_counts_null_keys_apart_from_orphans(con) -> None:
    rule = relationship_rule({"from": ["t.id", "t.code"], "to": ["codes.k", "codes.c"]}, None, "t",
                             ["id", "code", "price"], [])
    out = _outcomes(con, [rule], {rule.name: "silver.codes"})[rule.name]
    # (1,'AA') and (2,'AB') match; (2, NULL) and (NULL,'zz') have a null key part; (5,'') and (7,'AA') are orphans
    assert {k: out.metadata[k] for k in ("failing_rows", "orphan_rows", "distinct_orphan_keys", "null_keys")} == {
        "failing_rows": 2, "orphan_rows": 2, "distinct_orphan_keys": 2, "null_keys": 2}


# 2. SQL rules: {property}, and a query that fails ---------------------------------------------------------------

def test_property_placeholder_is_the_rule_column(con) -> None:
    rule = quality_rule({"id": "price_not_negative", "type": "sql", "mustBe": 0,
                         "query": "SELECT COUNT(*) FROM {object} WHERE {property} < 0"}, "price",
                        ["id", "code", "price"], [])
    out = _outcomes(con, [rule])["price_not_negative"]
    assert out.metadata["observed_value"] == 1 and out.passed is False
    assert 'WHERE "price" < 0' in out.metadata["sql"]


def test_property_placeholder_in_a_table_rule_is_refused() -> None:
    with pytest.raises(RuleError, match=r"\{property\} stands for the column of a property's rule"):
        quality_rule({"type": "sql", "mustBe": 0, "query": "SELECT COUNT(*) FROM {object} WHERE {property} < 0"},
                     None, ["price"], ["schema", 0, "quality", 0])


def test_a_failing_query_records_a_failed_check_and_keeps_every_other_result(con) -> None:
    warning = quality_rule({"id": "code_is_number", "type": "sql", "mustBe": 0, "severity": "warning",
                            "query": "SELECT COUNT(*) FROM {object} WHERE CAST(code AS INTEGER) > 0"},
                           None, ["id", "code", "price"], [])
    blocking = quality_rule({"id": "price_is_number", "type": "sql", "mustBe": 0,
                             "query": "SELECT COUNT(*) FROM {object} WHERE CAST(code AS DATE) > price"},
                            None, ["id", "code", "price"], [])
    required = quality_rule({"metric": "nullValues", "mustBe": 0}, "code", ["id", "code", "price"], [])
    out = _outcomes(con, [warning, blocking, required])
    assert (out["code_is_number"].passed, out["code_is_number"].blocking) == (False, False)
    assert (out["price_is_number"].passed, out["price_is_number"].blocking) == (False, True)
    assert out["code_null_values"].metadata["failing_rows"] == 1  # still measured
    error = out["code_is_number"].metadata["error"]
    assert error.startswith("the rule's query failed on duckdb: Conversion Error") and "Fix the query" in error
    assert "'AA'" not in error and "'…'" in error  # a value of the table is never in the check's metadata
    assert out["code_is_number"].metadata["error_type"] == "Conversion Error"
    redact_samples(list(out.values()), ["code"])
    assert out["code_is_number"].metadata["error"].startswith("the rule's query failed (Conversion Error; the "
                                                              "message is not shown")


@pytest.mark.parametrize("severity", ["error", "warning"])
def test_a_rule_whose_query_fails_at_run_time_records_every_check(tiny_root: Path, instance, severity) -> None:
    def edit(data: dict) -> None:
        _silver(data)["quality"].append({"id": "customer_is_number", "type": "sql", "mustBe": 0,
                                         "severity": severity,
                                         "query": "SELECT COUNT(*) FROM {object} WHERE CAST(customer AS INT) > 0"})
    edit_contract(tiny_root, edit)
    mesh = load_mesh(tiny_root)
    summary = run_mesh(mesh, instance)
    checks = _evaluations(instance, summary.run_id)
    failed = checks["shop/silver/orders:customer_is_number"]
    assert failed.passed is False and "Conversion Error" in _metadata(failed)["error"]
    assert "ann" not in _metadata(failed)["error"]
    assert all(checks[f"shop/silver/orders:{name}"].passed for name in ("primary_key", "has_rows", "amount_minimum",
                                                                        "customer_references_raw_customers"))
    status = {a.key: a.status for a in summary.assets}
    published = PortStorage(root=mesh.settings.storage_url).port(SILVER).current()
    if severity == "error":
        assert not summary.success and status["shop/silver/orders"] == "failed" and published is None
    else:
        assert summary.success and status["shop/gold/order_totals"] == "materialized" and published["rows"] == 3


# 3. A SQL rule reads any table its product may read --------------------------------------------------------------

CROSS_TABLE = [
    {"id": "total_is_sum_of_orders", "type": "sql", "mustBe": 0,
     "query": "SELECT COUNT(*) FROM {object} t WHERE t.total <> "
              "(SELECT sum(amount) FROM silver.orders o WHERE o.customer = t.customer)"},
    {"id": "customers_are_known", "type": "sql", "mustBe": 5, "query": "SELECT COUNT(*) FROM bronze.raw_customers"},
]


def test_a_rule_reads_other_tables_of_its_domain(tiny_root: Path, instance) -> None:
    edit_contract(tiny_root, lambda d: d["schema"][2].update(quality=CROSS_TABLE))
    mesh = load_mesh(tiny_root)
    defs = build_mesh_definitions(mesh)
    deps = defs.resolve_assets_def(dg.AssetKey(list(GOLD))).asset_deps[dg.AssetKey(list(GOLD))]
    assert dg.AssetKey(["shop", "bronze", "raw_customers"]) in deps  # the rule's input is an upstream asset
    assert validate(tiny_root).errors == []
    summary = run_mesh(mesh, instance)
    assert summary.success
    checks = _evaluations(instance, summary.run_id)
    assert _metadata(checks["shop/gold/order_totals:customers_are_known"])["observed_value"] == 5
    assert checks["shop/gold/order_totals:total_is_sum_of_orders"].passed


def test_a_rule_reads_another_domains_port_masked(tiny_root: Path, instance) -> None:
    edit_contract(tiny_root, lambda d: d["schema"][2]["properties"][0].update(classification="pii"))
    add_consumer(tiny_root, "select 'all' as customer, 0.00::DECIMAL(38,2) as total")
    rule = {"id": "every_customer_seen_masked", "type": "sql", "mustBe": 0,
            "query": "SELECT COUNT(*) FROM shop.order_totals WHERE customer NOT IN "
                     f"('{masked('ann')}', '{masked('bob')}')"}
    billing = Path("domains/billing/products/invoices.yaml")
    edit_contract(tiny_root, lambda d: d["schema"][0].update(quality=[rule]), billing)
    summary = run_mesh(load_mesh(tiny_root), instance)
    assert summary.success, [a for a in summary.assets if a.status != "materialized"]
    assert _evaluations(instance, summary.run_id)["billing/gold/invoices:every_customer_seen_masked"].passed


@pytest.mark.parametrize(("query", "rule", "says"), [
    ("SELECT COUNT(*) FROM {object} t JOIN silver.orders o USING (customer) WHERE o.price > 0",
     "structure/quality_rule", 'does not have a column named "price"'),
    ("SELECT COUNT(*) FROM silver.order_lines", "structure/asset",
     "reads silver.order_lines, which no contract of domain 'shop' declares"),
    ("SELECT COUNT(*) FROM {object} WHERE total > customer + 1", "structure/quality_rule", "Binder Error"),
])
def test_validate_plans_each_rule_against_the_tables_it_reads(tiny_root: Path, query: str, rule: str,
                                                              says: str) -> None:
    edit_contract(tiny_root, lambda d: d["schema"][2].update(quality=[{"id": "broken", "type": "sql", "mustBe": 0,
                                                                       "query": query}]))
    errors = validate(tiny_root).errors
    assert [e.rule for e in errors] == [rule], errors
    assert says in errors[0].message and "broken" in errors[0].message
    if rule == "structure/quality_rule":
        assert errors[0].file == tiny_root / ORDERS
        assert errors[0].field == "schema[2].quality[0]" and errors[0].line is not None
        readable = "gold.order_totals, previous.order_totals" + (", silver.orders" if "silver" in query else "")
        assert f"the query may read {readable}, with their contracts' columns" in errors[0].fix
    else:
        assert str(tiny_root / ORDERS) in errors[0].message and "fix the name" in errors[0].message


def test_validate_refuses_a_rule_reading_a_private_table_of_another_domain(tiny_root: Path) -> None:
    add_consumer(tiny_root)
    billing = Path("domains/billing/products/invoices.yaml")
    edit_contract(tiny_root, lambda d: d["schema"][0].update(quality=[
        {"id": "peek", "type": "sql", "mustBe": 0, "query": "SELECT COUNT(*) FROM shop.orders"}]), billing)
    errors = validate(tiny_root).errors
    assert [(e.rule, e.domain) for e in errors] == [("access/private", "billing")]
    assert "quality rule peek" in errors[0].message and "shop.orders is private" in errors[0].message


def test_a_rule_reading_a_downstream_table_is_a_cycle_validate_names(tiny_root: Path) -> None:
    rule = {"id": "has_orders", "type": "sql", "mustBe": 0,
            "query": "SELECT COUNT(*) FROM {object} c WHERE NOT EXISTS "
                     "(SELECT 1 FROM silver.orders o WHERE o.customer = c.customer)"}
    edit_contract(tiny_root, lambda d: d["schema"][0].update(quality=[rule]),
                  Path("domains/shop/products/customers.yaml"))
    errors = validate(tiny_root).errors
    assert [e.rule for e in errors] == ["structure/cycle"], errors
    assert "shop/bronze/raw_customers → shop/silver/orders → shop/bronze/raw_customers" in errors[0].message
    assert "put a SQL rule that reads a later table on that table" in errors[0].fix
