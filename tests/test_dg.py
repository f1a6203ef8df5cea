"""Dagster's `dg` on the mesh: each domain is a dg project whose defs folder holds one DataProductsComponent,
listed in the dg workspace at the mesh root (docs/architecture.md, "Code locations")."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mesh_assets import DataProductsComponent, build_domain_definitions
from mesh_assets.cli.scaffold import create_domain, domain_package, write_dg_project
from mesh_assets.contract.mesh import load_domain
from mesh_assets.errors import MeshError

BIN = Path(sys.executable).parent
REPO = Path(__file__).parent.parent
INVOICES = "invoice_id,customer,amount,issued_on\n1,ann,10.50,2026-01-02\n2,bob,20.00,2026-01-03\n"


def _keys(defs: dg.Definitions) -> tuple[set[str], set[str]]:
    """The asset keys and asset check keys of ``defs``, as ``dg list defs`` spells them."""
    graph = defs.resolve_asset_graph()
    return ({k.to_user_string() for k in graph.get_all_asset_keys()},
            {f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys})


@pytest.fixture
def shop_project(tiny_root: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The tiny mesh's domain ``shop`` made a dg project, its package importable as a code location's is."""
    folder = tiny_root / "domains" / "shop"
    write_dg_project(folder, "shop")
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in [m for m in sys.modules if m.split(".")[0] == domain_package("shop")]:
        del sys.modules[name]


def test_the_component_builds_what_build_domain_definitions_builds(shop_project: Path) -> None:
    through_component = dg.load_from_defs_folder(path_within_project=shop_project)
    direct = build_domain_definitions(shop_project)
    assert _keys(through_component) == _keys(direct)
    assets, checks = _keys(through_component)
    assert {"shop/bronze/raw_orders", "shop/silver/orders", "shop/gold/order_totals"} <= assets
    assert "shop/gold/order_totals:schema" in checks
    assert {s.name for s in through_component.sensors} == {s.name for s in direct.sensors}
    assert {j.name for j in through_component.jobs} == {"shop_ingestion"}


def test_a_relative_domain_dir_is_read_from_the_defs_yaml_folder(shop_project: Path) -> None:
    defs_yaml = shop_project / domain_package("shop") / "defs" / "data_products" / "defs.yaml"
    defs_yaml.write_text("type: mesh_assets.DataProductsComponent\nattributes:\n  domain_dir: ../../..\n")
    assert "shop/gold/order_totals" in _keys(dg.load_from_defs_folder(path_within_project=shop_project))[0]


def test_a_domain_dir_without_domain_yaml_is_refused_with_the_fix(shop_project: Path) -> None:
    defs_yaml = shop_project / domain_package("shop") / "defs" / "data_products" / "defs.yaml"
    defs_yaml.write_text("type: mesh_assets.DataProductsComponent\nattributes:\n  domain_dir: .\n")
    with pytest.raises(Exception) as raised:  # Dagster wraps the component's error with the YAML's position
        dg.load_from_defs_folder(path_within_project=shop_project)
    chain = [raised.value, *(e for e in (raised.value.__cause__, raised.value.__context__) if e)]
    message = next(str(e) for e in chain if isinstance(e, MeshError))
    assert "has no domain.yaml" in message and "attributes.domain_dir" in message and "defs.yaml" in message


def test_the_component_library_is_registered() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["dagster_dg_cli.registry_modules"] == {"mesh_assets": "mesh_assets"}
    domain = tomllib.loads((REPO / "domains" / "sales" / "dg.toml").read_text())
    assert domain["project"] == {"root_module": "sales_domain", "registry_modules": ["mesh_assets"]}
    assert issubclass(DataProductsComponent, dg.Component)


@pytest.mark.parametrize(("text", "says"), [
    ('directory_type = "project"\n', 'expected directory_type = "workspace"'),
    ('directory_type = "workspace"\n[workspace]\nprojects = [{path = "domains/a"}]\n',
     "cannot append a [[workspace.projects]] table"),
    ('directory_type = "workspace"\n[[workspace.projects]]\npath = "domains/billing"\n', "is already listed"),
    ("directory_type = \n", "not valid TOML"),
])
def test_a_dg_workspace_that_cannot_take_the_domain_is_refused(tmp_path: Path, text: str, says: str) -> None:
    root = tmp_path / "mesh"
    (root / "domains").mkdir(parents=True)
    (root / "mesh.yaml").write_text("name: m\n")
    (root / "dg.toml").write_text(text)
    with pytest.raises(MeshError, match="dg.toml") as raised:
        create_domain(root, "billing", "billing-team", members=["ben@example.com"])
    assert says in str(raised.value)
    assert not (root / "domains" / "billing").exists() and not (root / "workspace.yaml").exists()


# --- the acceptance tests: the dg command on the reference mesh and on a domain made by `mesh new domain` ---


