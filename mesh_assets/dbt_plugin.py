"""The dbt-duckdb plugin of the mesh: it gives the connection dbt opens for a model what a step's own DuckDB
connection has (resources/duckdb_engine.py), so a dbt model runs under the same rules as a SQL transform.

The profile naming this plugin is the same for every step and for ``dbt parse`` (mesh_assets.dbt_project
``PROFILE``, ``dbt/profiles.yml``), so dbt reuses its parse state. What differs per step is read from the
step's file ``<step folder>/step.json`` (:data:`STEP_FILE`), the step folder being ``DBT_PROFILES_DIR``, which
dagster-dbt sets for the dbt process. On each connection dbt-duckdb opens, the plugin:

- sets the engine's limits (``threads``, ``memory_limit``) and a spill folder of the step's own;
- registers each input as a view ``<schema>.<table>`` over its port's current snapshot (the masked copy where
  the access rules mask columns), and the one-row view ``main.__mesh_step`` whose ``location`` is the Parquet file
  of the step's staged snapshot, where the ``mesh_snapshot`` materialization (``dbt/macros``) writes the model;
- locks file access down to the snapshot folders the model reads, the staged snapshot's folder and the spill
  folder (``DuckDBEngine.restrict``). No masking function is registered.

Without a step file (``dbt parse``, ``dbt compile`` by hand) the connection may touch no file at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import fsspec
from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection
from fsspec.implementations.local import LocalFileSystem

from resources.duckdb_engine import DuckDBEngine

STEP_FILE = "step.json"  # in the step folder: what this step's dbt connection gets
STEP_VIEW = "__mesh_step"  # main.__mesh_step(location): where the model's rows are written


def write_step_file(folder: Path, *, inputs: list[tuple[str, str, str]], location: str, storage_root: str,
                    allowed_directories: list[str], spill: str, threads: int | None, memory_limit: str | None
                    ) -> None:
    """Write the step's file read by the plugin in the dbt process, into the step's ``folder``: ``inputs`` as
    ``(schema, table, parquet glob)``, the staged data file ``location``, the ``storage_root`` (an object
    store's file system is registered), the directories the connection may touch besides its ``spill`` folder
    (a folder of the step's own), and the engine's limits (``None``: DuckDB's default)."""
    (folder / STEP_FILE).write_text(json.dumps({
        "inputs": inputs, "location": location, "storage_root": storage_root,
        "allowed_directories": allowed_directories, "spill": spill, "threads": threads,
        "memory_limit": memory_limit}), encoding="utf-8")


class Plugin(BasePlugin):
    """Registers the step's inputs and locks file access down on each connection dbt-duckdb opens."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        folder = os.environ.get("DBT_PROFILES_DIR")
        path = Path(folder) / STEP_FILE if folder else None
        self.step: dict[str, Any] = (json.loads(path.read_text(encoding="utf-8"))
                                     if path is not None and path.is_file() else {})

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        step = self.step
        if step.get("threads"):
            conn.execute(f"SET threads = {int(step['threads'])}")
        if step.get("memory_limit"):
            conn.execute(f"SET memory_limit = '{_quoted(step['memory_limit'])}'")
        if step.get("spill"):
            conn.execute(f"SET temp_directory = '{_quoted(step['spill'])}'")
        conn.execute("SET preserve_insertion_order = false")  # lets COPY stream large results in parallel
        conn.execute("SET enable_progress_bar = false")
        root = step.get("storage_root") or ""
        if "://" in root:
            fs, _ = fsspec.core.url_to_fs(root)
            if not isinstance(fs, LocalFileSystem):
                conn.register_filesystem(fs)
        for schema, table, glob in step.get("inputs") or []:
            DuckDBEngine.register_view(conn, schema, table, glob)
        if step.get("location"):
            conn.execute(f"CREATE OR REPLACE VIEW main.{STEP_VIEW} AS SELECT '{_quoted(step['location'])}' "
                         "AS location")
        DuckDBEngine.restrict(conn, [*(step.get("allowed_directories") or []),
                                     *([step["spill"]] if step.get("spill") else [])])


def _quoted(text: str) -> str:
    return str(text).replace("'", "''")
