"""Every contract is valid ODCS for the version it declares: the mesh validates each one against that version's
JSON Schema, and datacontract-cli (an independent ODCS tool) lints every contract of the reference mesh clean."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from datacontract.data_contract import DataContract

from mesh_assets.contract.loader import load_contract
from mesh_assets.errors import ContractError

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = sorted((ROOT / "domains").glob("*/products/*.yaml"))


@pytest.mark.parametrize("path", CONTRACTS, ids=lambda p: f"{p.parent.parent.name}/{p.stem}")
def test_datacontract_lint_passes_on_every_reference_contract(path: Path) -> None:
    run = DataContract(data_contract_file=str(path)).lint()
    failed = [f"{c.name}: {c.reason}" for c in run.checks if c.result != "passed"]
    assert not failed and run.result == "passed", failed


def _with_cross_contract_reference(api_version: str, tmp_path: Path) -> Path:
    """The sales contract with ``apiVersion`` set to ``api_version``; it references supply's and customers'
    columns as ``domain.table.column``, which only ODCS v3.2.0 allows."""
    source = ROOT / "domains/sales/products/order_lines_wide.yaml"
    data = yaml.safe_load(source.read_text())
    assert any("." in r.get("to", "").partition(".")[2] for o in data["schema"] for p in o["properties"]
               for r in p.get("relationships", [])), "the sales contract no longer references another contract"
    data["apiVersion"] = api_version
    target = tmp_path / "domains/sales/products/order_lines_wide.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(data, sort_keys=False))
    return target


def test_a_v3_1_contract_is_held_to_v3_1(tmp_path: Path) -> None:
    path = _with_cross_contract_reference("v3.1.0", tmp_path)
    with pytest.raises(ContractError) as err:
        load_contract(path, "sales", "sales")
    message = str(err.value)
    assert "relationships" in message and "supply.part_catalog.p_partkey" in message
    assert "set apiVersion: v3.2.0" in message
    assert DataContract(data_contract_file=str(path)).lint().result != "passed"  # the independent tool agrees


def test_an_unsupported_version_names_the_field_and_the_fix(tmp_path: Path) -> None:
    path = _with_cross_contract_reference("v2.2.2", tmp_path)
    with pytest.raises(ContractError, match=r"apiVersion.*set apiVersion: v3.1.0"):
        load_contract(path, "sales", "sales")
