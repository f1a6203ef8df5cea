"""The ``slaProperties[]`` section of a contract: ``latency`` and ``frequency`` become :class:`Sla` values per
table (mesh_assets.orchestration.freshness maps them to Dagster freshness policies). Units follow ODCS v3.1
("d, day, days", …); other SLA properties (availability, retention, …) are ODCS's and left alone."""

from __future__ import annotations

from typing import Any

from mesh_assets.contract.model import Report, Sla

MIN_SLA_SECONDS = 60  # dagster.FreshnessPolicy refuses a shorter fail window
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "seconds": 1, "m": 60, "min": 60, "minute": 60, "minutes": 60,
                 "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
                 "w": 604800, "week": 604800, "weeks": 604800}


def parse_sla(prop: dict[str, Any]) -> Sla | str | None:
    """An :class:`Sla` from one ODCS ``slaProperties`` entry; ``None`` for properties other than latency and
    frequency; a message string when the entry cannot be used (a value that is no positive number, an unknown
    unit, a window under :data:`MIN_SLA_SECONDS`)."""
    kind = str(prop.get("property", "")).lower()
    if kind not in ("latency", "frequency"):
        return None
    unit = str(prop.get("unit") or "d").lower()
    value = prop.get("value")
    if unit not in _UNIT_SECONDS or not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        return f"{kind} needs a positive number value and a unit (s, m, h, d, w), got value {value!r} unit {unit!r}"
    seconds = float(value) * _UNIT_SECONDS[unit]
    if seconds < MIN_SLA_SECONDS:
        return (f"{kind} of {value} {unit} is shorter than 1 minute, the shortest window Dagster's freshness "
                f"policies evaluate; use at least value 1 unit m")
    schedule = prop.get("schedule") if str(prop.get("scheduler") or "").lower() == "cron" else None
    return Sla(kind, seconds, schedule)


def parse_slas(props: list[dict[str, Any]], tables: set[Any], report: Report) -> dict[str | None, list[Sla]]:
    """The SLAs of a contract's ``slaProperties`` by table name (key ``None``: every table of the product, an
    entry without ``element``). ``tables`` are the names in ``schema[]``; an unusable entry, or an ``element``
    naming no table, is reported at ``slaProperties[i]`` and left out."""
    out: dict[str | None, list[Sla]] = {}
    for i, prop in enumerate(props):
        sla = parse_sla(prop)
        if isinstance(sla, str):
            report(["slaProperties", i], sla)
            continue
        if sla is None:
            continue  # an SLA property this framework does not act on (availability, retention, …)
        element = prop.get("element")
        table = element.split(".")[0] if element else None
        if table is not None and table not in tables:
            report(["slaProperties", i, "element"], f"'{element}' names no table of this contract")
        out.setdefault(table, []).append(sla)
    return out
