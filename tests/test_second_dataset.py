"""The acceptance test of authoring at scale: a second public data set (OpenFlights airlines and countries,
tests/fixtures/openflights) modelled from an empty folder only through `mesh new domain`, `mesh new product
--from` and the edits docs/operations.md documents, with a foreign key whose known orphans are a warning; the
run publishes and `mesh checks` / `mesh status` report the exact counts."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import yaml

from test_self_serve import empty_mesh, mesh_cli

DATA = Path(__file__).parent / "fixtures" / "openflights"
# The foreign key itself is the warning (docs/contracts.md, "Severity of every rule"): one check counting orphan
# rows, distinct orphan keys and null keys (docs/operations.md, "A foreign key with known orphans").
RELATIONSHIP = {"to": "countries.name", "customProperties": [{"property": "severity", "value": "warning"}]}
CHECK = "country_references_countries"
GOLD_SQL = """SELECT a.airline_id, a.name, a.alias, a.iata, a.icao, a.callsign, a.country,
       c.iso_code AS country_iso_code, a.active
FROM silver.clean_airlines a
LEFT JOIN (SELECT name, min(iso_code) AS iso_code FROM gold.countries GROUP BY name) c ON c.name = a.country
"""


def _edit(root: Path) -> None:
    """The documented edits: the output port joins the countries port (deduplicated: two names are listed
    twice) for the ISO code, and declares the known orphans of its country as warnings."""
    path = root / "domains/aviation/products/airlines.yaml"
    contract = yaml.safe_load(path.read_text())
    gold = next(t for t in contract["schema"] if t["name"] == "airlines")
    # the draft's gold table inherits its columns (customProperties inheritColumns): the new one is added, and the
    # inherited country column is overridden with its relationship only
    gold.setdefault("properties", []).extend([
        {"name": "country", "logicalType": "string", "relationships": [RELATIONSHIP]},
        {"name": "country_iso_code", "logicalType": "string", "physicalType": "VARCHAR",
         "description": "ISO 3166 code of the country, from the countries port; null when the country is unknown."}])
    path.write_text(yaml.safe_dump(contract, sort_keys=False, width=120))
    (root / "domains/aviation/sql/gold/airlines.sql").write_text(GOLD_SQL)


def test_the_known_orphans_of_the_data_itself() -> None:
    """The counts the mesh must report, measured on the committed files with DuckDB alone."""
    airlines, countries = DATA / "airlines.csv", DATA / "countries.csv"
    orphans = (f"FROM '{airlines}' a WHERE a.country IS NOT NULL AND a.country NOT IN "
               f"(SELECT name FROM '{countries}' WHERE name IS NOT NULL)")
    assert duckdb.sql(f"SELECT count(*), count(DISTINCT country) {orphans}").fetchall() == [(41, 20)]
    nulls = duckdb.sql(f"SELECT count(*), count(*) FILTER (WHERE country IS NULL) FROM '{airlines}'")
    assert nulls.fetchall() == [(1255, 4)]


@pytest.mark.slow  # `mesh` commands in child processes
def test_a_second_public_dataset_publishes_with_its_known_orphans_as_warnings(tmp_path: Path) -> None:
    root = empty_mesh(tmp_path)
    steps = [("new", "domain", "aviation", "--team", "aviation-team", "--member", "ana@example.com"),
             ("new", "product", "aviation", "countries", "--from", str(DATA / "countries.csv")),
             ("new", "product", "aviation", "airlines", "--from", str(DATA / "airlines.csv"))]
    for step in steps:
        done = mesh_cli(root, *step)
        assert done.returncode == 0, done.stdout + done.stderr
    _edit(root)
    validated = mesh_cli(root, "validate", "--format", "json")
    assert json.loads(validated.stdout)["errors"] == 0, validated.stdout

    ran = mesh_cli(root, "run")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    line = next(ln for ln in ran.stdout.splitlines() if "aviation/gold/airlines " in ln)
    assert "materialized" in line and f"1: {CHECK} (41 rows)" in line

    listed = mesh_cli(root, "checks", "--port", "aviation.airlines", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    checks = {c["check"]: c for c in json.loads(listed.stdout)["checks"]}
    fk = checks[CHECK]
    assert (fk["severity"], fk["passed"], fk["failing_rows"], fk["distinct_keys"], fk["null_keys"]) == (
        "WARN", False, 41, 20, 4)
    assert fk["rows_checked"] == 1255 and len(fk["sample"]) > 0
    key = checks["primary_key"]
    assert (key["severity"], key["passed"], key["failing_rows"], key["rows_checked"]) == ("ERROR", True, 0, 1255)
    assert all(c["passed"] for name, c in checks.items() if name != CHECK)
    assert all(c["published"] for c in checks.values())

    failed = mesh_cli(root, "checks", "--failed", "--format", "json")
    assert failed.returncode == 0
    assert [(c["asset"], c["check"]) for c in json.loads(failed.stdout)["checks"]] == [
        ("aviation/gold/airlines", CHECK)]

    status = mesh_cli(root, "status", "--format", "json")
    assert status.returncode == 0, status.stderr
    ports = {r["port"]: r for r in json.loads(status.stdout)}
    assert ports["aviation.airlines"]["rows"] == 1255 and ports["aviation.airlines"]["blocking"] == []
    assert [(w["check"], w["failing_rows"], w["distinct_keys"], w["null_keys"])
            for w in ports["aviation.airlines"]["warnings"]] == [(CHECK, 41, 20, 4)]
    assert ports["aviation.countries"]["warnings"] == []
