"""``mesh status``: every output port with its freshness, last update and last check results.

Freshness comes from two places, shown side by side: the state Dagster's freshness daemon last recorded for the
asset (``PASS``, ``WARN``, ``FAIL``, ``UNKNOWN``; ``not evaluated`` when no daemon has judged it yet) and the
port's current Iceberg snapshot judged against the same SLA now (mesh_assets.catalog.facts.freshness), which needs no
daemon.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dagster as dg

from mesh_assets.catalog.facts import freshness, latest_checks, read_pointer
from mesh_assets.contract.mesh import Mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.orchestration.freshness import layer_default_slas

COLUMNS = ["port", "visibility", "team", "freshness", "sla_state", "sla", "last_update", "rows", "checks"]


def port_status(mesh: Mesh, instance: dg.DagsterInstance | None, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per output port (gold table that is not private), by domain: ``port`` (``domain.table``),
    ``visibility``, ``team``, ``freshness`` (the freshness daemon's state), ``sla_state`` (``fresh``, ``stale``,
    ``never published`` or ``no SLA`` from the current snapshot), ``sla`` in words, ``last_update`` (ISO 8601 UTC),
    ``rows`` and ``checks`` (``N passed`` plus the failed ones by name, from the instance; empty without one).
    A port that cannot be read shows its problem as ``sla_state``."""
    now = now or datetime.now(UTC)
    storage = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
    tables = [(d, p, t) for d in mesh.domains() for p in d.products for t in p.tables
              if t.layer == "gold" and t.visibility != "private"]
    keys = [dg.AssetKey(list(t.key)) for _, _, t in tables]
    states = instance.get_freshness_state_records(keys) if instance is not None else {}
    rows = []
    for (domain, product, table), key in zip(tables, keys):
        pointer, problem = read_pointer(storage.port(table.key))
        judged = freshness(pointer, list(table.slas) or layer_default_slas(mesh.settings, table.layer), now,
                           domain.timezone)
        record = states.get(key)
        checks = latest_checks(instance, table)
        failed = [c.name for c in checks if c.status in ("failed", "warning")]
        passed = sum(c.status == "passed" for c in checks)
        rows.append({
            "port": f"{table.domain}.{table.name}", "visibility": table.visibility, "team": product.team,
            "freshness": record.freshness_state.value if record is not None else "not evaluated",
            "sla_state": problem or judged.state, "sla": judged.sla,
            "last_update": judged.published_at.isoformat(timespec="seconds") if judged.published_at else None,
            "rows": (pointer or {}).get("rows"),
            "checks": (f"{passed} passed" + (f", failed: {', '.join(failed)}" if failed else "")) if checks else "",
        })
    return rows
