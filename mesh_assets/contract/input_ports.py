"""The top-level ``customProperties`` ``inputPorts`` of a contract: the other domains' output ports a data product
relies on, the major version of each it is built against, and what it expects of them beyond the columns its
SQL reads (docs/domain-repos.md)::

    customProperties:
      - property: inputPorts
        value:
          - port: customers.customer_profile     # <domain>.<table>
            major: 1                             # the producer's major version this product is built against
            properties:                          # optional: relied on besides the columns the SQL reads
              - {name: c_custkey, required: true, unique: true}
              - {name: c_segment, physicalType: VARCHAR}
            freshness: {property: latency, value: 1, unit: d}   # optional: the largest latency accepted

ODCS v3.1 has no input ports; ``customProperties`` is its extension point, and the entries use ODCS's own words
(``properties``, ``physicalType``, ``required``, ``unique``, an ``slaProperties`` entry) so they read like the
producer's contract.
"""

from __future__ import annotations

import re
from typing import Any

from mesh_assets.contract.model import SNAKE_CASE, InputPort, Report
from mesh_assets.contract.sla import parse_sla
from mesh_assets.contract.types import parse_physical_type

PROPERTY = "inputPorts"
_PORT = re.compile(r"^[a-z][a-z0-9_]{0,62}\.[a-z][a-z0-9_]{0,62}$")
_KEYS = {"port", "major", "properties", "freshness"}
_COLUMN_KEYS = {"name", "physicalType", "required", "unique"}


def parse_input_ports(value: Any, domain: str, loc: list[str | int], report: Report) -> tuple[InputPort, ...]:
    """The :class:`InputPort` entries of ``value`` (the ``inputPorts`` customProperty's value, at ``loc``) of a
    contract of ``domain``. Problems (a malformed entry, a port of the domain itself, a port listed twice, an
    unknown key, a type DuckDB does not know, an unusable freshness) are reported at their entry with the fix."""
    if not isinstance(value, list):
        report(loc, "inputPorts is a list of {port: <domain>.<table>, major: <n>}")
        return ()
    out: list[InputPort] = []
    for i, entry in enumerate(value):
        where = [*loc, i]
        if not isinstance(entry, dict) or not isinstance(entry.get("port"), str) or not _PORT.fullmatch(entry["port"]):
            report(where, "each input port names another domain's output port: {port: <domain>.<table>, major: 1}")
            continue
        port = entry["port"]
        if port.split(".")[0] == domain:
            report(where, f"{port} is this domain's own table; list other domains' ports only")
            continue
        if port in {p.port for p in out}:
            report(where, f"{port} is listed twice; merge the entries")
            continue
        unknown = set(entry) - _KEYS
        if unknown:
            report(where, f"unknown key(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(_KEYS))}")
        major = entry.get("major")
        if major is not None and (not isinstance(major, int) or isinstance(major, bool) or major < 0):
            report([*where, "major"], f"major {major!r} is not a major version number; write e.g. major: 1")
            major = None
        columns, required, unique = _columns(entry.get("properties"), [*where, "properties"], report)
        freshness = None
        if entry.get("freshness") is not None:
            sla = parse_sla(entry["freshness"]) if isinstance(entry["freshness"], dict) else None
            if isinstance(sla, str) or sla is None or sla.property != "latency":
                report([*where, "freshness"], sla if isinstance(sla, str) else
                       "freshness is one slaProperties entry: {property: latency, value: 1, unit: d}")
            else:
                freshness = sla
        out.append(InputPort(port, major, columns, required, unique, freshness, tuple(where)))
    return tuple(out)


def _columns(value: Any, loc: list[str | int], report: Report
             ) -> tuple[tuple[tuple[str, str | None], ...], tuple[str, ...], tuple[str, ...]]:
    if value is None:
        return (), (), ()
    if not isinstance(value, list):
        report(loc, "properties is a list of {name: <column>, physicalType: <type>, required: true, unique: true}")
        return (), (), ()
    columns, required, unique = [], [], []
    for j, prop in enumerate(value):
        name = prop.get("name") if isinstance(prop, dict) else None
        if not isinstance(name, str) or not SNAKE_CASE.fullmatch(name):
            report([*loc, j], "each property names a column of the port: {name: <column>}")
            continue
        unknown = set(prop) - _COLUMN_KEYS
        if unknown:
            report([*loc, j], f"unknown key(s) {', '.join(sorted(unknown))}; use {', '.join(sorted(_COLUMN_KEYS))}")
        physical = prop.get("physicalType")
        if physical is not None:
            try:
                physical = parse_physical_type(str(physical))[0]
            except ValueError as exc:
                report([*loc, j, "physicalType"], str(exc))
                physical = None
        for key, found in (("required", required), ("unique", unique)):
            if prop.get(key) is True:
                found.append(prop["name"])
            elif prop.get(key) not in (None, False):
                report([*loc, j, key], f"{key} is true or false")
        columns.append((prop["name"], physical))
    return tuple(columns), tuple(required), tuple(unique)
