"""Where a tool outside the mesh reads a data product's tables: the contract's ODCS ``servers`` entry.

Every table of the mesh is an Apache Iceberg table in one SQL catalog named :data:`CATALOG_NAME`, in the namespace
of its domain, named :func:`physical_name` (docs/consuming.md). A contract says so in ODCS terms:

- ``servers``: one entry ``server: mesh`` — ``type: custom`` (ODCS v3.1 and v3.2 have no Iceberg server type:
  ``Server.type`` of their JSON Schemas), ``format: iceberg``, ``catalog: mesh``, ``schema: <domain>``;
- each table's ``physicalName``: its Iceberg table name within that schema, ``<layer>__<table>``.

The catalog's address (a SQLAlchemy URL) belongs to the deployment, not to the contract (``mesh.yaml``
``catalog.uri``); ``mesh ports`` and the catalog site show it. The ``port_server`` policy of ``mesh validate``
reports an output port's contract that lacks the entry; this module refuses one that misnames the catalog, the
schema or a table, which would send consumers to the wrong place.
"""

from __future__ import annotations

from typing import Any, Callable

CATALOG_NAME = "mesh"   # the pyiceberg SQL catalog's name (its rows' ``catalog_name``)
SERVER_NAME = "mesh"    # the ``server`` of the mesh's entry in a contract's ``servers``
SERVER_FORMAT = "iceberg"


def physical_name(layer: str, table: str) -> str:
    """The Iceberg table name of the table ``table`` of layer ``layer`` in its domain's namespace:
    ``<layer>__<table>``, e.g. ``gold__order_lines_wide`` (its identifier: ``sales.gold__order_lines_wide``)."""
    return f"{layer}__{table}"


def mesh_server(domain: str) -> dict[str, Any]:
    """The ``servers`` entry of a contract of ``domain``, as ``mesh new product`` writes it and the fix of the
    ``port_server`` policy quotes it."""
    return {"server": SERVER_NAME, "type": "custom", "format": SERVER_FORMAT, "catalog": CATALOG_NAME,
            "schema": domain,
            "description": "The mesh's Iceberg catalog: each table is <schema>.<physicalName> (docs/consuming.md)."}


def check_servers(data: dict[str, Any], domain: str, fail: Callable[[list[str | int], str], None]) -> None:
    """Refuse, through ``fail(location, message)``, a ``server: mesh`` entry of ``data`` (a contract's parsed
    YAML) that is not ``type: custom, format: iceberg, catalog: mesh, schema: <domain>``, and a table whose
    ``physicalName`` is not ``<layer>__<table>``. Other servers entries (a team's own copies elsewhere) are the
    team's business and are not checked."""
    for i, server in enumerate(data.get("servers") or []):
        if not isinstance(server, dict) or server.get("server") != SERVER_NAME:
            continue
        expected = {k: v for k, v in mesh_server(domain).items() if k != "description"}
        wrong = {k: v for k, v in expected.items() if server.get(k) != v}
        if wrong:
            fail(["servers", i], "the mesh's server entry must say where its Iceberg tables are: set "
                                 + ", ".join(f"{k}: {v}" for k, v in wrong.items()))
    for i, obj in enumerate(data.get("schema") or []):
        if not isinstance(obj, dict) or obj.get("physicalName") is None:
            continue
        layer = {p.get("property"): p.get("value") for p in obj.get("customProperties") or []
                 if isinstance(p, dict)}.get("layer")
        expected_name = physical_name(str(layer), str(obj.get("name")))
        if obj["physicalName"] != expected_name:
            fail(["schema", i, "physicalName"], f"is {obj['physicalName']!r}, but the table's Iceberg table is "
                                                f"named {expected_name!r}; set physicalName: {expected_name}")
