"""Freshness policies from contract SLAs (ODCS ``slaProperties``) or the layer defaults of ``mesh.yaml``.

Mapping (Dagster 1.12+ ``FreshnessPolicy``): a ``frequency`` with ``scheduler: cron`` →
``FreshnessPolicy.cron(schedule, lower_bound_delta=frequency)``; else ``latency`` (or ``frequency``) →
``FreshnessPolicy.time_window(fail_window=…)``.

The same rule judges a time of publication or materialization against the SLAs (:func:`freshness_deadline`,
:func:`freshness_state`) without reading the state Dagster's freshness daemon records, which no public
instance method returns in Dagster 1.13.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
from croniter import croniter

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


def freshness_deadline(slas: list[Sla], now: datetime, timezone: str = "UTC") -> datetime | None:
    """The earliest time (UTC) of a publication that meets ``slas`` at ``now`` (aware), as the freshness policy
    of :func:`freshness_policy` judges it: a cron ``frequency`` wants one at or after the latest tick (in
    ``timezone``, an IANA name) minus the frequency; otherwise ``latency`` (else the first SLA) wants one within
    its duration. None without an SLA."""
    cron = next((s for s in slas if s.property == "frequency" and s.schedule), None)
    window = next((s for s in slas if s.property == "latency"), None) or (slas[0] if slas else None)
    if cron is not None:
        return latest_cron_tick(cron.schedule or "", now, timezone).astimezone(UTC) - timedelta(seconds=cron.seconds)
    if window is not None:
        return now - timedelta(seconds=window.seconds)
    return None


def freshness_state(updated_at: datetime | None, slas: list[Sla], now: datetime, timezone: str = "UTC") -> str:
    """The state of the freshness policy of a table last materialized at ``updated_at`` (aware; None: never),
    judged at ``now``: ``PASS``, ``FAIL``, ``UNKNOWN`` (never materialized) as Dagster names them, or ``not
    evaluated`` without an SLA. The policies set no warn window, so never ``WARN``."""
    deadline = freshness_deadline(slas, now, timezone)
    if deadline is None:
        return "not evaluated"
    if updated_at is None:
        return "UNKNOWN"
    return "PASS" if updated_at >= deadline else "FAIL"


def latest_cron_tick(schedule: str, now: datetime, timezone: str = "UTC") -> datetime:
    """The latest tick of the cron expression ``schedule`` at or before ``now``, in ``timezone`` (an IANA name):
    the tick a cron freshness policy judges against. Cron has minute resolution, so the search starts at the
    minute after ``now``'s (croniter's ``get_prev`` returns the latest tick strictly before its start)."""
    start = now.astimezone(ZoneInfo(timezone)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    return croniter(schedule, start).get_prev(datetime)
