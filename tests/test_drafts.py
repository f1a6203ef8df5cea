"""Drafts of `mesh new product --from`: short (bronze typed once, silver and gold inherit), honest (inferred
value rules warn, money only where the name says so, a year has no maximum), and placeholder descriptions
refused once the contract is active."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from mesh_assets.cli.inference import infer
from mesh_assets.cli.scaffold import create_domain, create_product
from mesh_assets.cli.validate import validate
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.governance.policies import policy_findings

WIDE_COLUMNS = ["record_id", "station_code", "country", "region", "city", "observed_on", "year", "month",
                "temperature_c", "humidity_pct", "wind_speed", "rain_mm", "unit_price", "total_amount", "quantity",
                "status", "channel", "score", "note"]
VALUE_KINDS = ("bound", "valid_values", "sql", "length", "pattern")


def wide_csv(path: Path, rows: int = 300) -> Path:
    """A 19-column weather-station CSV: a key, codes, dates, a year, measurements with one to three decimals,
    two money columns, statuses and free text."""
    rng = random.Random(7)
    lines = [",".join(WIDE_COLUMNS)]
    for i in range(1, rows + 1):
        lines.append(",".join(map(str, [
            i, f"S{i % 17:03d}", ("FR", "DE", "ES")[i % 3], ("north", "south")[i % 2], f"city{i % 40}",
            f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}", 2000 + i % 25, 1 + i % 12, f"{rng.uniform(5, 30):.1f}",
            f"{rng.uniform(20, 90):.2f}", f"{rng.uniform(0, 20):.2f}", f"{rng.uniform(0, 5):.2f}",
            f"{(i * 37 % 1000) + 0.25:.2f}", f"{(i * 91 % 5000) + 0.5:.2f}", i % 9 + 1,
            ("open", "closed", "void")[i % 3], ("web", "shop")[i % 2], f"{rng.random():.3f}", f"note {i}"])))
    path.write_text("\n".join(lines) + "\n")
    return path


def _draft(tmp_path: Path) -> Path:
    """The contract of the draft product ``obs.weather`` written from :func:`wide_csv` in a new mesh."""
    root = tmp_path / "mesh"
    (root / "domains").mkdir(parents=True)
    (root / "mesh.yaml").write_text("name: drafts\n")
    create_domain(root, "obs", "obs-team")
    create_product(root, "obs", "weather", str(wide_csv(tmp_path / "weather.csv")))
    return _contract(root)


@pytest.fixture
def drafted(tmp_path: Path) -> Path:
    """The root of a new mesh holding the draft product ``obs.weather``."""
    return _draft(tmp_path).parents[3]


def _contract(root: Path) -> Path:
    return root / "domains" / "obs" / "products" / "weather.yaml"


def test_a_draft_for_a_19_column_source_is_short_and_complete(drafted: Path) -> None:
    text = _contract(drafted).read_text()
    assert len(text.splitlines()) < 400, len(text.splitlines())
    bronze, silver, gold = yaml.safe_load(text)["schema"]
    assert [p["name"] for p in bronze["properties"]] == WIDE_COLUMNS
    assert all(p["logicalType"] and p["physicalType"] for p in bronze["properties"])  # fully typed
    for table, parent in ((silver, "raw_weather"), (gold, "clean_weather")):
        assert "properties" not in table
        custom = {p["property"]: p["value"] for p in table["customProperties"]}
        assert custom["inheritColumns"] == {"from": parent, "quality": ["has_rows"]}
    tables = load_mesh(drafted).domain("obs").tables
    loaded = {t.layer: t for t in tables if not t.name.endswith("__rejects")}
    assert [c.name for c in loaded["gold"].columns] == WIDE_COLUMNS
    assert loaded["gold"].columns == loaded["bronze"].columns  # types, constraints and descriptions inherited
    assert [r.name for r in loaded["gold"].rules] == [r.name for r in loaded["bronze"].rules]
    report = validate(drafted)
    assert report.errors == []
    assert not [f for f in report.findings if f.rule == "policy/port_server"]  # outside tools can find the port
    assert gold["physicalName"] == "gold__" + gold["name"]


def test_inferred_value_rules_warn_and_never_block(drafted: Path) -> None:
    for table in load_mesh(drafted).domain("obs").tables:
        value_rules = [r for r in table.rules if r.kind in VALUE_KINDS]
        assert table.name.endswith("__rejects") or value_rules, table.name
        assert all(r.severity == "warning" for r in value_rules), [(r.name, r.severity) for r in value_rules]
    bronze = yaml.safe_load(_contract(drafted).read_text())["schema"][0]
    assert not any("logicalTypeOptions" in p for p in bronze["properties"])  # no blocking range


def test_small_code_lists_warn_too(tmp_path: Path) -> None:
    small = tmp_path / "levels.csv"
    small.write_text("level_id,level\n" + "".join(f"{i},{('low', 'high')[i % 2]}\n" for i in range(1, 11)))
    root = tmp_path / "mesh"
    (root / "domains").mkdir(parents=True)
    (root / "mesh.yaml").write_text("name: drafts\n")
    create_domain(root, "ops", "ops")
    create_product(root, "ops", "levels", str(small))
    rule = next(r for r in load_mesh(root).domain("ops").table("gold", "levels").rules
                if r.name == "level_valid_values")
    assert rule.params["values"] == ["high", "low"] and not rule.blocking


def test_money_only_where_the_name_says_money(tmp_path: Path) -> None:
    types = {c.name: c.physical_type for c in infer([str(wide_csv(tmp_path / "w.csv"))]).columns}
    assert types["unit_price"] == types["total_amount"] == "DECIMAL(18,2)"
    for measurement in ("temperature_c", "humidity_pct", "wind_speed", "rain_mm", "score"):
        assert types[measurement] == "DOUBLE", (measurement, types[measurement])


def test_a_range_reaches_past_the_sample_and_a_year_has_no_maximum(tmp_path: Path) -> None:
    columns = {c.name: c for c in infer([str(wide_csv(tmp_path / "w.csv"))]).columns}
    year, month, humidity = columns["year"], columns["month"], columns["humidity_pct"]
    assert year.maximum is None and year.minimum < 2000  # seen: 2000 .. 2024; 2025 must not be refused
    assert (month.minimum, month.maximum) == (-5, 18)  # seen: 1 .. 12, widened by half the span (5.5)
    assert humidity.minimum < 20 and humidity.maximum > 90  # a measurement's minimum is not made 0
    bronze = {p["name"]: p for p in yaml.safe_load(_draft(tmp_path).read_text())["schema"][0]["properties"]}
    assert bronze["year"]["quality"][0]["query"] == 'SELECT count(*) FROM {object} WHERE "year" < 1988'


@pytest.mark.parametrize(("status", "refused"), [("draft", False), ("proposed", False), ("active", True)])
def test_placeholder_descriptions_fail_the_policy_once_the_contract_is_active(
        drafted: Path, status: str, refused: bool) -> None:
    path = _contract(drafted)
    path.write_text(path.read_text().replace("status: draft", f"status: {status}", 1))
    product = load_mesh(drafted).domain("obs").products[0]
    mesh = load_mesh(drafted)
    found = [f for f in policy_findings(product, mesh.settings.governance) if f.rule == "policy/descriptions"]
    if not refused:
        assert found == []
        return
    fields = {f.field for f in found}
    assert "description" in fields and "schema[2].description" in fields  # the product and its port
    columns = [f for f in found if ".properties[" in (f.field or "")]
    assert len(columns) == len(WIDE_COLUMNS)  # every column of the port, at the bronze line that declares it
    assert all(f.field.startswith("schema[0].properties[") and f.line for f in columns)
    assert all(f.severity == "error" and "placeholder" in f.message and "status: draft" in f.fix for f in found)
