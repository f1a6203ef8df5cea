"""Counts where people look: `mesh checks`, `mesh status` and the `mesh run` summary list each failed check
with its severity and counts, warnings apart from blocking failures, and exit 1 only for a blocking failure;
samples of sensitive columns stay masked."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mesh_assets.cli.main import app
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.orchestration.runner import RunSummary, open_instance, run_mesh, summary_table

from conftest import edit_columns, land_orders

FK = "customer_references_raw_customers"


def _prepare(root: Path) -> None:
    """``customer`` is PII everywhere; gold totals fail a warning when not 10 or 20 and block above 100."""
    def edit(table: str, column: dict) -> None:
        if column["name"] == "customer":
            column["classification"] = "pii"
        if table == "order_totals" and column["name"] == "total":
            column["logicalTypeOptions"] = {"maximum": 100}
            column["quality"] = [{"id": "total_is_round", "metric": "invalidValues",
                                  "arguments": {"validValues": [10.0, 20.0]}, "mustBe": 0, "severity": "warning"}]
    edit_columns(root, edit)


def _run(root: Path, orders: str) -> RunSummary:
    land_orders(root, "order_id,customer,amount\n" + orders)
    with open_instance(root) as instance:
        return run_mesh(load_mesh(root), instance, console=Console(file=io.StringIO()))


def _cli(root: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--root", str(root)])


def _checks(root: Path, *args: str) -> tuple[int, dict[tuple[str, str], dict]]:
    result = _cli(root, "checks", "--format", "json", *args)
    return result.exit_code, {(c["asset"], c["check"]): c for c in json.loads(result.stdout)["checks"]}


def test_checks_status_and_run_summary_show_counts_by_severity(tiny_root: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tiny_root / ".dagster"))
    _prepare(tiny_root)

    # 1. warnings only: everything is published, every command exits 0
    summary = _run(tiny_root, "1,ann,10.00\n2,bob,20.00\n3,ann,3.00\n")
    assert summary.success
    rows = {a.key: a for a in summary.assets}
    assert (rows["shop/silver/orders"].warnings, rows["shop/silver/orders"].blocking) == (
        ["amount_is_small (1 row)"], [])
    assert rows["shop/gold/order_totals"].warnings == ["total_is_round (1 row)"]
    drawn = Console(file=io.StringIO(), width=250)
    drawn.print(summary_table(summary))
    header = next(line for line in drawn.file.getvalue().splitlines() if "asset" in line)
    assert "warnings" in header and "blocking" in header and "checks failed" not in header

    code, checks = _checks(tiny_root)
    assert code == 0
    small = checks[("shop/silver/orders", "amount_is_small")]
    assert (small["severity"], small["passed"], small["failing_rows"], small["pass_rate"], small["published"]) == (
        "WARN", False, 1, 0.666667, True)
    assert small["sample"] == [{"order_id": 3, "amount": "3.00"}]
    fk = checks[("shop/silver/orders", FK)]
    assert (fk["severity"], fk["passed"], fk["failing_rows"], fk["distinct_keys"]) == ("ERROR", True, 0, 0)
    assert checks[("shop/bronze/raw_orders", "row_conservation")]["passed"]
    code, failed = _checks(tiny_root, "--failed")
    assert (code, set(failed)) == (0, {("shop/silver/orders", "amount_is_small"),
                                       ("shop/gold/order_totals", "total_is_round")})
    code, gold = _checks(tiny_root, "--port", "shop.order_totals")
    assert code == 0 and {asset for asset, _ in gold} == {"shop/gold/order_totals"}
    assert gold[("shop/gold/order_totals", "total_is_round")]["sample"] == [{"customer": "<masked>",
                                                                            "total": "13.00"}]
    status = _cli(tiny_root, "status", "--format", "json")
    assert status.exit_code == 0, status.output
    port = json.loads(status.stdout)[0]
    assert (port["port"], port["blocking"]) == ("shop.order_totals", [])
    assert [(w["check"], w["severity"], w["failing_rows"], w["pass_rate"]) for w in port["warnings"]] == [
        ("total_is_round", "WARN", 1, 0.5)]
    text = _cli(tiny_root, "checks")
    assert text.exit_code == 0 and "total_is_round" in text.stdout and "warning" in text.stdout

    # 2. orphan customers: silver's blocking foreign key fails, nothing downstream runs
    summary = _run(tiny_root, "1,ann,10.00\n2,zed,20.00\n3,zed,3.00\n4,ann,2.00\n")
    assert not summary.success
    assert {a.key: a for a in summary.assets}["shop/silver/orders"].blocking == [f"{FK} (2 rows)"]
    result = _cli(tiny_root, "checks", "--format", "json", "--failed")
    assert result.exit_code == 1 and "zed" not in result.stdout
    failed = {(c["asset"], c["check"]): c for c in json.loads(result.stdout)["checks"]}
    fk = failed[("shop/silver/orders", FK)]
    assert (fk["severity"], fk["failing_rows"], fk["distinct_keys"], fk["pass_rate"], fk["published"]) == (
        "ERROR", 2, 1, 0.5, False)
    assert fk["sample"] == [{"customer": "<masked>", "rows": 2}]
    # gold did not run: its checks are those of its latest materialization, the first run
    assert failed[("shop/gold/order_totals", "total_is_round")]["run_id"] == gold[
        ("shop/gold/order_totals", "total_is_round")]["run_id"]

    # 3. a blocking failure on the output port: status lists it apart from the warning and exits 1
    summary = _run(tiny_root, "1,ann,10.00\n2,bob,200.00\n")
    assert {a.key: a for a in summary.assets}["shop/gold/order_totals"].blocking == ["total_maximum (1 row)"]
    status = _cli(tiny_root, "status", "--format", "json")
    assert status.exit_code == 1
    port = json.loads(status.stdout)[0]
    assert [(b["check"], b["severity"], b["failing_rows"]) for b in port["blocking"]] == [
        ("total_maximum", "ERROR", 1)]
    assert [w["check"] for w in port["warnings"]] == ["total_is_round"]
    assert _cli(tiny_root, "checks", "--port", "shop/gold/order_totals").exit_code == 1
    assert _cli(tiny_root, "checks", "--port", "shop/silver/orders").exit_code == 0


def test_checks_without_a_run_or_with_an_unknown_port(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tiny_root / ".dagster"))
    result = _cli(tiny_root, "checks", "--format", "json")
    assert (result.exit_code, json.loads(result.stdout)) == (0, {"checks": []})
    unknown = _cli(tiny_root, "checks", "--port", "shop.nope")
    assert unknown.exit_code == 2 and "<domain>.<table>" in unknown.output and "shop.order_totals" in unknown.output
