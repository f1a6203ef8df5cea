"""Progress of the commands that can take a while: `mesh catalog`, `mesh export duckdb`, `mesh new product --from`
(inference) and `mesh validate` report each unit of their work; the bar shows only on a terminal and never
with JSON output."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import dagster as dg
import pytest
from typer.testing import CliRunner

from mesh_assets.catalog import build_catalog
from mesh_assets.cli import main
from mesh_assets.cli.inference import infer
from mesh_assets.cli.validate import validate
from mesh_assets.consumption.query import export_duckdb
from mesh_assets.contract.mesh import Mesh
from mesh_assets.orchestration.runner import run_mesh


class Recorder:
    """A ``progress(done, total, what)`` callback that keeps its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, str]] = []

    def __call__(self, done: int, total: int, what: str) -> None:
        self.calls.append((done, total, what))


def test_catalog_and_export_report_each_product_and_port(tiny_mesh: Mesh, instance: dg.DagsterInstance,
                                                        tmp_path: Path) -> None:
    assert run_mesh(tiny_mesh, instance).success
    catalog = Recorder()
    build_catalog(tiny_mesh, tmp_path / "site", instance, progress=catalog)
    products = [f"shop.{p.name}" for p in tiny_mesh.domain("shop").products]
    assert catalog.calls == [(i, len(products), name) for i, name in enumerate(products)]
    export = Recorder()
    ports = export_duckdb(tmp_path / "mesh.duckdb", tiny_mesh.root, None, export)
    assert ports and [what for _, _, what in export.calls] == ports
    assert [(done, total) for done, total, _ in export.calls] == [(i, len(ports)) for i in range(len(ports))]


def test_inference_reports_the_sample_each_column_and_the_key(tmp_path: Path) -> None:
    source = tmp_path / "orders.csv"
    source.write_text("order_id,customer,amount\n1,ann,10.00\n2,bob,3.50\n")
    recorder = Recorder()
    infer([str(source)], progress=recorder)
    assert recorder.calls == [(0, 0, "reading a sample of 1 file(s)"), (1, 5, "column order_id"),
                              (2, 5, "column customer"), (3, 5, "column amount"), (4, 5, "primary key")]


def test_validate_reports_each_domain(tiny_root: Path) -> None:
    recorder = Recorder()
    assert not validate(tiny_root, progress=recorder).errors
    assert recorder.calls == [(0, 3, "loading shop"), (1, 3, "checking shop"),
                              (2, 3, "grants, owners, classifications, secrets")]


class _Stdout(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


@pytest.mark.parametrize(("terminal", "quiet", "shown"), [(True, False, True), (False, False, False),
                                                          (True, True, False)])
def test_the_bar_shows_only_on_a_terminal_and_never_for_json(monkeypatch: pytest.MonkeyPatch, terminal: bool,
                                                             quiet: bool, shown: bool) -> None:
    monkeypatch.setattr(sys, "stdout", _Stdout(terminal))
    with main._progress_bar(quiet=quiet) as progress:
        assert (progress is not None) == shown
        if progress is not None:
            progress(1, 2, "shop.orders")


def test_json_output_of_validate_has_no_bar(tiny_root: Path) -> None:
    result = CliRunner().invoke(main.app, ["validate", "--root", str(tiny_root), "--format", "json"])
    assert result.exit_code == 0 and "loading shop" not in result.output
    assert '"errors": 0' in result.output
