"""mesh_assets: data products declared as ODCS data contracts, built into a data mesh on Dagster.

Public API:

- :func:`build_domain_definitions` — a domain folder → its Dagster code location; :class:`DataProductsComponent`,
  the same as a Dagster Component, for a domain that is a ``dg`` project (``type: mesh_assets.DataProductsComponent``).
- :func:`build_mesh_definitions`, :func:`load_mesh` — every domain at once, for the command-line run.
- :func:`connect` — a DuckDB connection with every output port the reader may read as a ``<domain>.<table>``
  view, PII masked per grants; :func:`export_duckdb` — the same as a DuckDB file for BI tools.
"""

from mesh_assets.consumption.query import connect, export_duckdb
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.errors import ContractError, MeshError, PortError, TransformError
from mesh_assets.orchestration.component import DataProductsComponent
from mesh_assets.orchestration.definitions import build_domain_definitions, build_mesh_definitions

__all__ = [
    "ContractError",
    "DataProductsComponent",
    "MeshError",
    "PortError",
    "TransformError",
    "build_domain_definitions",
    "build_mesh_definitions",
    "connect",
    "export_duckdb",
    "load_mesh",
]
