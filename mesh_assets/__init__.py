"""mesh_assets: data products declared as ODCS data contracts, built into a data mesh on Dagster.

Public API:

- :func:`build_domain_definitions` — a domain folder → its Dagster code location.
- :func:`build_mesh_definitions`, :func:`load_mesh` — every domain at once, for the command-line run.
- :func:`connect` — a read-only DuckDB connection with every output port as a ``<domain>.<table>`` view.
"""

from mesh_assets.definitions import build_domain_definitions, build_mesh_definitions
from mesh_assets.errors import ContractError, MeshError, PortError, TransformError
from mesh_assets.mesh import load_mesh
from mesh_assets.query import connect

__all__ = [
    "ContractError",
    "MeshError",
    "PortError",
    "TransformError",
    "build_domain_definitions",
    "build_mesh_definitions",
    "connect",
    "load_mesh",
]
