"""Which engine builds a table: DuckDB (embedded, the default), Spark (a cluster) or dbt (a table bound to a dbt
model) (docs/architecture.md). The choice is made once, when the definitions load: it names the Dagster resource
the table's step runs its write–audit–publish on (mesh_assets.engine.interface).

The most specific choice wins:

1. ``MESH_ENGINE`` (``mesh run --engine duckdb|spark``), which overrides everything;
2. the table: ``customProperties: [{property: engine, value: spark}]`` on the contract's schema object;
3. the data product: the contract's top-level ``customProperties`` ``engine``;
4. the domain: ``engine`` in ``domain.yaml``;
5. the mesh: ``engine`` in ``mesh.yaml`` (default ``duckdb``).

A table bound to a dbt model always runs on dbt (dbt-duckdb, docs/dbt.md): dbt-spark is not wired in, so an
inherited or overriding ``spark`` leaves it on dbt-duckdb, and ``engine: spark`` on the table itself is refused
when the contract is loaded. Likewise a partitioned table (docs/partitions.md) runs on DuckDB, which builds it
one partition or range at a time: an inherited or overriding ``spark`` leaves it on DuckDB, and ``engine: spark``
on the table itself is refused when the definitions load. Both engines read and write the same Parquet ports, so
mixing them is safe.
"""

from __future__ import annotations

import os

from mesh_assets.contract.mesh import Domain
from mesh_assets.contract.model import DataProduct, Table
from mesh_assets.errors import MeshError
from mesh_assets.settings import ENGINES, MeshSettings

ENGINE_ENV = "MESH_ENGINE"
# The extra of the package (mesh_assets.extras) each engine but DuckDB needs.
ENGINE_EXTRAS = {"spark": "spark", "dbt": "dbt"}


def engine_override() -> str | None:
    """The engine ``MESH_ENGINE`` forces on every table, or None.

    Raises:
        MeshError: the variable holds something other than ``duckdb`` or ``spark``.
    """
    value = os.environ.get(ENGINE_ENV) or None
    if value is not None and value not in ENGINES:
        raise MeshError(f"{ENGINE_ENV}={value!r} is not an engine; set it to one of {', '.join(ENGINES)} or unset it")
    return value


def table_engine(settings: MeshSettings, domain: Domain, product: DataProduct, table: Table) -> str:
    """The engine that builds ``table``: ``"duckdb"``, ``"spark"`` or ``"dbt"`` (see the module docstring)."""
    if table.dbt_model is not None:
        return "dbt"
    if table.partitioning is not None and table.engine is None:
        return "duckdb"
    return engine_override() or table.engine or product.engine or domain.engine or settings.engine
