"""Plan a query without data: DuckDB binds it against empty tables of the contracts' columns, so an unknown
table or column, or a type error, is found when the mesh is validated rather than when a step runs.

``EXPLAIN`` binds and optimizes the query (every name and type resolved) and reads no row. The connection is
locked down like a step's (mesh_assets.engine.duckdb_engine.DuckDBEngine.connect) and allowed no folder.
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb

from mesh_assets.engine.duckdb_engine import DuckDBEngine, DuckDBStep


def plan_query(query: str, relations: Mapping[tuple[str, str], Mapping[str, str]]) -> str | None:
    """Why ``query`` (DuckDB dialect) cannot run on ``relations`` — ``(schema, table)`` → column → DuckDB type,
    each an empty relation of those columns — as DuckDB's message on one line; ``None`` when it plans."""
    engine = DuckDBEngine(threads=1)
    con = engine.connect(allowed_directories=[])
    try:
        session = DuckDBStep(engine, con)
        for (schema, name), columns in relations.items():
            session.register_empty(schema, name, columns)
        try:
            con.execute(f"EXPLAIN {query}").fetchall()
        except duckdb.Error as exc:
            return " ".join(str(exc).split())
        return None
    finally:
        con.close()
