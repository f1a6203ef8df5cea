"""Light installs (mesh_assets/extras.py): the DuckDB mesh imports none of the extras (Spark, dbt, Postgres), and a
feature whose extra is missing fails with a message naming it.

The tests of a light install run in a child process each, where the extras are hidden by an import hook (this
process has imported them already); all but the first are in the slow tier (a child process imports the
framework, about 3 s). The slowest installs the package with no extra into a clean venv, as a user would, runs the
tutorial's domain there and the reference mesh, whose dbt steps fail naming the extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mesh_assets.extras import EXTRAS, MissingExtra, missing, require, require_installed

REPO = Path(__file__).parent.parent
# What no DuckDB-only code location may import: the extras' packages, Ibis's pyspark backend, and the framework's
# modules that wrap them.
HEAVY = ("pyspark", "py4j", "dagster_pyspark", "dbt", "dagster_dbt", "dagster_postgres", "psycopg2",
         "ibis.backends.pyspark", "mesh_assets.engine.spark_engine", "mesh_assets.engine.dbt_engine",
         "mesh_assets.orchestration.dbt_assets")
# Run first in a child: every module of the extras (and their packages) cannot be imported, as in a venv without
# them. Modules are matched by their top-level package.
HIDE_EXTRAS = """
import importlib.abc, sys
class HideExtras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"pyspark", "py4j", "dagster_pyspark", "dbt", "dagster_dbt", "dagster_postgres"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, HideExtras())
"""
LOADED_HEAVY = f"""
import sys
print("heavy:", sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in {HEAVY!r})))
"""


def child(code: str, tmp_path: Path, **env: str) -> str:
    """Run ``code`` in a child Python with this repository first on its path; its output and error output (it
    must exit 0)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "MESH_STORAGE_ROOT": str(tmp_path / "lake"),
                               **env}, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_import_and_a_duckdb_domain_load_no_extra(tiny_root: Path, tmp_path: Path) -> None:
    out = child(f"""
import mesh_assets
{LOADED_HEAVY}
defs = mesh_assets.build_domain_definitions({str(tiny_root / "domains" / "shop")!r})
assert "spark" not in defs.resources, defs.resources
mesh = mesh_assets.load_mesh({str(tiny_root)!r})
mesh_assets.build_mesh_definitions(mesh)
{LOADED_HEAVY}
""", tmp_path)
    assert [line for line in out.splitlines() if line.startswith("heavy:")] == ["heavy: []", "heavy: []"]


@pytest.mark.slow  # a child process
def test_spark_is_imported_only_for_a_table_on_spark(tiny_root: Path, tmp_path: Path) -> None:
    out = child(f"""
import mesh_assets
defs = mesh_assets.build_domain_definitions({str(tiny_root / "domains" / "shop")!r})
assert "spark" in defs.resources
{LOADED_HEAVY}
""", tmp_path, MESH_ENGINE="spark")
    assert "'dagster_pyspark'" in out and "'mesh_assets.engine.spark_engine'" in out


@pytest.mark.slow  # a child process
def test_reference_dbt_step_fails_naming_the_extra(tmp_path: Path) -> None:
    out = child(HIDE_EXTRAS + f"""
import dagster as dg
import mesh_assets
defs = mesh_assets.build_domain_definitions({str(REPO / "domains" / "customers")!r})
key = dg.AssetKey(["customers", "gold", "customer_profile"])
result = dg.materialize([defs.get_assets_def(key)], selection=[key], raise_on_error=False)
assert not result.success
for event in result.all_events:
    if event.is_step_failure:
        print("failure:", event.step_failure_data.user_failure_data.description)
{LOADED_HEAVY}
""", tmp_path)
    failure = next(line for line in out.splitlines() if line.startswith("failure:"))
    assert "customers/gold/customer_profile" in failure and "customer_profile.yaml" in failure
    assert "needs the extra [dbt]" in failure and "pip install 'mesh-assets[dbt]'" in failure
    assert "heavy: []" in out


@pytest.mark.slow  # a child process
def test_spark_table_without_the_extra_loads_and_its_step_names_it(tiny_root: Path, tmp_path: Path) -> None:
    out = child(HIDE_EXTRAS + f"""
import dagster as dg
import mesh_assets
defs = mesh_assets.build_domain_definitions({str(tiny_root / "domains" / "shop")!r})
assert "spark" not in defs.resources
key = dg.AssetKey(["shop", "gold", "order_totals"])
result = dg.materialize([defs.get_assets_def(key)], selection=[key], raise_on_error=False)
for event in result.all_events:
    if event.is_step_failure:
        print("failure:", event.step_failure_data.user_failure_data.description)
""", tmp_path, MESH_ENGINE="spark")
    assert "failure: shop/gold/order_totals" in out
    assert "needs the extra [spark]" in out and "pip install 'mesh-assets[spark]'" in out


