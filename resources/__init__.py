"""Shared Dagster resources of the mesh: the DuckDB engine and the port storage."""

from resources.duckdb_engine import DuckDBEngine
from resources.port_storage import PortStorage

__all__ = ["DuckDBEngine", "PortStorage"]
