"""Self-serve: `mesh new domain` and `mesh new product --from` from an empty folder to a published port whose
inferred checks pass and then block bad data; inference reads a bounded sample; docs/tutorial.md runs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml
from typer.testing import CliRunner

import conftest
from mesh_assets.cli.inference import SAMPLE_ROWS, infer
from mesh_assets.cli.main import app
from mesh_assets.cli.scaffold import create_domain, create_domain_repo, create_product
from mesh_assets.cli.validate import validate
from mesh_assets.contract.mesh import load_mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.orchestration.runner import run_mesh

BIN = Path(sys.executable).parent
REPO = Path(__file__).parent.parent
STATUSES = ("open", "shipped", "returned")


def mesh_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    return conftest.mesh_cli(root, *args, env={"DAGSTER_HOME": str(root / ".dagster")})


def empty_mesh(tmp_path: Path) -> Path:
    root = tmp_path / "mesh"
    (root / "domains").mkdir(parents=True)
    (root / "mesh.yaml").write_text("name: self-serve\n")
    return root


def orders_csv(path: Path, rows: int = 40) -> Path:
    """``rows`` orders: unique id, a status of three values, amounts with cents, dates."""
    lines = ["order_id,status,amount,ordered_on,channel"]
    lines += [f"{i},{STATUSES[i % 3]},{(i * 37 % 1000) + 0.25:.2f},2026-10-{1 + i % 28:02d},"
              f"{'web' if i % 2 else 'shop'}" for i in range(1, rows + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def check_results(root: Path) -> dict[str, tuple[bool, dict]]:
    """``asset:check`` → (passed, metadata) of the latest run recorded at ``<root>/.dagster``."""
    with dg.DagsterInstance.from_config(str(root / ".dagster")) as instance:
        run = instance.get_runs(limit=1)[0]
        out = {}
        for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
            data = entry.dagster_event.event_specific_data
            out[f"{data.asset_key.to_user_string()}:{data.check_name}"] = (
                data.passed, {k: v.value for k, v in data.metadata.items()})
        return out


@pytest.mark.slow  # `mesh` commands in child processes, run twice
def test_new_domain_and_product_publish_then_block_bad_data(tmp_path: Path) -> None:
    root = empty_mesh(tmp_path)
    source = orders_csv(tmp_path / "orders.csv")
    created = mesh_cli(root, "new", "domain", "shop", "--team", "shop-team", "--member", "ana@example.com")
    assert created.returncode == 0, created.stderr
    assert mesh_cli(root, "validate").returncode == 0
    made = mesh_cli(root, "new", "product", "shop", "orders", "--from", str(source))
    assert made.returncode == 0, made.stderr
    assert "primary key: order_id" in made.stdout and "valid values of status" in made.stdout

    contract = yaml.safe_load((root / "domains/shop/products/orders.yaml").read_text())
    bronze = {p["name"]: p for p in contract["schema"][0]["properties"]}
    assert "properties" not in contract["schema"][2]  # gold inherits bronze's columns
    assert bronze["order_id"]["primaryKey"] and bronze["order_id"]["logicalType"] == "integer"
    assert bronze["amount"]["physicalType"] == "DECIMAL(18,2)"  # the name says money
    amount_range = bronze["amount"]["quality"][0]
    assert amount_range["severity"] == "warning" and "logicalTypeOptions" not in bronze["amount"]
    assert amount_range["query"] == 'SELECT count(*) FROM {object} WHERE "amount" < -446 OR "amount" > 1481'
    assert bronze["ordered_on"]["logicalType"] == "date" and bronze["ordered_on"]["required"]
    assert bronze["status"]["quality"][0]["arguments"]["validValues"] == sorted(STATUSES)
    assert bronze["status"]["quality"][0]["severity"] == "warning"
    assert bronze["status"]["examples"] == sorted(STATUSES)
    assert "all 40 records" in contract["description"]["purpose"]
    validated = mesh_cli(root, "validate", "--format", "json")
    assert json.loads(validated.stdout)["errors"] == 0, validated.stdout

    ran = mesh_cli(root, "run", "--domain", "shop")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    checks = check_results(root)
    assert checks and all(passed for passed, _ in checks.values()), checks
    assert {"shop/gold/orders:primary_key", "shop/gold/orders:status_valid_values",
            "shop/gold/orders:amount_range", "shop/bronze/raw_orders:amount_range"} <= set(checks)
    port = PortStorage(root=load_mesh(root).settings.storage_url).port(("shop", "gold", "orders"))
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{port.current_snapshot().glob}')").fetchall() == [(40,)]
    published = port.current_snapshot().id

    with (root / ".mesh/landing/shop/orders/orders.csv").open("a") as landed:
        landed.write("41,lost,10.00,2026-10-30,web\n40,open,10.00,2026-10-30,web\n")
    blocked = mesh_cli(root, "run", "--domain", "shop")
    assert blocked.returncode == 1
    assert re.search(r"shop/bronze/raw_orders\s.*failed.*primary_key", blocked.stdout), blocked.stdout
    assert "blocking check(s) failed: primary_key (1)" in blocked.stderr
    checks = check_results(root)
    passed, metadata = checks["shop/bronze/raw_orders:status_valid_values"]
    assert not passed and metadata["failing_rows"] == 1  # recorded, as a warning that blocked nothing
    assert port.current_snapshot().id == published


@pytest.mark.slow  # a pytest session in a child process
def test_new_domain_files_workspace_and_generated_test(tmp_path: Path) -> None:
    root = empty_mesh(tmp_path)
    (root / "workspace.yaml").write_text("# our locations\nload_from:\n  # the first\n"
                                         "  - python_module: {module_name: domains.a.definitions, location_name: a,"
                                         " working_directory: .}\n")
    before = (root / "workspace.yaml").read_text()
    create_domain(root, "billing", "billing-team", "Invoices.", ["ben@example.com", "@bo"])
    folder = root / "domains" / "billing"
    assert {p.name for p in folder.iterdir()} >= {"dg.toml", "billing_domain", "domain.yaml", "products", "sql",
                                                  "README.md"}
    assert (folder / "sql" / "silver").is_dir() and (folder / "sql" / "gold").is_dir()
    assert 'root_module = "billing_domain"' in (folder / "dg.toml").read_text()
    assert "dg.load_from_defs_folder" in (folder / "billing_domain" / "definitions.py").read_text()
    defs_yaml = yaml.safe_load((folder / "billing_domain" / "defs" / "data_products" / "defs.yaml").read_text())
    assert defs_yaml["type"] == "mesh_assets.DataProductsComponent"
    assert "mesh new product billing" in (folder / "README.md").read_text()
    descriptor = yaml.safe_load((folder / "domain.yaml").read_text())
    assert descriptor["team"] == "billing-team" and descriptor["members"] == ["ben@example.com", "@bo"]
    after = (root / "workspace.yaml").read_text()
    assert after == before + ("  - python_module: {module_name: billing_domain.definitions, location_name: "
                              "billing, working_directory: domains/billing}\n")
    dg_workspace = tomllib.loads((root / "dg.toml").read_text())
    assert dg_workspace["directory_type"] == "workspace"
    assert dg_workspace["workspace"]["projects"] == [{"path": "domains/billing"}]
    create_domain(root, "audit", "audit-team", "Audits.", ["ann@example.com"])
    assert (root / "dg.toml").read_text().startswith("# The dg workspace")  # appended, comments kept
    assert [p["path"] for p in tomllib.loads((root / "dg.toml").read_text())["workspace"]["projects"]] == [
        "domains/billing", "domains/audit"]
    generated = subprocess.run([str(BIN / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                "tests/test_domain_billing.py"], cwd=root, capture_output=True, text=True,
                               timeout=300, check=False)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    assert "1 passed" in generated.stdout


@pytest.mark.parametrize(("args", "says"), [
    (["new", "domain", "Shop-Orders", "--team", "t"], "not a valid domain name: use snake_case"),
    (["new", "domain", "x" * 64, "--team", "t"], "at most 63 characters"),
    (["new", "domain", "select", "--team", "t"], "reserved SQL word"),
    (["new", "domain", "shop", "--team", "t"], "domain 'shop' already exists"),
    (["new", "domain", "other", "--team", " "], "--team must name the owner team"),
    (["new", "domain", "other", "--team", "t", "--member", "ana"], "--member 'ana' is not an identity"),
    (["new", "domain", "other", "--team", "t", "--registry", "s3://b/r"], "--registry goes with --repo"),
    (["new", "domain", "other", "--team", "t", "--member", "a@example.com", "--repo", "{root}"],
     "already exists and is not an empty folder"),
    (["new", "product", "nowhere", "orders", "--from", "x.csv"], "create it first: mesh new domain nowhere"),
    (["new", "product", "shop", "orders", "--from", "missing/*.csv"], "no file matches --from missing/*.csv"),
    (["new", "product", "shop", "Orders", "--from", "x.csv"], "not a valid product name"),
    (["new", "product", "shop", "bad_header", "--from", "{bad}"],
     ("'Order Id', 'order' are not snake_case or are reserved SQL words; rename them in the file's header "
      "(e.g. 'order_id', 'order_value')")),
    (["new", "product", "shop", "notes", "--from", "{txt}"], "cannot tell the format"),
])
def test_bad_requests_are_refused_with_the_fix(tmp_path: Path, args: list[str], says: str) -> None:
    root = empty_mesh(tmp_path)
    create_domain(root, "shop", "shop-team")
    (tmp_path / "bad.csv").write_text("Order Id,order\n1,2\n")
    (tmp_path / "notes.md").write_text("hello\n")
    args = [a.format(bad=tmp_path / "bad.csv", txt=tmp_path / "notes.md", root=root) for a in args]
    result = CliRunner().invoke(app, [*args, "--root", str(root)], env={"COLUMNS": "300"})
    assert result.exit_code == 2, result.output
    assert says in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output
    assert not (root / "domains" / "shop" / "products" / "bad_header.yaml").exists()


def test_new_domain_repository_is_a_mesh_a_project_and_a_code_location(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repo, registry = tmp_path / "weather-domain", tmp_path / "registry"
    created = create_domain_repo(repo, "weather", "weather-team", members=["ana@example.com"],
                                 registry=str(registry))
    assert {"pyproject.toml", "mesh.yaml", "ci.sh", "README.md", "domains/weather/domain.yaml",
            "domains/weather/products/example.yaml", "tests/test_weather_domain.py",
            "weather_domain/defs/data_products/defs.yaml"} <= set(created.files)
    project = tomllib.loads((repo / "pyproject.toml").read_text())
    assert [d.split(">=")[0] for d in project["project"]["dependencies"]] == ["mesh-assets"]
    assert project["tool"]["dg"]["project"]["root_module"] == "weather_domain"
    assert project["tool"]["dagster"] == {"module_name": "weather_domain.definitions", "code_location_name": "weather"}
    mesh = load_mesh(repo)
    assert mesh.domain_names == ["weather"] and mesh.domain("weather").team == "weather-team"
    assert Path(mesh.registry.url) == registry
    assert validate(repo).errors == []
    assert os.access(repo / "ci.sh", os.X_OK)
    assert subprocess.run(["bash", "-n", str(repo / "ci.sh")], check=False).returncode == 0
    monkeypatch.syspath_prepend(str(repo))  # what ci.sh's editable install does
    defs = dg.load_from_defs_folder(path_within_project=repo)
    keys = {tuple(k.path) for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {("weather", "bronze", "raw_example"), ("weather", "gold", "example")} <= keys


@pytest.mark.parametrize("fmt", ["parquet", "json"])
def test_parquet_and_json_sources_end_to_end(tmp_path: Path, fmt: str, instance: dg.DagsterInstance) -> None:
    root = empty_mesh(tmp_path)
    source = tmp_path / f"orders.{fmt}"
    duckdb.sql(f"COPY (SELECT * FROM read_csv('{orders_csv(tmp_path / 'o.csv')}')) TO '{source}'")
    create_domain(root, "shop", "shop-team")
    create_product(root, "shop", "orders", str(source))
    contract = yaml.safe_load((root / "domains/shop/products/orders.yaml").read_text())
    assert contract["schema"][0]["customProperties"][1]["value"] == {"path": f"shop/orders/*.{fmt}", "format": fmt}
    summary = run_mesh(load_mesh(root), instance, ["shop"])
    assert summary.success, [(a.key, a.status, a.blocking) for a in summary.assets]
    assert {a.key: a.rows for a in summary.assets}["shop/gold/orders"] == 40
    # a typed source has no record-level rejects: a value that does not cast fails the step, naming the file
    bad = root / ".mesh/landing/shop/orders" / f"more.{fmt}"
    duckdb.sql(f"COPY (SELECT 'x' AS order_id, 'open' AS status, 1.5 AS amount, DATE '2026-10-01' AS ordered_on, "
               f"'web' AS channel) TO '{bad}'")
    summary = run_mesh(load_mesh(root), instance, ["shop"])
    assert not summary.success
    assert {a.key: a.status for a in summary.assets}["shop/bronze/raw_orders"] == "failed"


def test_inference_of_a_large_file_reads_a_bounded_sample(tmp_path: Path) -> None:
    big = tmp_path / "events.csv"
    duckdb.sql(f"COPY (SELECT i AS event_id, ['new', 'paid', 'void'][1 + i % 3] AS status, "
               f"round((i % 100000) / 100.0, 2) AS amount, DATE '2024-01-01' + (i % 365)::INT AS event_date, "
               f"repeat('x', 80) AS note FROM range(1, 2000001) t(i)) TO '{big}' (HEADER)")
    size_mb = big.stat().st_size / 2**20
    # peak RSS of a fresh process: imports first, then the inference; loading the file whole takes > 2 × its size
    script = ("import resource; from mesh_assets.cli.inference import infer; "
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
              f"i = infer([{str(big)!r}]); "
              "print(i.rows, i.sampled, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)")
    done = subprocess.run([str(BIN / "python"), "-c", script], capture_output=True, text=True, timeout=300,
                          cwd=REPO, check=False)
    rows, sampled, grown_mb = done.stdout.split()
    assert (int(rows), sampled) == (SAMPLE_ROWS, "True"), done.stderr
    assert int(grown_mb) < min(200, size_mb), (grown_mb, size_mb)

    inference = infer([str(big)], sample_rows=1000)
    assert inference.sampled and inference.rows == 1000
    status = next(c for c in inference.columns if c.name == "status")
    amount = next(c for c in inference.columns if c.name == "amount")
    assert status.valid_values == ["new", "paid", "void"] and amount.minimum is None  # no range from a sample
    root = empty_mesh(tmp_path)
    create_domain(root, "events", "ops")
    create_product(root, "events", "events", str(big), sample_rows=1000)
    contract = yaml.safe_load((root / "domains/events/products/events.yaml").read_text())
    assert "Inferred from the first 1,000 records only" in contract["description"]["purpose"]
    assert contract["schema"][0]["properties"][1]["quality"][0]["severity"] == "warning"


def test_composite_key_and_no_key(tmp_path: Path) -> None:
    pairs = tmp_path / "stock.csv"
    pairs.write_text("warehouse,sku,qty\n" + "".join(f"w{w},s{s},{w * s}\n" for w in range(3) for s in range(5)))
    assert infer([str(pairs)]).primary_key == ["warehouse", "sku"]
    dupes = tmp_path / "log.csv"
    dupes.write_text("level,text\ninfo,a\ninfo,a\nwarn,b\n")
    root = empty_mesh(tmp_path)
    create_domain(root, "ops", "ops")
    create_product(root, "ops", "log", str(dupes))
    gold = (root / "domains/ops/sql/gold/log.sql").read_text()
    assert "SELECT DISTINCT" in gold
    assert mesh_cli(root, "validate").returncode == 0


def tutorial_script() -> str:
    text = (REPO / "docs" / "tutorial.md").read_text()
    return "\n".join(re.findall(r"^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE))


@pytest.mark.slow  # the whole tutorial, command by command, in child processes
def test_tutorial_commands_run_in_order(tmp_path: Path) -> None:
    script = tutorial_script()
    assert "mesh new domain" in script and "mesh new product" in script and "mesh run" in script
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "200"}
    env.pop("DAGSTER_HOME", None)
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "primary key: order_id" in output
    assert re.search(r"│ open\s+│ 7\s+│ 210\.97", done.stdout), done.stdout
    assert "blocking check(s) failed: status_valid_values (1)" in output
    assert "blocked by the check status_valid_values" in done.stdout
    failed = r"│ status_valid_values\s+│ ERROR\s+│ FAILED\s+│ 1 row, pass rate 95\.24 %"  # of 21 records
    assert re.search(failed, done.stdout), done.stdout
    assert "a blocking check failed" in done.stdout
    assert re.search(r"│ 21\s+│", done.stdout), done.stdout
    assert "1 passed" in done.stdout
