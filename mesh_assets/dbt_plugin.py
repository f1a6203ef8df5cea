"""The dbt-duckdb plugin of the mesh: it gives the connection dbt opens for a model what a step's own DuckDB
connection has (resources/duckdb_engine.py), so a dbt model runs under the same rules as a SQL transform.

- ``pii_salt_env``: the environment variable holding the masking salt. When set, the masking function is
  registered, because the views of masked inputs call it (a Python function lives on its connection only).
- ``allowed_directories``: the connection's file access is locked down to these directories once dbt-duckdb
  has set it up: the ports the model reads and the step's own folder.

The profile a step writes (mesh_assets.dbt_assets) names this module in ``plugins:``.
"""

from __future__ import annotations

import os
from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection

from resources.duckdb_engine import DuckDBEngine


class Plugin(BasePlugin):
    """Registers ``mesh_mask`` and locks file access down on each connection dbt-duckdb opens."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        self.salt_env: str | None = plugin_config.get("pii_salt_env")
        self.allowed: list[str] | None = plugin_config.get("allowed_directories")

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        if self.salt_env:
            DuckDBEngine.enable_masking(conn, os.environ[self.salt_env].encode())
        if self.allowed is not None:
            DuckDBEngine.restrict(conn, self.allowed)
