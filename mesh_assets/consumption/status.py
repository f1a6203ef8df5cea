"""``mesh status``: every output port with its freshness, last update and last check results (warnings and
blocking failures apart, with their counts: :mod:`mesh_assets.catalog.checks`).

Freshness comes from two places, shown side by side, each judged now against the table's SLA as its freshness
policy judges it (mesh_assets.orchestration.freshness): the asset's latest materialization recorded in the
Dagster instance (``PASS``, ``FAIL``, ``UNKNOWN`` when never materialized; ``not evaluated`` without an
instance or an SLA), read with the public ``DagsterInstance.get_asset_records``, and the port's current Iceberg
snapshot (mesh_assets.catalog.facts.freshness). Neither needs the freshness daemon.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from mesh_assets.catalog.facts import freshness, read_pointer
from mesh_assets.catalog.partitions import partition_status
from mesh_assets.catalog.checks import (CheckRecord, describe_counts, failure_summary,
                                             latest_check_records)
from mesh_assets.contract.mesh import Mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.staleness import StaleInput, stale_inputs
from mesh_assets.orchestration.freshness import freshness_state, layer_default_slas

COLUMNS = ["port", "visibility", "team", "freshness", "sla_state", "sla", "last_update", "rows", "partitions",
           "checks_passed", "warnings", "blocking", "stale_partitions"]


def port_status(mesh: Mesh, instance: dg.DagsterInstance | None, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per output port (gold table that is not private), by domain: ``port`` (``domain.table``),
    ``visibility``, ``team``, ``freshness`` (the latest materialization's state), ``sla_state`` (``fresh``, ``stale``,
    ``never published`` or ``no SLA`` from the current snapshot), ``sla`` in words, ``last_update`` (ISO 8601
    UTC), ``rows``, ``partitions`` (of a partitioned port with an instance: the counts and keys of
    :meth:`mesh_assets.catalog.partitions.PartitionStatus.to_json`, and ``freshness`` is then its latest
    partition's), ``checks_passed`` (None without a recorded run), and the failed checks of the latest run that
    evaluated them, apart: ``warnings`` (severity WARN) and ``blocking`` (ERROR), each a list of
    ``{asset, check, severity, failing_rows, distinct_keys, null_keys, pass_rate, observed_value}``
    (:func:`mesh_assets.catalog.checks.failure_summary`), and ``stale_partitions``: of a partitioned port, each
    unpartitioned input published again since some partitions were built, with the contract's policy
    (mesh_assets.engine.staleness.StaleInput). A port that cannot be read shows its problem as ``sla_state``."""
    now = now or datetime.now(UTC)
    storage = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
    tables = [(d, p, t) for d in mesh.domains() for p in d.products for t in p.tables
              if t.layer == "gold" and t.visibility != "private"]
    keys = [dg.AssetKey(list(t.key)) for _, _, t in tables]
    materialized = {r.asset_entry.asset_key: r.asset_entry.last_materialization
                    for r in (instance.get_asset_records(keys) if instance is not None else [])}
    by_asset: dict[str, list[CheckRecord]] = {}
    for check in latest_check_records(instance, [t for _, _, t in tables]):
        by_asset.setdefault(check.asset, []).append(check)
    rows = []
    for (domain, product, table), key in zip(tables, keys):
        pointer, problem = read_pointer(storage.port(table.key))
        slas = list(table.slas) or layer_default_slas(mesh.settings, table.layer)
        judged = freshness(pointer, slas, now, domain.timezone)
        event = materialized.get(key)
        state = (freshness_state(datetime.fromtimestamp(event.timestamp, UTC) if event else None, slas, now,
                                 domain.timezone) if instance is not None else "not evaluated")
        partitions = partition_status(instance, table, now) if instance is not None else None
        if partitions is not None:  # as fresh as its latest partition
            state = partitions.freshness(slas, now, domain.timezone)
        checks = by_asset.get("/".join(table.key), [])
        rows.append({
            "port": f"{table.domain}.{table.name}", "visibility": table.visibility, "team": product.team,
            "freshness": state,
            "sla_state": problem or judged.state, "sla": judged.sla,
            "last_update": judged.published_at.isoformat(timespec="seconds") if judged.published_at else None,
            "rows": (pointer or {}).get("rows"),
            "partitions": partitions.to_json() if partitions is not None else None,
            "checks_passed": sum(c.passed for c in checks) if checks else None,
            "warnings": [failure_summary(c) for c in checks if c.warning],
            "blocking": [failure_summary(c) for c in checks if c.blocking_failure],
            "stale_partitions": [s.to_json() for s in stale_inputs(mesh, table, storage)],
        })
    return rows


def as_text(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` of :func:`port_status` for a table or CSV: each failed check as ``name (its counts)``."""
    def words(failures: list[dict[str, Any]]) -> str:
        return "; ".join(f"{f['check']} ({describe_counts(f)})" if describe_counts(f) else f["check"]
                         for f in failures)
    stale = "; ".join(StaleInput(**{**s, "built_against": tuple(s["built_against"]),
                                    "partitions": tuple(s["partitions"])}).describe()
                      for s in row["stale_partitions"])
    return {**row, "warnings": words(row["warnings"]), "blocking": words(row["blocking"]), "stale_partitions": stale,
            "partitions": (row["partitions"] or {}).get("summary", "")}