@pytest.mark.slow  # a child process
def test_run_on_spark_without_the_extra_stops_at_once(tiny_root: Path, tmp_path: Path) -> None:
    out = child(HIDE_EXTRAS + f"""
from mesh_assets.cli.main import app
try:
    app(["run", "--engine", "spark", "--root", {str(tiny_root)!r}])
except SystemExit as exc:
    print("exit:", exc.code)
""", tmp_path, COLUMNS="300")
    assert "exit: 2" in out
    assert "mesh run --engine spark needs the extra [spark]" in out and "mesh-assets[spark]" in out
    assert not (tiny_root / ".dagster").exists()  # stopped before opening the instance


@pytest.mark.slow  # a child process
def test_postgres_instance_without_the_extra_names_it(tmp_path: Path) -> None:
    out = child(HIDE_EXTRAS + """
from mesh_assets.extras import MissingExtra
from mesh_assets.orchestration.instance_config import get_instance
try:
    get_instance()
except MissingExtra as exc:
    print("error:", exc)
""", tmp_path, MESH_POSTGRES_URL="postgresql+psycopg2://mesh:secret@127.0.0.1:1/mesh", DAGSTER_HOME=str(tmp_path))
    assert "error: MESH_POSTGRES_URL" in out and "pip install 'mesh-assets[postgres]'" in out
    assert "secret" not in out


def test_require_names_the_extra() -> None:
    assert missing("dbt") is None and missing("spark") is None and missing("postgres") is None  # make setup's venv
    with pytest.raises(MissingExtra, match=r"pip install 'mesh-assets\[dbt\]'") as caught:
        require("dbt", "dagster_dbt_not_a_module", "the table t")
    assert str(caught.value).startswith("the table t needs the extra [dbt]")
    assert caught.value.module == "dagster_dbt_not_a_module"
    require_installed("spark", "Spark")  # installed: no error
    with pytest.raises(KeyError):
        require("spaark", "pyspark", "x")
    assert set(EXTRAS) == {"spark", "dbt", "postgres"}


def test_every_extra_is_declared_in_pyproject() -> None:
    """The extras mesh_assets.extras knows are the package's, and ``all`` installs every one of them."""
    text = (REPO / "pyproject.toml").read_text()
    for extra in EXTRAS:
        assert re.search(rf"^{extra} = \[", text, flags=re.MULTILINE), extra
    assert f'all = ["mesh-assets[{",".join(EXTRAS)}]"]' in text


def test_constraints_pin_names_and_versions_only() -> None:
    lines = [line for line in (REPO / "constraints.txt").read_text().splitlines() if not line.startswith("#")]
    assert lines and all(re.fullmatch(r"[a-z0-9][a-z0-9-]*==[A-Za-z0-9.+!-]+", line) for line in lines), lines
    pins = dict(line.split("==") for line in lines)
    assert pins["dagster"] == "1.13.27" and pins["dagster-dbt"] == "0.29.27" and pins["pyiceberg"] == "0.12.0"
    assert pins["dbt-core"].startswith("1.11.")


# --- the clean venv ---------------------------------------------------------------------------------------------

def _site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def _du_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


@pytest.mark.slow  # builds a venv once (about two minutes; reused while constraints.txt and pyproject.toml stay)
def test_clean_install_without_extras(light_venv: Path, tmp_path: Path, tpch_landing: Path) -> None:
    bin_dir = light_venv / "bin"
    site = _site_packages(light_venv)
    installed = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    assert {"dagster", "duckdb", "ibis_framework", "pandera"} <= installed
    assert not installed & {"pyspark", "dagster_pyspark", "dbt_core", "dbt_duckdb", "dagster_dbt",
                            "dagster_postgres", "psycopg2_binary"}, installed
    print(f"site-packages without extras: {_du_mib(site):.0f} MiB; venv {(light_venv / 'complete').read_text()}")
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    env.pop("DAGSTER_HOME", None)
    env.pop("PYTHONPATH", None)

    # the tutorial's domain: inferred from a CSV, run, blocked on bad data, its generated test passing
    text = (REPO / "docs" / "tutorial.md").read_text()
    script = "\n".join(re.findall(r"^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE))
    tutorial = tmp_path / "tutorial"
    tutorial.mkdir()
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tutorial, capture_output=True, text=True, env=env,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "blocked by the check status_valid_values" in done.stdout and "1 passed" in done.stdout

    # the reference mesh: every step but dbt's runs; each dbt step fails naming the extra
    run_env = {**env, "MESH_LANDING_ZONE": str(tpch_landing), "MESH_STORAGE_ROOT": str(tmp_path / "lake"),
               "DAGSTER_HOME": str(tmp_path / "dagster"), "MESH_ENGINE": "duckdb"}
    done = subprocess.run([str(bin_dir / "mesh"), "run"], cwd=REPO, capture_output=True, text=True, env=run_env,
                          timeout=900, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    for table in ("customers/gold/customer_profile", "supply/gold/part_catalog"):
        assert re.search(rf"{table} \(\S+\.yaml\) needs the extra \[dbt\] of mesh-assets", output), output
        assert re.search(rf"│ {table}\s+│ failed", done.stdout), done.stdout
    assert "pip install 'mesh-assets[dbt]'" in output
    assert re.search(r"│ supply/gold/supplier_profile\s+│ materialized", done.stdout), done.stdout
    assert "ModuleNotFoundError" not in output and "ImportError" not in output
