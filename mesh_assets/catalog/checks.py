"""The latest check results of the tables, with their severity and counts, read from the Dagster instance: what
the catalog, ``mesh status`` and ``mesh checks`` show.

Which run: for each table, the latest run that evaluated its checks — the asset's latest run (Dagster's
``AssetRecord``, public), or, when that run did not reach the table's step (an upstream step failed), the run of
its latest materialization. A run whose blocking check failed published nothing, so its checks are the ones
that say why; ``published`` tells whether that run's snapshot became current.

The evaluations are the ``ASSET_CHECK_EVALUATION`` events of that run (``DagsterInstance.get_records_for_run``:
Dagster 1.13 has no public method returning asset check evaluations; the ``mesh run`` summary reads the same
events). Their metadata is the step's (:class:`mesh_assets.engine.outcomes.CheckOutcome`); samples of sensitive
columns were masked before they were recorded, and are shown as recorded.
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

ERROR, WARN = "ERROR", "WARN"  # Dagster's AssetCheckSeverity values: blocking, not blocking


@dataclass(frozen=True)
class CheckRecord:
    """One evaluation of an asset check.

    ``asset`` is the table's key as ``domain/layer/table``; ``severity`` ``ERROR`` (blocking) or ``WARN``;
    ``failing_rows`` and ``pass_rate`` (0–1) are set for row-counting rules, ``distinct_keys`` and ``null_keys``
    for a foreign key (its distinct orphan keys; its rows with a null key part, which it does not check), ``observed_value`` for a rule that measures one value (a SQL rule, a row count);
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
                "null_keys": self.null_keys, "pass_rate": self.pass_rate, "observed_value": self.observed_value, "rows_checked": self.rows_checked,
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
    never run."""
    tables = list(tables)
    if instance is None or not tables:
        return []
    keys = [dg.AssetKey(list(t.key)) for t in tables]
    records = {r.asset_entry.asset_key: r.asset_entry for r in instance.get_asset_records(keys)}
    by_run: dict[str, list[dg.EventLogEntry]] = {}
    out: list[CheckRecord] = []
    for key in keys:
        entry = records.get(key)
        if entry is None:
            continue
        published_run = entry.last_materialization_record.run_id if entry.last_materialization_record else None
        for run_id in dict.fromkeys(r for r in (entry.last_run_id, published_run) if r):
            if run_id not in by_run:
                by_run[run_id] = _evaluations(instance, run_id)
            # a step retried after its checks evaluates them again in the same run: its last evaluation counts
            found = {e.dagster_event.event_specific_data.check_name: e for e in by_run[run_id]
                     if e.dagster_event.event_specific_data.asset_key == key}
            if found:
                stale = entry.last_run_id if entry.last_run_id and entry.last_run_id != run_id else ""
                out += [_record(e, run_id == published_run, stale) for e in found.values()]
                break
    return out


def _evaluations(instance: dg.DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    entries: list[dg.EventLogEntry] = []
    cursor = None
    while True:
        page = instance.get_records_for_run(run_id, cursor=cursor, limit=1000,
                                            of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        entries += [r.event_log_entry for r in page.records if r.event_log_entry.dagster_event is not None]
        cursor = page.cursor
        if not page.has_more:
            return entries


def _record(entry: dg.EventLogEntry, published: bool, stale_run: str) -> CheckRecord:
    evaluation: dg.AssetCheckEvaluation = entry.dagster_event.event_specific_data  # type: ignore[union-attr]
    meta = {name: getattr(value, "value", value) for name, value in evaluation.metadata.items()}
    severity = evaluation.severity.value if evaluation.severity is not None else ERROR
    problems = meta.get("problems")
    error = meta.get("error") or ("; ".join(map(str, problems)) if isinstance(problems, list)
                                  and problems != ["none"] else None)
    sample = meta.get("sample")
    return CheckRecord(
        asset=evaluation.asset_key.to_user_string(), check=evaluation.check_name, severity=severity,
        passed=bool(evaluation.passed), failing_rows=_int(meta.get("failing_rows")),
        distinct_keys=_int(meta.get("distinct_orphan_keys")),
        null_keys=_int(meta.get("null_keys")), pass_rate=_float(meta.get("pass_rate")),
        observed_value=meta.get("observed_value"), rows_checked=_int(meta.get("rows_checked")),
        expectation=meta.get("expectation"), description=evaluation.description or "", error=error,
        sample=sample if isinstance(sample, list) else [], run_id=entry.run_id,
        evaluated_at=datetime.fromtimestamp(entry.timestamp, UTC), published=published, stale_run=stale_run)


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
