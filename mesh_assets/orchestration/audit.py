"""A step's audit as one Dagster ``AssetObservation`` of its table, so that the check results can be read back
with the public ``DagsterInstance.fetch_observations`` (Dagster 1.13 has no public instance method returning
asset check evaluations): ``mesh checks``, ``mesh status`` and the catalog read it
(mesh_assets.catalog.checks).

The step records it after its checks, before its materialization, whether or not a blocking check failed (a
failed audit publishes nothing, so no materialization could carry it). Its metadata entry ``mesh/audit`` is a
JSON list with one object per check, in the order the step evaluated them::

    {"check": str, "severity": "ERROR" | "WARN", "passed": bool, "description": str,
     "metadata": {"failing_rows": int, "pass_rate": float, "sample": [...], ...}}

``metadata`` keeps the entries of the check's own metadata that the readers show (:data:`AUDIT_FIELDS`);
samples of sensitive columns are masked before the step records them, as on the asset check.
"""

from __future__ import annotations

import json
from typing import Any

import dagster as dg

from mesh_assets.engine.outcomes import CheckOutcome

AUDIT_ENTRY = "mesh/audit"
AUDIT_FIELDS = ("failing_rows", "distinct_orphan_keys", "null_keys", "pass_rate", "observed_value", "rows_checked",
                "expectation", "error", "problems", "sample")


def audit_observation(key: dg.AssetKey, outcomes: list[CheckOutcome]) -> dg.AssetObservation:
    """The observation of ``key`` recording ``outcomes`` (the module docstring gives its shape)."""
    checks = [{"check": o.name, "severity": "ERROR" if o.blocking else "WARN", "passed": o.passed,
               "description": o.description,
               "metadata": {k: v for k, v in o.metadata.items() if k in AUDIT_FIELDS}} for o in outcomes]
    return dg.AssetObservation(asset_key=key, description=f"the audit of {len(outcomes)} check(s)",
                               metadata={AUDIT_ENTRY: dg.MetadataValue.json(json.loads(json.dumps(checks,
                                                                                                  default=str)))})


def audit_checks(entry: dg.EventLogEntry) -> list[dict[str, Any]] | None:
    """The checks an audit observation recorded (the module docstring gives their shape); None when ``entry``
    is not one."""
    observation = entry.asset_observation
    value = observation.metadata.get(AUDIT_ENTRY) if observation is not None else None
    checks = getattr(value, "value", None)
    return checks if isinstance(checks, list) else None
