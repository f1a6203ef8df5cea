"""The dbt-duckdb plugin of the mesh: it gives the connection dbt opens for a model what a step's own DuckDB
connection has (mesh_assets/duckdb_engine.py), so a dbt model runs under the same rules as a SQL transform.

- ``allowed_directories``: the connection's file access is locked down to these directories once dbt-duckdb
  has set it up: the folders of the snapshots the model reads (masked copies where masked) and the step's own
  folder. No masking function is registered: masked inputs are views over their producers' masked copies.

The profile a step writes (mesh_assets.dbt_assets) names this module in ``plugins:``.
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection

from mesh_assets.duckdb_engine import DuckDBEngine


class Plugin(BasePlugin):
    """Locks file access down on each connection dbt-duckdb opens."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.allowed: list[str] | None = plugin_config.get("allowed_directories")

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        if self.allowed is not None:
            DuckDBEngine.restrict(conn, self.allowed)
