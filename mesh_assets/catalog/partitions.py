"""The partitions of a partitioned table, as ``mesh status`` and the catalog show them (docs/partitions.md,
"Freshness and status").

A partitioned table's partitions are those of its Dagster partitions definition up to ``now`` (its declared
``end``, or the last complete period in its time zone). Each is ``materialized``, ``failed`` (its latest
materialization attempt failed), ``in progress``, or ``missing`` (never materialized), as Dagster's public
``DagsterInstance.get_status_by_partition`` reports it. A partitioned port is as fresh as its **latest**
partition: a backfill of an old month must not make a port whose newest month never arrived look fresh, so
the freshness policy's judgement (mesh_assets.orchestration.freshness) is applied to the latest partition's own
materialization, and a missing latest partition is ``FAIL``. A static or multi-partitioned port is as fresh as
the stalest partition of its newest period (every region; every region of the newest month).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from mesh_assets.contract.model import Sla, Table
from mesh_assets.orchestration.assets import partitions_definition
from mesh_assets.orchestration.freshness import freshness_state

STATES = {dg.AssetPartitionStatus.MATERIALIZED: "materialized", dg.AssetPartitionStatus.FAILED: "failed",
          dg.AssetPartitionStatus.IN_PROGRESS: "in progress"}


@dataclass(frozen=True)
class PartitionStatus:
    """The partitions of one partitioned table at a moment: ``expected`` partition keys up to then (oldest first),
    those ``materialized``, ``failed`` and ``in_progress``, and ``latest`` (the newest expected key; of a static
    or multi-partitioned table the stalest key of the newest period, :func:`partition_status`; ``None`` before
    the first period is complete) with ``latest_state`` (``materialized``, ``failed``, ``in progress``
    or ``missing``) and ``latest_at`` (its latest materialization, aware UTC; ``None`` if never)."""

    expected: tuple[str, ...]
    materialized: tuple[str, ...]
    failed: tuple[str, ...]
    in_progress: tuple[str, ...]
    latest: str | None
    latest_state: str
    latest_at: datetime | None

    @property
    def missing(self) -> tuple[str, ...]:
        """The expected partitions never materialized (nor failed nor in progress)."""
        known = {*self.materialized, *self.failed, *self.in_progress}
        return tuple(k for k in self.expected if k not in known)

    def freshness(self, slas: list[Sla], now: datetime, timezone: str = "UTC") -> str:
        """The port's freshness state: its latest partition's materialization judged against ``slas`` at ``now``
        (``PASS``, ``FAIL``, ``not evaluated`` without an SLA); ``FAIL`` when the latest partition is not
        materialized, ``UNKNOWN`` when no partition is expected yet."""
        if self.latest is None:
            return freshness_state(None, slas, now, timezone)
        state = freshness_state(self.latest_at, slas, now, timezone)
        return "FAIL" if state == "UNKNOWN" else state

    def to_json(self) -> dict[str, Any]:
        """Counts and keys for JSON output: ``expected``, ``materialized`` (counts), ``missing``, ``failed``,
        ``in_progress`` (keys), ``latest``, ``latest_state`` and ``summary`` (:meth:`describe`)."""
        return {"expected": len(self.expected), "materialized": len(self.materialized), "missing": list(self.missing),
                "failed": list(self.failed), "in_progress": list(self.in_progress), "latest": self.latest,
                "latest_state": self.latest_state, "summary": self.describe()}

    def describe(self) -> str:
        """One line for people: ``78/79 materialized; missing 1998-08; latest 1998-08 missing``."""
        parts = [f"{len(self.materialized)}/{len(self.expected)} materialized"]
        parts += [f"{what} {_keys(keys)}" for what, keys in (("failed", self.failed), ("missing", self.missing),
                                                             ("in progress", self.in_progress)) if keys]
        if self.latest is not None:
            parts.append(f"latest {self.latest} {self.latest_state}")
        return "; ".join(parts)


def _keys(keys: tuple[str, ...], shown: int = 3) -> str:
    return ", ".join(keys[:shown]) + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def _newest_period(table: Table, expected: tuple[str, ...]) -> list[str]:
    """Of the ``expected`` keys (Dagster's order), those of the newest period: the last key of a time-partitioned
    table; every key of a static-partitioned one; every value of the last month or day of a multi-partitioned
    one."""
    if not expected or table.partitioning is None:
        return []
    if table.partitioning.static is None:
        return [expected[-1]]
    last = table.partitioning.split(expected[-1])[0]
    return [k for k in expected if table.partitioning.split(k)[0] == last]


def partition_status(instance: dg.DagsterInstance, table: Table, now: datetime | None = None
                     ) -> PartitionStatus | None:
    """The :class:`PartitionStatus` of ``table`` recorded in ``instance`` at ``now`` (default: the current
    time); ``None`` for an unpartitioned table. ``latest`` is the newest key; of a static or multi-partitioned
    table, of the keys of the newest period (every value), the first not materialized, else the one materialized
    longest ago: the port is as fresh as that. Reads the instance through its public API only
    (``get_status_by_partition``, ``fetch_materializations``)."""
    definition = partitions_definition(table.partitioning)
    if definition is None:
        return None
    now = now or datetime.now(UTC)
    expected = tuple(definition.get_partition_keys(current_time=now))
    key = dg.AssetKey(list(table.key))
    status = instance.get_status_by_partition(key, list(expected), definition) if expected else {}
    by_state: dict[str, list[str]] = {}
    for partition in expected:
        state = status.get(partition)
        by_state.setdefault(STATES[state] if state is not None else "missing", []).append(partition)
    newest = _newest_period(table, expected)
    state_of = {k: s for s, keys in by_state.items() for k in keys}
    at: dict[str, datetime | None] = {}
    for partition in newest:  # the first not materialized, or the one materialized longest ago
        found = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]),
                                                limit=1).records
        at[partition] = datetime.fromtimestamp(found[0].timestamp, UTC) if found else None
        if state_of[partition] != "materialized":
            break
    latest = min(at, key=lambda k: (state_of[k] == "materialized", at[k] or datetime.min.replace(tzinfo=UTC)),
                 default=None)
    latest_at = at.get(latest) if latest is not None else None
    latest_state = state_of.get(latest, "missing") if latest is not None else "missing"
    return PartitionStatus(expected, tuple(by_state.get("materialized", ())), tuple(by_state.get("failed", ())),
                           tuple(by_state.get("in progress", ())), latest, latest_state, latest_at)
