"""Reading the mesh from notebooks and BI tools: connect() as a domain, and a DuckDB file export."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import isolate, make_tiny_root, mesh_cli, restored
from mesh_assets import connect, load_mesh
from mesh_assets.consumption.query import export_duckdb
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.runner import run_mesh
from test_access import classify_customer_pii, masked, restrict
from test_governance import add_consumer


@pytest.fixture(scope="module")
def two_domains_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny mesh plus a billing domain reading shop.order_totals, whose customer names are PII, materialized
    once for the module (read only: tests change copies, :func:`two_domains`)."""
    root = make_tiny_root(tmp_path_factory.mktemp("two_domains"))
    add_consumer(root)
    classify_customer_pii(root)
    with pytest.MonkeyPatch.context() as mp, dg.instance_for_test() as instance:
        isolate(mp)
        assert run_mesh(load_mesh(root), instance).success
    return root


@pytest.fixture
def two_domains(two_domains_once: Path) -> Iterator[Path]:
    """:func:`two_domains_once`, its lake included, restored after the test."""
    with restored(two_domains_once) as root:
        yield root


def test_notebook_connection_shows_what_the_reader_may_read(two_domains) -> None:
    owner = connect(two_domains, "shop").sql("SELECT customer, total FROM shop.order_totals ORDER BY 1").fetchall()
    assert [c for c, _ in owner] == ["ann", "bob"]
    billing = connect(two_domains, "billing")
    assert sorted(billing.sql("SELECT customer FROM shop.order_totals").fetchall()) == sorted(
        (masked(c),) for c, _ in owner)
    assert billing.sql("SELECT count(*) FROM billing.invoices").fetchall() == [(2,)]
    tables = {r[0] for r in connect(two_domains).sql("SELECT schema_name || '.' || view_name FROM duckdb_views() "
                                                     "WHERE NOT internal").fetchall()}
    assert tables == {"shop.order_totals", "billing.invoices"}  # gold ports only: never bronze or silver
    with pytest.raises(MeshError, match="no domain 'nope'"):
        connect(two_domains, "nope")


def test_export_writes_a_duckdb_file_any_client_can_open(two_domains, tmp_path) -> None:
    target = tmp_path / "mesh.duckdb"
    assert sorted(export_duckdb(target, two_domains)) == ["billing.invoices", "shop.order_totals"]
    restrict(two_domains)  # no grant to billing for anonymous readers: left out of the next export
    assert export_duckdb(tmp_path / "public.duckdb", two_domains) == ["billing.invoices"]
    # a fresh process with plain duckdb, no mesh code: what a BI tool sees
    script = ("import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True); "
              "print(sorted(r[0] for r in con.sql('SELECT customer FROM shop.order_totals').fetchall())); "
              "print(con.sql('SELECT count(*) FROM billing.invoices').fetchall()[0][0])")
    shown = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, check=True)
    assert shown.stdout.splitlines() == [str(sorted([masked("ann"), masked("bob")])), "2"]
    with duckdb.connect(str(target), read_only=True) as con:
        kinds = dict(con.sql("SELECT table_name, table_type FROM information_schema.tables").fetchall())
        definitions = " ".join(r[0] for r in con.sql("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall())
    assert kinds == {"order_totals": "BASE TABLE", "invoices": "VIEW"}  # masked values copied, clear ones viewed
    assert "salt" not in definitions.lower() and "mesh_mask" not in definitions


def test_export_command(two_domains, tmp_path) -> None:
    clash = mesh_cli(two_domains, "export", "duckdb", str(tmp_path / "shop.duckdb"))
    assert clash.returncode == 2 and "makes shop.<table> ambiguous" in clash.stderr
    result = mesh_cli(two_domains, "export", "duckdb", str(tmp_path / "bi.duckdb"), "--domain", "shop")
    assert result.returncode == 0 and "2 port(s)" in result.stdout, result.stderr
    with duckdb.connect(str(tmp_path / "bi.duckdb"), read_only=True) as con:
        assert sorted(r[0] for r in con.sql("SELECT customer FROM shop.order_totals").fetchall()) == ["ann", "bob"]