def _dg(cwd: Path, home: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").touch()
    done = subprocess.run([str(BIN / "dg"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "DAGSTER_HOME": str(home), "COLUMNS": "200"})
    assert done.returncode == 0, f"dg {' '.join(args)} in {cwd}:\n{done.stdout}\n{done.stderr}"
    return done


def _listed(cwd: Path, home: Path) -> tuple[set[str], set[str]]:
    data = json.loads(_dg(cwd, home, "list", "defs", "--json").stdout)
    return {a["asset_key"] for a in data["assets"]}, {c["key"] for c in data["asset_checks"]}


@pytest.mark.slow  # dg loads every reference code location in child processes
def test_dg_checks_and_lists_the_reference_mesh(tmp_path: Path) -> None:
    checked = _dg(REPO, tmp_path / "home", "check", "defs", "--use-active-venv")
    assert "All definitions loaded successfully." in checked.stdout
    assets, checks = _listed(REPO / "domains" / "sales", tmp_path / "home")
    assert "sales/gold/order_lines_wide" in assets
    assert {"/".join(t.key) for t in load_domain(REPO / "domains" / "sales").tables} <= assets
    assert (assets, checks) == _keys(build_domain_definitions(REPO / "domains" / "sales"))
    assert {"sales/gold/order_lines_wide:schema", "sales/gold/order_lines_wide:primary_key"} <= checks


@pytest.mark.slow  # `mesh` and dg in child processes, a run of a bronze table
def test_dg_on_a_domain_made_by_mesh_new_domain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "mesh"
    root.mkdir()
    for name in ("mesh.yaml", "dg.toml", "workspace.yaml"):
        shutil.copy(REPO / name, root / name)
    for name in ("domains", "dbt"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "invoices.csv").write_text(INVOICES)
    for args in (["new", "domain", "billing", "--team", "billing-team", "--member", "ben@example.com"],
                 ["new", "product", "billing", "invoices", "--from", str(tmp_path / "invoices.csv")]):
        done = subprocess.run([str(BIN / "mesh"), *args, "--root", str(root)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    billing, home = root / "domains" / "billing", tmp_path / "home"

    assets, checks = _listed(billing, home)
    assert assets == {"billing/bronze/raw_invoices", "billing/bronze/raw_invoices__rejects",
                      "billing/silver/clean_invoices", "billing/gold/invoices"}
    assert {"billing/bronze/raw_invoices:primary_key", "billing/gold/invoices:schema"} <= checks

    components = json.loads(_dg(billing, home, "list", "components", "--json").stdout)
    assert "mesh_assets.DataProductsComponent" in {c["key"] for c in components["items"]}
    defs_yaml = billing / "billing_domain" / "defs" / "data_products" / "defs.yaml"
    written = yaml.safe_load(defs_yaml.read_text())
    shutil.rmtree(defs_yaml.parent)
    _dg(billing, home, "scaffold", "defs", "mesh_assets.DataProductsComponent", "data_products")
    assert yaml.safe_load(defs_yaml.read_text()) == written  # what mesh new domain writes
    checked = _dg(billing, home, "check", "defs")  # validates defs.yaml against the component, then loads it
    assert "All component YAML validated successfully." in checked.stdout + checked.stderr
    assert "All definitions loaded successfully." in checked.stdout

    # a bronze table is one step with its rejects table: select both
    _dg(billing, home, "launch", "--assets", 'key:"billing/bronze/raw_invoices*"')
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["billing", "bronze", "raw_invoices"]))
    assert event is not None and event.asset_materialization.metadata["dagster/row_count"].value == 2


_LOCATIONS = ("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
              "locationOrLoadError { __typename ... on PythonError { message } } } } } }")


def _locations(port: int) -> dict[str, str] | None:
    """Each code location the webserver at ``port`` serves → its ``__typename`` once loaded, or None."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", json.dumps({"query": _LOCATIONS}).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return None
    return {e["name"]: e["locationOrLoadError"]["__typename"] for e in entries}


@pytest.mark.daemon  # dg dev: a webserver, a daemon and four code servers
def test_dg_dev_serves_every_domain(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "home"
    home.mkdir()
    with (tmp_path / "dg-dev.log").open("w") as log:
        dev = subprocess.Popen([str(BIN / "dg"), "dev", "--use-active-venv", "--port", str(port)], cwd=REPO,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "DAGSTER_HOME": str(home)})
        try:
            deadline, loaded = time.monotonic() + 600, None
            while loaded is None and time.monotonic() < deadline and dev.poll() is None:
                time.sleep(3)
                loaded = _locations(port)
        finally:
            os.killpg(dev.pid, signal.SIGTERM)
            try:
                dev.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(dev.pid, signal.SIGKILL)
                dev.wait()
    assert loaded == dict.fromkeys(("customers", "supply", "sales", "finance"), "RepositoryLocation"), \
        (tmp_path / "dg-dev.log").read_text()[-3000:]
