"""Domain repositories joined by the contract registry, end to end (docs/domain-repos.md): a producer and a consumer
in two git repositories, each its own working directory, mesh folder and Dagster instance, sharing one registry
folder and the producer's Iceberg catalog and warehouse. Every step is the ``mesh`` command in a child process.
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


def test_a_consumer_repository_reads_a_producer_repository_through_the_registry(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    producer = make_tiny_root(tmp_path)  # domain shop, port shop.order_totals; its lake holds the catalog
    (producer / "mesh.yaml").write_text((producer / "mesh.yaml").read_text() + f"registry: {{path: {registry}}}\n")
    (producer / ".gitignore").write_text(".mesh/\n.dagster/\n")
    git(producer, "init", "-q")
    git(producer, "add", "-A")
    git(producer, "commit", "-qm", "shop")

    consumer = make_consumer(tmp_path, registry, [{"port": "shop.order_totals", "major": 1}])
    settings = yaml.safe_load((consumer / "mesh.yaml").read_text())
    settings["storage_root"] = str(producer / ".mesh/lake")  # the producer's warehouse and SQLite catalog
    (consumer / "mesh.yaml").write_text(yaml.safe_dump(settings))
    (consumer / ".gitignore").write_text(".mesh/\n.dagster/\n")
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
