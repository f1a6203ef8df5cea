"""Replay the statements a mesh run recorded (``MESH_DUCKDB_QUERY_LOG``) on plain DuckDB, no framework.

``python -m benchmarks.raw_replay <log folder>``: each recorded connection's statements, in the run's order,
on a fresh in-memory connection, every result fetched in full. This is the physical limit the mesh is compared
with: the very same SQL (ingestion, transforms, checks, profiles), without Dagster or the framework's Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb

from mesh_assets.engine.duckdb_engine import DuckDBEngine, MASK_FUNCTION
from mesh_assets.governance.access import pii_salt
from mesh_assets.settings import GovernanceSettings


def replay(folder: Path) -> int:
    """Run every recorded statement; return how many ran. Connections that masked PII get the same masking
    function, keyed by the same salt (``MESH_PII_SALT``): the replay does the very same work."""
    count = 0
    for log in sorted(folder.glob("*.json"), key=lambda p: int(p.name.split("-", 1)[0])):
        con = duckdb.connect(":memory:")
        statements = json.loads(log.read_text())
        if any(MASK_FUNCTION in s for s in statements):
            DuckDBEngine.enable_masking(con, pii_salt(GovernanceSettings()))
        for statement in statements:
            con.execute(statement).fetchall()
            count += 1
        con.close()
    return count


if __name__ == "__main__":
    print(f"{replay(Path(sys.argv[1]))} statements replayed")
