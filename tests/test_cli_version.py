"""`mesh --version` names the versions a bug report needs, without a mesh folder."""

from __future__ import annotations

import importlib.metadata

import dagster
import duckdb
from typer.testing import CliRunner

from mesh_assets.cli import app


def test_version_prints_mesh_assets_dagster_and_duckdb(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no mesh.yaml here or above
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (f"mesh-assets {importlib.metadata.version('mesh-assets')} "
                                     f"(dagster {dagster.__version__}, duckdb {duckdb.__version__})")
