"""Short contracts: internal tables inherit their columns (``customProperties`` ``inheritColumns``), the
reference mesh's contracts lost no column, type or rule when they were shortened, and the file stays ODCS."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from mesh_assets.contract.loader import load_contract
from mesh_assets.contract.odcs import validate_odcs
from mesh_assets.errors import ContractError
from mesh_assets.yaml_source import load_yaml
from conftest import REPO
from fixtures.reference_contracts import SNAPSHOT, loaded_contracts

CONTRACTS = sorted((REPO / "domains").glob("*/products/*.yaml"))
# `wc -l domains/*/products/*.yaml` on main before the contracts were shortened (the snapshot's commit).
LINES_BEFORE = 2460
# Rules added to the reference mesh after the snapshot, by table: the cross-table SQL rules (docs/contracts.md).
ADDED_SINCE = {"sales.silver.order_lines": ("order_total_is_sum_of_lines", "every_order_has_lines")}
# Columns added after the snapshot, by table: the order lines carry their order's date, their partition column
# since sales is partitioned by month (docs/partitions.md), and the bronze tables read one folder per month.
COLUMNS_ADDED_SINCE = {"sales.bronze.lineitem": ("o_orderdate",), "sales.silver.order_lines": ("o_orderdate",)}
DESCRIBED_SINCE = {"sales.bronze.orders", "sales.bronze.lineitem"}


def test_the_reference_mesh_keeps_every_column_type_and_rule_of_its_long_contracts() -> None:
    before = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert "from the loader and contracts of main" in before["_header"]
    now = loaded_contracts()
    assert sorted(now) == sorted(before["tables"])
    for key, table in before["tables"].items():
        added = COLUMNS_ADDED_SINCE.get(key, ())
        assert [c for c in now[key]["columns"] if c["name"] not in added] == table["columns"], key
        assert [c["name"] for c in now[key]["columns"] if c["name"] in added] == list(added), key
        kept = [r for r in now[key]["rules"] if r["name"] not in ADDED_SINCE.get(key, ())
                and not any(r["name"].startswith(f"{c}_") for c in added)]  # the added columns' own rules
        assert kept == table["rules"], key
        fields = ("product", "visibility") if key in DESCRIBED_SINCE else ("product", "description", "visibility")
        assert {k: now[key][k] for k in fields} == {k: table[k] for k in fields}, key
    for key, names in ADDED_SINCE.items():
        assert [r["name"] for r in now[key]["rules"] if r["name"] in names] == list(names), key


def test_the_reference_mesh_contracts_are_a_third_shorter() -> None:
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in CONTRACTS)
    assert lines <= LINES_BEFORE * 2 / 3, lines
    inheriting = [p.name for p in CONTRACTS if "property: inheritColumns" in p.read_text(encoding="utf-8")]
    assert len(inheriting) >= 4, inheriting


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: p.stem)
def test_a_shortened_contract_is_still_odcs_as_written(path: Path) -> None:
    validate_odcs(load_yaml(path))  # raises ContractError on any ODCS schema or model problem


def test_output_ports_are_written_out_in_full() -> None:
    """Other ODCS tools read the file as written: no gold table of the reference mesh inherits."""
    for path in CONTRACTS:
        for table in yaml.safe_load(path.read_text(encoding="utf-8"))["schema"]:
            custom = {p["property"]: p["value"] for p in table.get("customProperties") or []}
            if custom.get("layer") == "gold":
                assert "inheritColumns" not in custom, (path.name, table["name"])


GOLD = {"name": "totals", "physicalType": "table", "description": "Totals.",
        "customProperties": [{"property": "layer", "value": "gold"}, {"property": "visibility", "value": "public"},
                             {"property": "transform", "value": "sql/gold/totals.sql"}],
        "properties": [
            {"name": "id", "logicalType": "integer", "physicalType": "BIGINT", "required": True, "primaryKey": True,
             "description": "Key.", "logicalTypeOptions": {"minimum": 1}},
            {"name": "name", "logicalType": "string", "physicalType": "VARCHAR", "required": True,
             "description": "Name.", "quality": [{"id": "name_valid", "metric": "invalidValues",
                                                  "arguments": {"validValues": ["a", "b"]}, "mustBe": 0}]},
            {"name": "owner_id", "logicalType": "integer", "physicalType": "BIGINT", "description": "Owner.",
             "relationships": [{"to": "owners.id"}]},
            {"name": "total", "logicalType": "number", "physicalType": "DECIMAL(18,2)", "description": "Total."}],
        "quality": [{"id": "has_rows", "metric": "rowCount", "mustBeGreaterThan": 0},
                    {"id": "small", "type": "sql", "query": "SELECT count(*) FROM {object} WHERE total > 10",
                     "mustBe": 0, "severity": "warning"}]}


def _contract(tmp_path: Path, *tables: dict) -> Path:
    for name in ("raw", "clean", "totals", "owners", "port"):
        (tmp_path / "sql" / "silver").mkdir(parents=True, exist_ok=True)
        (tmp_path / "sql" / "gold").mkdir(parents=True, exist_ok=True)
        (tmp_path / "sql" / "silver" / f"{name}.sql").write_text("SELECT 1 AS id")
        (tmp_path / "sql" / "gold" / f"{name}.sql").write_text("SELECT 1 AS id")
    path = tmp_path / "products" / "p.yaml"
    path.parent.mkdir(exist_ok=True)
    owners = {"name": "owners", "physicalType": "table", "description": "Owners.",
              "customProperties": [{"property": "layer", "value": "silver"}],
              "properties": [{"name": "id", "logicalType": "integer", "physicalType": "BIGINT",
                              "description": "Owner key."}]}
    path.write_text(yaml.safe_dump({
        "apiVersion": "v3.1.0", "kind": "DataContract", "id": "d-p", "name": "p", "version": "1.0.0",
        "status": "active", "domain": "d", "team": {"name": "t"}, "schema": [owners, *tables, GOLD]},
        sort_keys=False))
    return path


def _silver(value: object, properties: list | None = None, quality: list | None = None) -> dict:
    table = {"name": "raw", "physicalType": "table", "description": "Raw.",
             "customProperties": [{"property": "layer", "value": "silver"},
                                  {"property": "inheritColumns", "value": value}]}
    if properties is not None:
        table["properties"] = properties
    if quality is not None:
        table["quality"] = quality
    return table


def test_a_table_inherits_every_column_with_its_rules_but_not_the_table_level_rules(tmp_path: Path) -> None:
    product = load_contract(_contract(tmp_path, _silver("totals")), "d", "t")
    raw, gold = product.tables[1], product.tables[2]
    assert raw.columns == tuple(c for c in gold.columns)  # same columns, types, constraints and locations
    assert [r.name for r in raw.rules] == ["primary_key", "id_required", "id_minimum", "name_required",
                                           "name_valid", "owner_id_references_owners"]
    assert {r.name for r in gold.rules} - {r.name for r in raw.rules} == {"has_rows", "small"}


def test_overrides_add_drop_and_replace_what_a_column_inherits(tmp_path: Path) -> None:
    props = [{"name": "name", "logicalType": "string", "unique": True, "quality": []},
             {"name": "owner_id", "logicalType": "integer", "relationships": []},
             {"name": "total", "logicalType": "number", "physicalType": "DECIMAL(20,4)"},
             {"name": "note", "logicalType": "string", "physicalType": "VARCHAR", "description": "New."}]
    value = {"from": "totals", "except": ["id"], "quality": ["small"]}
    raw = load_contract(_contract(tmp_path, _silver(value, props)), "d", "t").tables[1]
    assert [(c.name, c.physical_type, c.unique, c.description) for c in raw.columns] == [
        ("name", "VARCHAR", True, "Name."), ("owner_id", "BIGINT", False, "Owner."),
        ("total", "DECIMAL(20,4)", False, "Total."), ("note", "VARCHAR", False, "New.")]
    assert [r.name for r in raw.rules] == ["name_required", "name_unique", "small"]
    assert raw.columns[0].location == ("schema", 1, "properties", 0)  # the override's entry
    assert next(r for r in raw.rules if r.name == "small").blocking is False


def test_columns_lists_the_inherited_columns_in_order_and_places_new_ones(tmp_path: Path) -> None:
    props = [{"name": "first", "logicalType": "integer", "physicalType": "INTEGER", "description": "New."}]
    value = {"from": "totals", "columns": ["first", "total", "id"]}
    raw = load_contract(_contract(tmp_path, _silver(value, props)), "d", "t").tables[1]
    assert [c.name for c in raw.columns] == ["first", "total", "id"]
    assert raw.columns[1].location == ("schema", 2, "properties", 3)  # declared by the gold table


def test_inheritance_chains_resolve(tmp_path: Path) -> None:
    middle = _silver("totals")
    last = {**_silver({"from": "raw", "except": ["owner_id"]}), "name": "clean"}
    product = load_contract(_contract(tmp_path, middle, last), "d", "t")
    assert [c.name for c in product.tables[2].columns] == ["id", "name", "total"]


@pytest.mark.parametrize(("value", "says"), [
    ("nothing", "names table 'nothing', which is not in this contract; name one of its tables"),
    ("raw", "goes round in a circle (raw → raw)"),
    ({"from": "totals", "except": ["nope"]}, "table 'totals' has no column nope"),
    ({"from": "totals", "columns": ["nope"]}, "declare a new column in properties[]"),
    ({"from": "totals", "columns": ["id"], "except": ["name"]}, "give columns or except, not both"),
    ({"from": "totals", "only": ["id"]}, "unknown option(s) only"),
    ({"from": "totals", "quality": ["nope"]}, "has no table-level quality rule nope; its rules are has_rows, small"),
    (["totals"], "write inheritColumns as a table name"),
])
def test_a_wrong_inheritance_is_refused_with_its_line_and_fix(tmp_path: Path, value: object, says: str) -> None:
    with pytest.raises(ContractError) as info:
        load_contract(_contract(tmp_path, _silver(value)), "d", "t")
    assert says in str(info.value)
    assert "schema[1].customProperties[1].value" in str(info.value) and "(line " in str(info.value)


def test_a_column_overridden_twice_is_refused(tmp_path: Path) -> None:
    props = [{"name": "name", "logicalType": "string", "unique": True},
             {"name": "name", "logicalType": "string", "required": False}]
    with pytest.raises(ContractError, match=r"schema\[1\]\.properties\[1\]\.name \(line \d+\): column 'name' "
                                            "appears twice"):
        load_contract(_contract(tmp_path, _silver("totals", props)), "d", "t")


def test_a_problem_of_an_inherited_column_is_reported_once_at_the_column_it_comes_from(tmp_path: Path) -> None:
    path = _contract(tmp_path, _silver("totals"))
    path.write_text(path.read_text().replace("physicalType: DECIMAL(18,2)", "physicalType: DECIMALL"))
    with pytest.raises(ContractError) as info:
        load_contract(path, "d", "t")
    problems = [p for p in info.value.problems if "physicalType" in p]
    assert len(problems) == 1 and problems[0].startswith("schema[2].properties[3].physicalType"), problems


def test_a_policy_finding_on_an_inherited_column_points_at_the_line_that_declares_it(tmp_path: Path) -> None:
    from mesh_assets.governance.policies import policy_findings
    from mesh_assets.settings import GovernanceSettings

    port = {"name": "port", "physicalType": "table", "description": "A port inheriting its columns.",
            "customProperties": [{"property": "layer", "value": "gold"},
                                 {"property": "inheritColumns", "value": "owners"}]}
    path = _contract(tmp_path, port)
    path.write_text(path.read_text().replace("description: Owner key.", "description: ''"))
    product = load_contract(path, "d", "t")
    found = [f for f in policy_findings(product, GovernanceSettings())
             if f.rule == "policy/descriptions" and "properties" in (f.field or "")]
    assert [f.field for f in found] == ["schema[0].properties[0].description"]  # owners' id, which port inherits
    assert "output port 'port'" in found[0].message
    assert found[0].line == load_yaml(path).line_of(["schema", 0, "properties", 0, "description"])


def test_main_had_the_long_contracts(tmp_path: Path) -> None:
    """The line count the target is measured from is main's at the snapshot's commit."""
    header = json.loads(SNAPSHOT.read_text(encoding="utf-8"))["_header"]
    commit = header.split("at commit ", 1)[1].split(",", 1)[0]
    listed = subprocess.run(["git", "-C", str(REPO), "ls-tree", "-r", "--name-only", commit, "domains"],
                            capture_output=True, text=True, check=False)
    if listed.returncode:
        pytest.skip("the snapshot's commit is not in this clone's history")
    total = 0
    for name in listed.stdout.split():
        if "/products/" in name and name.endswith(".yaml"):
            shown = subprocess.run(["git", "-C", str(REPO), "show", f"{commit}:{name}"], capture_output=True,
                                   text=True, check=True)
            total += len(shown.stdout.splitlines())
    assert total == LINES_BEFORE
