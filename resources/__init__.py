"""Shared Dagster resources of the mesh: the DuckDB and Spark engines and the port storage."""

from resources.duckdb_engine import DuckDBEngine
from resources.port_storage import PortStorage
from resources.spark_engine import SparkEngine

__all__ = ["DuckDBEngine", "PortStorage", "SparkEngine"]
