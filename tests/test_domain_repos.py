"""Domain repositories joined by the contract registry, end to end (docs/domain-repos.md): a producer and a consumer
in two git repositories, each its own working directory, mesh folder, Dagster code location and instance, sharing
one registry folder and the producer's Iceberg catalog and warehouse, and a platform repository whose
workspace.yaml loads both code locations, each from its own repository. Every step is a command in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import make_tiny_root
from mesh_assets.cli.scaffold import write_dg_project
from test_registry import ORDERS, edit, make_consumer, totals

MESH = str(Path(sys.executable).parent / "mesh")
pytestmark = pytest.mark.slow  # two meshes materialized by `mesh` child processes


def mesh(repo: Path, *args: str) -> subprocess.CompletedProcess:
    """``mesh <args>`` in the repository ``repo`` (its working directory), recording into its own instance."""
    env = {**os.environ, "DAGSTER_HOME": str(repo / ".dagster"), "COLUMNS": "250"}
    return subprocess.run([MESH, *args], cwd=repo, capture_output=True, text=True, env=env, timeout=600)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org",
                    "-c", "commit.gpgsign=false", *args], check=True, capture_output=True)


def platform_loads_both_locations(platform: Path, repos: dict[str, Path]) -> None:
    """A platform repository whose workspace.yaml loads each domain's code location from its own repository (its
    working directory and Python executable, one gRPC server each): `dagster definitions validate` loads both, and
    the consumer's location, loaded in its own repository, has the cross-domain edge on the producer's port."""
    locations = [{"python_module": {"module_name": f"{name}_domain.definitions", "location_name": name,
                                    "working_directory": str(repo / "domains" / name),
                                    "executable_path": sys.executable}} for name, repo in repos.items()]
    platform.mkdir()
    (platform / "workspace.yaml").write_text(yaml.safe_dump({"load_from": locations}, sort_keys=False))
    git(platform, "init", "-q")
    git(platform, "add", "-A")
    git(platform, "commit", "-qm", "the mesh's code locations")
    env = {**os.environ, "DAGSTER_HOME": str(platform / ".dagster")}
    env.pop("PYTHONPATH", None)
    (platform / ".dagster").mkdir()
    validated = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w",
                                "workspace.yaml"], cwd=platform, capture_output=True, text=True, env=env, timeout=600)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    for name in repos:
        assert f"Validation successful for code location {name}" in validated.stdout + validated.stderr
    edges = subprocess.run([sys.executable, "-c", EDGES], cwd=repos["billing"] / "domains/billing",
                           capture_output=True, text=True, env=env, timeout=600)
    assert edges.returncode == 0, edges.stderr
    assert json.loads(edges.stdout.splitlines()[-1]) == ["shop/gold/order_totals"]


# The upstream asset keys of billing's port in its code location, as Dagster loads it (the defs folder).
EDGES = """
import json
from pathlib import Path
import dagster as dg
defs = dg.load_from_defs_folder(path_within_project=Path.cwd())
port = defs.get_assets_def(["billing", "gold", "invoices"])
print(json.dumps(sorted(key.to_user_string() for key in port.dependency_keys)))
"""


def test_a_consumer_repository_reads_a_producer_repository_through_the_registry(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    producer = make_tiny_root(tmp_path)  # domain shop, port shop.order_totals; its lake holds the catalog
    (producer / "mesh.yaml").write_text((producer / "mesh.yaml").read_text() + f"registry: {{path: {registry}}}\n")
    (producer / ".gitignore").write_text(".mesh/\n.dagster/\n__pycache__/\n")
    write_dg_project(producer / "domains/shop", "shop")  # its code location, package shop_domain
    git(producer, "init", "-q")
    git(producer, "add", "-A")
    git(producer, "commit", "-qm", "shop")

    consumer = make_consumer(tmp_path, registry, [{"port": "shop.order_totals", "major": 1}])
    settings = yaml.safe_load((consumer / "mesh.yaml").read_text())
    settings["storage_root"] = str(producer / ".mesh/lake")  # the producer's warehouse and SQLite catalog
    (consumer / "mesh.yaml").write_text(yaml.safe_dump(settings))
    (consumer / ".gitignore").write_text(".mesh/\n.dagster/\n__pycache__/\n")
    write_dg_project(consumer / "domains/billing", "billing")
    git(consumer, "init", "-q")
    git(consumer, "add", "-A")
    git(consumer, "commit", "-qm", "billing")
    assert not (consumer / "domains/shop").exists()

    # the consumer cannot resolve shop before it is published
    before = mesh(consumer, "validate")
    assert before.returncode == 1 and "no domain 'shop'" in before.stderr

    ran = mesh(producer, "run")
    assert ran.returncode == 0, ran.stderr
    published = mesh(producer, "publish", "--format", "json")
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)[0] == {"domain": "shop", "what": "contract", "name": "orders",
                                               "version": "1.0.0", "outcome": "registered"}

    validated = mesh(consumer, "validate")
    assert validated.returncode == 0, validated.stderr
    platform_loads_both_locations(tmp_path / "platform", {"shop": producer, "billing": consumer})
    assert mesh(consumer, "publish").returncode == 0
    consumed = mesh(consumer, "run")
    assert consumed.returncode == 0, consumed.stderr + consumed.stdout
    assert "billing/gold/invoices" in consumed.stdout and "shop/" not in consumed.stdout  # only its own assets
    rows = mesh(consumer, "sql", "select customer, gross from billing.invoices order by customer", "--format",
                "json", "--domain", "billing")
    assert rows.returncode == 0, rows.stderr
    totals_ = mesh(producer, "sql", "select customer, total * 1.2 as gross from shop.order_totals order by customer",
                   "--format", "json")
    assert json.loads(rows.stdout) == json.loads(totals_.stdout) and json.loads(rows.stdout)

    # a breaking change in the producer's repository: dropping the column the consumer reads
    edit(producer, lambda d: totals(d)["properties"].pop())
    broken = mesh(producer, "validate")
    assert broken.returncode == 1
    assert "consumer billing (product invoices, team billing-team)" in broken.stderr and "column total" in \
        broken.stderr
    assert mesh(producer, "publish").returncode == 1

    # a compatible change: a column added, a minor version
    git(producer, "checkout", "--", str(ORDERS))
    edit(producer, lambda d: (d.update(version="1.1.0"), totals(d)["properties"].append(
        {"name": "orders", "logicalType": "integer", "physicalType": "BIGINT", "description": "Orders counted."})))
    (producer / "domains/shop/sql/gold/order_totals.sql").write_text(
        "select customer, sum(amount) as total, count(*) as orders from silver.orders group by customer")
    compatible = mesh(producer, "validate", "--base", "HEAD")
    assert compatible.returncode == 0, compatible.stderr
    assert mesh(producer, "publish").returncode == 0
    impact = mesh(producer, "impact", "shop.order_totals.total", "--format", "json")
    assert [(r["domain"], r["table"], r["column"], r["team"]) for r in json.loads(impact.stdout)] == [
        ("billing", "gold.invoices", "gross", "billing-team")]


def test_a_scaffolded_domain_repository_passes_its_own_ci(light_venv: Path, tmp_path: Path) -> None:
    """`mesh new domain --repo` in a clean install of the framework: the repository it writes is a git repository
    whose ci.sh installs it, validates it, runs its tests and publishes its port to the registry."""
    env = {**os.environ, "PATH": f"{light_venv / 'bin'}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200",
           "PYTHON": str(light_venv / "bin" / "python")}
    for leaked in ("PYTHONPATH", "DAGSTER_HOME", "MESH_STORAGE_ROOT", "MESH_LANDING_ZONE", "MESH_REGISTRY"):
        env.pop(leaked, None)
    repo, registry = tmp_path / "weather-domain", tmp_path / "registry"
    created = subprocess.run([str(light_venv / "bin" / "mesh"), "new", "domain", "weather", "--team", "weather-team",
                              "--member", "ana@example.com", "--repo", str(repo), "--registry", str(registry)],
                             cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert created.returncode == 0, created.stdout + created.stderr
    pyproject = (repo / "pyproject.toml").read_text()
    assert 'dependencies = ["mesh-assets>=0.1.0,<0.2"]' in pyproject and "[tool.dg.project]" in pyproject
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "weather")
    assert "tests/data/example/example.csv" in subprocess.run(["git", "-C", str(repo), "ls-files"],
                                                              capture_output=True, text=True).stdout
    try:
        ci = subprocess.run(["./ci.sh", "--publish"], cwd=repo, capture_output=True, text=True, env=env, timeout=900,
                            check=False)
        assert ci.returncode == 0, ci.stdout + ci.stderr
        assert "2 passed" in ci.stdout and "0 error(s)" in ci.stdout + ci.stderr
        assert (registry / "contracts/weather/example/0.1.0.json").is_file()
        assert not (repo / ".mesh/lake").exists()  # the tests ran in their own lake
    finally:  # the clean venv is shared: leave it as it was
        subprocess.run([env["PYTHON"], "-m", "pip", "uninstall", "--quiet", "--yes", "weather-domain"],
                       capture_output=True, check=False)
