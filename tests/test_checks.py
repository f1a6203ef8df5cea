"""Contract rules evaluated on DuckDB: counts come from aggregates, samples are bounded."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from mesh_assets.contract.model import Column, Table
from mesh_assets.contract.rules import constraint_rules, primary_key_rule, quality_rule
from mesh_assets.engine.checks import run_rules

COLUMNS = ["id", "code", "price", "day"]


def _table(rules) -> Table:
    cols = tuple(Column(n, "string", "VARCHAR", n, primary_key_position=1 if n == "id" else None) for n in COLUMNS)
    return Table("d", "p", "t", "silver", "test", cols, tuple(rules), "private", None, None, (), Path("x.yaml"))


@pytest.fixture
def con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("CREATE SCHEMA silver")
    con.execute("""CREATE TABLE silver.t AS SELECT * FROM (VALUES
        (1, 'AA', 10.00::DECIMAL(10,2), DATE '2024-01-01'),
        (2, 'AB', -1.00::DECIMAL(10,2), DATE '2023-12-31'),
        (2, NULL, 5.50::DECIMAL(10,2), DATE '2024-02-01'),
        (NULL, 'zz', NULL, NULL),
        (5, '', 7.00::DECIMAL(10,2), DATE '2024-03-01')) v(id, code, price, day)""")
    return con


def _run(con, rules, sample_rows=10):
    return {o.name: o for o in run_rules(con, "silver.t", _table(rules), sample_rows)}


def _q(rule: dict, column: str | None = None):
    return quality_rule(rule, column, COLUMNS, ["quality", 0])


def test_constraints_count_failing_rows(con) -> None:
    rules = [
        *constraint_rules({"name": "code", "logicalType": "string", "required": True,
                           "logicalTypeOptions": {"pattern": "^[A-Z]{2}$", "maxLength": 2}}, []),
        *constraint_rules({"name": "price", "logicalType": "number",
                           "logicalTypeOptions": {"minimum": 0, "exclusiveMaximum": 10}}, []),
        *constraint_rules({"name": "day", "logicalType": "date", "logicalTypeOptions": {"minimum": "2024-01-01"}}, []),
        *constraint_rules({"name": "id", "logicalType": "integer", "enum": [{"value": 1}, {"value": 2}]}, []),
        primary_key_rule(["id"]),
    ]
    out = _run(con, rules)
    failing = {n: o.metadata.get("failing_rows") for n, o in out.items()}
    assert failing == {"code_required": 1, "code_pattern": 2, "code_max_length": 0, "price_minimum": 1,
                       "price_exclusive_maximum": 1, "day_minimum": 1, "primary_key": 2,
                       "id_valid_values": 1}
    assert out["code_max_length"].passed and not out["code_pattern"].passed
    assert out["price_minimum"].metadata["sample"] == [{"id": 2, "price": "-1.00"}]
    assert out["price_minimum"].metadata["pass_rate"] == 0.8


def test_quality_metrics_operators_and_units(con) -> None:
    rules = [
        _q({"id": "nulls", "metric": "nullValues", "mustBeLessOrEqualTo": 1}, "code"),
        _q({"id": "missing", "metric": "missingValues", "arguments": {"missingValues": [None, ""]},
            "mustBe": 0}, "code"),
        _q({"id": "valid", "metric": "invalidValues", "arguments": {"validValues": ["AA", "AB"]}, "mustBe": 0},
           "code"),
        _q({"id": "valid_pct", "metric": "invalidValues", "arguments": {"validValues": ["AA", "AB"]},
            "mustBeLessThan": 50, "unit": "percent"}, "code"),
        _q({"id": "dups", "metric": "duplicateValues", "mustBe": 0}, "id"),
        _q({"id": "pair_dups", "metric": "duplicateValues", "arguments": {"properties": ["id", "code"]},
            "mustBe": 0}),
        _q({"id": "rows", "metric": "rowCount", "mustBeBetween": [1, 4]}),
        _q({"id": "neg", "type": "sql", "query": "select count(*) from {object} where price < 0", "mustBe": 0,
            "severity": "warning"}),
    ]
    out = _run(con, rules)
    assert out["nulls"].passed and out["nulls"].metadata["failing_rows"] == 1
    assert not out["missing"].passed and out["missing"].metadata["failing_rows"] == 2
    assert out["valid"].metadata["failing_rows"] == 2  # 'zz' and '' (null is not invalid)
    assert out["valid_pct"].passed and out["valid_pct"].metadata["failing_percent"] == 40.0
    assert out["dups"].metadata["failing_rows"] == 1 and out["dups"].metadata["sample"] == [{"id": 2, "rows": 2}]
    assert out["pair_dups"].passed
    assert not out["rows"].passed and out["rows"].metadata["observed_value"] == 5
    assert not out["neg"].passed and out["neg"].blocking is False and out["neg"].metadata["observed_value"] == 1


def test_sample_is_bounded(con) -> None:
    con.execute("CREATE OR REPLACE TABLE silver.t AS SELECT i AS id, 'x' AS code, -1.0 AS price, NULL AS day "
                "FROM range(100000) r(i)")
    out = _run(con, constraint_rules({"name": "price", "logicalType": "number",
                                      "logicalTypeOptions": {"minimum": 0}}, []), sample_rows=3)
    assert out["price_minimum"].metadata["failing_rows"] == 100000
    assert len(out["price_minimum"].metadata["sample"]) == 3


def test_sql_rule_with_a_broken_query_fails_its_check_with_the_error(con) -> None:
    rule = _q({"id": "broken", "type": "sql", "query": "select count(*) from {object} where nope > 0", "mustBe": 0})
    out = _run(con, [rule])["broken"]
    assert not out.passed and out.blocking and out.metadata["query_failed"]
    assert 'column "nope" not found' in out.metadata["error"] and "Fix the query" in out.metadata["error"]


def test_sql_rule_returning_text_fails_with_a_reason(con) -> None:
    out = _run(con, [_q({"id": "text", "type": "sql", "query": "select 'many'", "mustBe": 0})])
    assert not out["text"].passed and "not a number" in out["text"].metadata["error"]


def test_composite_foreign_key_counts_orphans(con) -> None:
    from mesh_assets.contract.rules import relationship_rule

    con.execute("CREATE SCHEMA gold")
    con.execute("CREATE TABLE gold.codes AS SELECT * FROM (VALUES (1, 'AA'), (2, 'AB')) v(k, c)")
    rule = relationship_rule({"from": ["t.id", "t.code"], "to": ["codes.k", "codes.c"]}, None, "t", COLUMNS, [])
    out = _run_with_targets(con, [rule], {rule.name: "gold.codes"})[rule.name]
    # (1,'AA') and (2,'AB') match; (2, NULL) and (NULL,'zz') have a null key part; (5,'') is an orphan
    assert rule.name == "id_code_references_codes"
    assert out.metadata["failing_rows"] == 1 and out.metadata["distinct_orphan_keys"] == 1
    assert out.metadata["sample"] == [{"id": 5, "code": "", "rows": 1}]


def _run_with_targets(con, rules, targets):
    return {o.name: o for o in run_rules(con, "silver.t", _table(rules), 10, targets)}
