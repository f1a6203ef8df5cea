"""Check outcomes: what one check found, as recorded on its Dagster asset check, and the quality score."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mesh_assets.contract.model import Table


@dataclass
class CheckOutcome:
    """The result of one check: ``passed``, ``blocking`` and the metadata recorded on the Dagster check.

    ``metadata`` holds ``rows_checked``, ``failing_rows`` (or ``observed_value``), ``pass_rate`` (0–1),
    ``expectation``, ``sample`` (at most ``checks.sample_rows`` failing rows), ``rule`` (as written in the
    contract) and ``sql`` (a query that lists the failing rows, for reproduction).
    """

    name: str
    passed: bool
    blocking: bool
    severity: str
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def weighted_passes(outcomes: list[CheckOutcome], weights: dict[str, float]) -> tuple[float, float]:
    """``(passed, total)``: the checks' weights by severity (``mesh.yaml`` ``checks.severity_weights``; 1 for
    a severity it does not list), summed over the passed checks and over all of them."""
    total = sum(weights.get(o.severity, 1) for o in outcomes)
    return sum(weights.get(o.severity, 1) for o in outcomes if o.passed), total


def schema_outcome(table: Table, actual: dict[str, str], expected: dict[str, str]) -> CheckOutcome:
    """The ``schema`` check: the output has exactly the contract's columns with the contract's DuckDB types.

    ``actual`` and ``expected`` map column name → DuckDB type name as DuckDB prints it.
    """
    missing = [c for c in expected if c not in actual]
    extra = [c for c in actual if c not in expected]
    mismatched = {c: {"contract": expected[c], "output": actual[c]}
                  for c in expected if c in actual and expected[c] != actual[c]}
    problems = ([f"missing column {c} ({expected[c]})" for c in missing]
                + [f"column {c} is not in the contract" for c in extra]
                + [f"column {c} is {t['output']}, the contract says {t['contract']}" for c, t in mismatched.items()])
    metadata: dict[str, Any] = {"columns_checked": len(expected), "problems": problems or ["none"]}
    return CheckOutcome("schema", not problems, True, "error",
                        f"{'/'.join(table.key)} has the contract's {len(expected)} columns and types", metadata)
