"""The latest check results of the tables, with their severity and counts, read from the Dagster instance: what
the catalog, ``mesh status`` and ``mesh checks`` show.

Which run: for each table, the latest run that evaluated its checks — the asset's latest run (Dagster's
``AssetRecord``, public), or, when that run did not reach the table's step (an upstream step failed), the run of
its latest materialization. A run whose blocking check failed published nothing, so its checks are the ones
that say why; ``published`` tells whether that run's snapshot became current.

The evaluations are read from the audit each step records as an observation of its table
(mesh_assets.orchestration.audit), with Dagster's public ``DagsterInstance.fetch_observations``: Dagster 1.13
has no public instance method returning asset check evaluations. They are the step's
(:class:`mesh_assets.engine.outcomes.CheckOutcome`); samples of sensitive columns were masked before they were
recorded, and are shown as recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from mesh_assets.contract.mesh import Mesh
from mesh_assets.contract.model import Table
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.audit import audit_checks

ERROR, WARN = "ERROR", "WARN"  # Dagster's AssetCheckSeverity values: blocking, not blocking


@dataclass(frozen=True)
class CheckRecord:
    """One evaluation of an asset check.

    ``asset`` is the table's key as ``domain/layer/table``; ``severity`` ``ERROR`` (blocking) or ``WARN``;
    ``failing_rows`` and ``pass_rate`` (0–1) are set for row-counting rules, ``distinct_keys`` and ``null_keys``
    for a foreign key (its distinct orphan keys; its rows with a null key part, which it does not check),
    ``observed_value`` for a rule that measures one value (a SQL rule, a row count);
    ``sample`` holds at most ``checks.sample_rows`` failing rows (sensitive columns masked). ``published``:
    the run published the table (False when a blocking check of that run failed); ``stale_run``: the table's
    later run that did not evaluate its checks (its step failed before them, or did not run), if any.
    """

    asset: str
    check: str
    severity: str
    passed: bool
    failing_rows: int | None = None
    distinct_keys: int | None = None
    null_keys: int | None = None
    pass_rate: float | None = None
    observed_value: Any = None
    rows_checked: int | None = None
    expectation: str | None = None
    description: str = ""
    error: str | None = None
    sample: list[Any] = field(default_factory=list)
    run_id: str = ""
    evaluated_at: datetime | None = None
    published: bool = False
    stale_run: str = ""

    @property
    def blocking_failure(self) -> bool:
        """The check failed and blocks publication."""
        return not self.passed and self.severity == ERROR

    @property
    def warning(self) -> bool:
        """The check failed and does not block."""
        return not self.passed and self.severity != ERROR

    def to_json(self) -> dict[str, Any]:
        """The record in the documented JSON shape of ``mesh checks --format json`` (docs/operations.md)."""
        return {"asset": self.asset, "check": self.check, "severity": self.severity, "passed": self.passed,
                "failing_rows": self.failing_rows, "distinct_keys": self.distinct_keys,
                "null_keys": self.null_keys, "pass_rate": self.pass_rate, "observed_value": self.observed_value,
                "rows_checked": self.rows_checked,
                "expectation": self.expectation, "description": self.description, "error": self.error,
                "sample": self.sample, "run_id": self.run_id,
                "evaluated_at": self.evaluated_at.isoformat(timespec="seconds") if self.evaluated_at else None,
                "published": self.published}


def select_tables(mesh: Mesh, port: str | None) -> list[Table]:
    """The tables whose checks to list: every table of the mesh, or those ``port`` names — ``<domain>.<table>``
    (an output port: the gold table), ``<domain>/<layer>/<table>`` (any table) or ``<domain>`` (all its tables).

    Raises:
        MeshError: ``port`` names no table of the mesh (the message lists the domains and the spellings).
    """
    tables = [t for d in mesh.domains() for t in d.tables]
    if port is None:
        return tables
    if "/" in port:
        chosen = [t for t in tables if "/".join(t.key) == port]
    elif "." in port:
        chosen = [t for t in tables if t.layer == "gold" and f"{t.domain}.{t.name}" == port]
    else:
        chosen = [t for t in tables if t.domain == port]
    if not chosen:
        raise MeshError(f"--port {port} names no table of the mesh; write <domain>.<table> (an output port), "
                        f"<domain>/<layer>/<table> or <domain>, e.g. {_example(tables)}; the domains are "
                        f"{', '.join(mesh.domain_names) or 'none'}")
    return chosen


def _example(tables: list[Table]) -> str:
    gold = next((t for t in tables if t.layer == "gold"), None)
    return f"{gold.domain}.{gold.name}" if gold is not None else "sales.order_lines_wide"


def latest_check_records(instance: dg.DagsterInstance | None, tables: Iterable[Table]) -> list[CheckRecord]:
    """The checks of each of ``tables``' latest evaluating run (see the module), table by table in the given
    order and, within a table, in the order the step evaluated them; empty without an instance or for a table
    never run. Reads one batch of asset records, then one or two observations per table."""
    tables = list(tables)
    if instance is None or not tables:
        return []
    keys = [dg.AssetKey(list(t.key)) for t in tables]
    records = {r.asset_entry.asset_key: r.asset_entry for r in instance.get_asset_records(keys)}
    out: list[CheckRecord] = []
    for key in keys:
        entry = records.get(key)
        if entry is None:
            continue
        published = entry.last_materialization_record
        audit = _latest_audit(instance, dg.AssetRecordsFilter(asset_key=key))
        if audit is None or audit.run_id != entry.last_run_id:
            # the latest run did not reach the table: the audit of its latest materialization, recorded just before
            audit = (_latest_audit(instance, dg.AssetRecordsFilter(asset_key=key,
                                                                   before_storage_id=published.storage_id))
                     if published is not None else None)
            if audit is None or audit.run_id != published.run_id:  # type: ignore[union-attr]
                continue
        run_id = audit.run_id
        is_published = published is not None and published.run_id == run_id
        stale = entry.last_run_id if entry.last_run_id and entry.last_run_id != run_id else ""
        evaluated_at = datetime.fromtimestamp(audit.timestamp, UTC)
        out += [_record(key, check, run_id, evaluated_at, is_published, stale)
                for check in audit_checks(audit.event_log_entry) or []]
    return out


def _latest_audit(instance: dg.DagsterInstance, records_filter: dg.AssetRecordsFilter) -> dg.EventLogRecord | None:
    """The latest audit observation matching ``records_filter`` (an asset has no other observation)."""
    for record in instance.fetch_observations(records_filter, limit=1).records:
        if audit_checks(record.event_log_entry) is not None:
            return record
    return None


def _record(key: dg.AssetKey, check: dict[str, Any], run_id: str, evaluated_at: datetime, published: bool,
            stale_run: str) -> CheckRecord:
    meta = check.get("metadata") or {}
    problems = meta.get("problems")
    error = meta.get("error") or ("; ".join(map(str, problems)) if isinstance(problems, list)
                                  and problems != ["none"] else None)
    sample = meta.get("sample")
    return CheckRecord(
        asset=key.to_user_string(), check=str(check.get("check")), severity=check.get("severity") or ERROR,
        passed=bool(check.get("passed")), failing_rows=_int(meta.get("failing_rows")),
        distinct_keys=_int(meta.get("distinct_orphan_keys")),
        null_keys=_int(meta.get("null_keys")), pass_rate=_float(meta.get("pass_rate")),
        observed_value=meta.get("observed_value"), rows_checked=_int(meta.get("rows_checked")),
        expectation=meta.get("expectation"), description=check.get("description") or "", error=error,
        sample=sample if isinstance(sample, list) else [], run_id=run_id,
        evaluated_at=evaluated_at, published=published, stale_run=stale_run)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def failure_summary(record: CheckRecord) -> dict[str, Any]:
    """A failed check as ``mesh status`` lists it: ``check``, ``severity`` and its counts."""
    return {"asset": record.asset, "check": record.check, "severity": record.severity,
            "failing_rows": record.failing_rows, "distinct_keys": record.distinct_keys,
            "null_keys": record.null_keys, "pass_rate": record.pass_rate, "observed_value": record.observed_value}


def describe_counts(record: CheckRecord | dict[str, Any]) -> str:
    """The counts of a check in words, e.g. ``41 rows, 20 distinct keys, pass rate 96.73 %`` or ``observed 41``;
    empty when it has none."""
    data = record.to_json() if isinstance(record, CheckRecord) else record
    words = []
    if data.get("failing_rows") is not None:
        words.append(f"{data['failing_rows']:,} row{'s' if data['failing_rows'] != 1 else ''}")
    if data.get("distinct_keys") is not None:
        words.append(f"{data['distinct_keys']:,} distinct key{'s' if data['distinct_keys'] != 1 else ''}")
    if data.get("null_keys"):
        words.append(f"{data['null_keys']:,} null key{'s' if data['null_keys'] != 1 else ''}")
    if data.get("pass_rate") is not None:
        words.append(f"pass rate {100 * data['pass_rate']:.2f} %")
    if data.get("observed_value") is not None and data.get("failing_rows") is None:
        words.append(f"observed {data['observed_value']}")
    return ", ".join(words)
