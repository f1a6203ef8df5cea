"""What the catalog says about a table's state: freshness from its port, the latest run and check results from
the Dagster instance, the stored profile. Each function degrades to "nothing known" instead of failing, so a
catalog can be built for a mesh that was never run, or without a Dagster instance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from mesh_assets.catalog.checks import latest_check_records
from mesh_assets.contract.model import Sla, Table
from mesh_assets.engine.ingestion import FRAMEWORK_CHECKS
from mesh_assets.engine.ports import DATA, Port
from mesh_assets.engine.profile import PROFILE_FILE
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.freshness import freshness_deadline

# Check metadata shown in the catalog, in this order (mesh_assets.engine.outcomes.CheckOutcome documents them).
_CHECK_FIELDS = ("rows_checked", "failing_rows", "observed_value", "pass_rate", "expectation")


@dataclass(frozen=True)
class Freshness:
    """A port's freshness at ``now``: ``state`` is ``fresh``, ``stale``, ``never published`` or ``no SLA``;
    ``sla`` the SLA in words; ``expected_after`` the time it should have been published after (None without
    an SLA)."""

    state: str
    sla: str
    published_at: datetime | None = None
    expected_after: datetime | None = None


def describe_sla(slas: list[Sla]) -> str:
    """The SLAs in words, e.g. ``latency 2 h`` or ``every 1 d, by cron '0 6 * * *'``; empty without SLA."""
    words = []
    for sla in slas:
        if sla.property == "frequency" and sla.schedule:
            words.append(f"within {duration(sla.seconds)} before each tick of cron '{sla.schedule}'")
        else:
            words.append(f"{sla.property} {duration(sla.seconds)}")
    return "; ".join(words)


def freshness(current: dict[str, Any] | None, slas: list[Sla], now: datetime, timezone: str = "UTC") -> Freshness:
    """The freshness of a port whose current snapshot says ``current`` (mesh_assets.engine.ports.Port.current;
    None: never published) under ``slas`` (the table's own or its layer's default), as Dagster's freshness
    policies judge it (mesh_assets.orchestration.freshness.freshness_deadline)."""
    sla_text = describe_sla(slas)
    published = _timestamp(current.get("published_at")) if current else None
    if published is None:
        return Freshness("never published", sla_text)
    expected = freshness_deadline(slas, now, timezone)
    if expected is None:
        return Freshness("no SLA", sla_text, published)
    return Freshness("fresh" if published >= expected else "stale", sla_text, published, expected)


def _timestamp(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def duration(seconds: float) -> str:
    """``seconds`` in the largest whole unit: ``2 h``, ``1 d``, ``90 min``."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def read_pointer(port: Port) -> tuple[dict[str, Any] | None, str]:
    """``(pointer, problem)``: what the port's current Iceberg snapshot says (mesh_assets.engine.ports.Port.current;
    None: never published) and, when the port cannot be read, the reason (shown instead of failing the
    catalog)."""
    try:
        return port.current(), ""
    except MeshError as exc:  # a port of the previous layout, an unreachable catalog
        return None, str(exc)


def read_profile(port: Port, snapshot_id: str) -> list[dict[str, Any]]:
    """The ``columns`` of ``profile.json`` beside the snapshot (mesh_assets.engine.profile); empty when missing or
    unreadable."""
    try:
        with port.fs.open(f"{port.path}/{DATA}/{snapshot_id}/{PROFILE_FILE}", "r", encoding="utf-8") as handle:
            columns = json.load(handle).get("columns")
    except (OSError, ValueError, AttributeError):
        return []
    return columns if isinstance(columns, list) else []


@dataclass(frozen=True)
class CheckResult:
    """The latest completed evaluation of one asset check. ``status``: ``passed``, ``failed`` (blocking),
    ``warning`` (failed, not blocking) or ``no result``; ``stale_run`` is the later run in which it was
    planned but not evaluated (its step failed or was skipped), if any."""

    name: str
    status: str
    description: str = ""
    evaluated_at: datetime | None = None
    run_id: str = ""
    details: dict[str, str] = field(default_factory=dict)
    stale_run: str = ""


@dataclass(frozen=True)
class LastRun:
    """The latest materialization of a table recorded in the instance."""

    at: datetime
    run_id: str
    rows: Any = None
    snapshot: str = ""
    quality_score: Any = None


def check_names(table: Table) -> list[str]:
    """The asset checks of ``table``, as ``mesh_assets.orchestration.assets.table_asset`` declares them."""
    framework = list(FRAMEWORK_CHECKS) if table.layer == "bronze" else []
    return ["schema", *framework, *(r.name for r in table.rules)]


def latest_runs(instance: dg.DagsterInstance | None, tables: list[Table]) -> dict[tuple[str, str, str], LastRun]:
    """The latest materialization of each of ``tables`` found in ``instance`` (none without an instance)."""
    if instance is None or not tables:
        return {}
    keys = {dg.AssetKey(list(t.key)): t.key for t in tables}
    out = {}
    for record in instance.get_asset_records(list(keys)):
        asset_key, entry = record.asset_entry.asset_key, record.asset_entry.last_materialization
        if entry is None or entry.asset_materialization is None:
            continue
        metadata = entry.asset_materialization.metadata
        out[keys[asset_key]] = LastRun(datetime.fromtimestamp(entry.timestamp, UTC), entry.run_id,
                                       _value(metadata.get("dagster/row_count")), str(_value(metadata.get("snapshot"))
                                                                                         or ""),
                                       _value(metadata.get("quality_score")))
    return out


def latest_checks(instance: dg.DagsterInstance | None, table: Table) -> list[CheckResult]:
    """The latest result of every check of ``table`` in ``instance`` (the checks of its latest evaluating run,
    :func:`mesh_assets.catalog.checks.latest_check_records`), in the order the asset declares them; a check that
    run did not evaluate is ``no result``. Empty without an instance."""
    if instance is None:
        return []
    records = {r.check: r for r in latest_check_records(instance, [table])}
    stale = next(iter(records.values())).stale_run if records else ""
    results = []
    for name in check_names(table):
        record = records.get(name)
        if record is None:
            results.append(CheckResult(name, "no result", stale_run=stale))
            continue
        status = "passed" if record.passed else ("warning" if record.warning else "failed")
        details = {field: _show(field, value) for field in _CHECK_FIELDS
                   if (value := getattr(record, field)) is not None}
        results.append(CheckResult(name, status, record.description, record.evaluated_at, record.run_id, details,
                                   stale))
    return results


def _value(metadata_value: Any) -> Any:
    return getattr(metadata_value, "value", metadata_value)


def _show(name: str, value: Any) -> str:
    if name == "pass_rate" and isinstance(value, (int, float)):
        return f"{100 * value:.2f} %"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value, default=str)
