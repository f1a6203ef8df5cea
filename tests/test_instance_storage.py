"""The pooled SQLite event log of the embedded instance records what Dagster's default storage records."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from mesh_assets.contract.mesh import Mesh
from mesh_assets.orchestration.instance_storage import PooledSqliteEventLogStorage
from mesh_assets.orchestration.runner import run_mesh

CONFIG = """event_log_storage:
  module: mesh_assets.orchestration.instance_storage
  class: PooledSqliteEventLogStorage
"""


def test_run_events_persist_and_default_storage_reads_them(tiny_mesh: Mesh, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(CONFIG)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, PooledSqliteEventLogStorage)
        summary = run_mesh(tiny_mesh, instance)
    assert summary.success
    (home / "dagster.yaml").write_text("")  # Dagster's default storage, on the same files
    with dg.DagsterInstance.get() as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        key = dg.AssetKey(["shop", "gold", "order_totals"])
        assert instance.get_latest_materialization_event(key).run_id == summary.run_id
        checks = instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        assert len(checks) == sum(a.checks_passed + len(a.warnings) + len(a.blocking) for a in summary.assets) > 20
