"""Freshness policies from contract SLAs (ODCS ``slaProperties``) or the layer defaults of ``mesh.yaml``.

Mapping (Dagster 1.12+ ``FreshnessPolicy``): a ``frequency`` with ``scheduler: cron`` →
``FreshnessPolicy.cron(schedule, lower_bound_delta=frequency)``; else ``latency`` (or ``frequency``) →
``FreshnessPolicy.time_window(fail_window=…)``.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from mesh_assets.contract.model import Sla, Table
from mesh_assets.contract.sla import parse_sla
from mesh_assets.errors import ContractError
from mesh_assets.settings import MESH_FILE, MeshSettings


def layer_default_slas(settings: MeshSettings, layer: str) -> list[Sla]:
    """The SLAs ``mesh.yaml`` sets for ``layer`` under ``sla_defaults``. Raises :class:`ContractError` if one
    cannot be parsed."""
    slas = []
    for i, prop in enumerate(settings.sla_defaults.get(layer, [])):  # type: ignore[call-overload]
        sla = parse_sla(prop)
        if isinstance(sla, str):
            raise ContractError(settings.root / MESH_FILE, [f"sla_defaults.{layer}[{i}]: {sla}"])
        if sla is not None:
            slas.append(sla)
    return slas


def freshness_policy(table: Table, settings: MeshSettings, timezone: str = "UTC") -> dg.FreshnessPolicy | None:
    """The table's freshness policy, ``None`` when neither its contract nor ``mesh.yaml`` sets an SLA."""
    slas = list(table.slas) or layer_default_slas(settings, table.layer)
    cron = next((s for s in slas if s.property == "frequency" and s.schedule), None)
    if cron is not None:
        return dg.FreshnessPolicy.cron(deadline_cron=cron.schedule, lower_bound_delta=timedelta(seconds=cron.seconds),
                                       timezone=timezone)
    window = next((s for s in slas if s.property == "latency"), None) or (slas[0] if slas else None)
    if window is None:
        return None
    return dg.FreshnessPolicy.time_window(fail_window=timedelta(seconds=window.seconds))
