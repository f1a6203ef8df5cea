"""Gold tables built by dbt models (docs/dbt.md): bound to their data contracts at load, audited and published
like any other asset, checked by ``mesh validate``, and safe to run for several domains at once.

The reference mesh runs once per test session at TPC-H SF 0.01 (tests/conftest.py); this module's tests run
into a copy of its lake, each with an instance of its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from conftest import ReferenceRun, restored
from mesh_assets import load_mesh
from mesh_assets.cli.validate import validate
from mesh_assets.contract import dbt_project
from mesh_assets.contract.dbt_project import parse_project
from mesh_assets.engine.ports import Port
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.definitions import build_domain_definitions, build_mesh_definitions
from mesh_assets.orchestration.freshness import freshness_policy

pytestmark = pytest.mark.slow  # an integration tier: `make test-fast` leaves it out

REPO = Path(__file__).parent.parent
PROFILE = ("customers", "gold", "customer_profile")
CATALOG = ("supply", "gold", "part_catalog")


def _dbt_job(domain: str, key: tuple[str, str, str]) -> dg.JobDefinition:
    """A job of ``domain``'s code location materializing its dbt asset ``key``."""
    defs = build_domain_definitions(REPO / "domains" / domain)
    job = dg.define_asset_job(f"{domain}_dbt", selection=[dg.AssetKey(list(key))])
    return dg.Definitions(assets=defs.assets, resources=defs.resources, jobs=[job]).resolve_job_def(job.name)


def dbt_job(domain: str) -> dg.JobDefinition:
    """The job of ``domain``'s dbt asset (rebuilt in each step process by the multiprocess executor)."""
    return _dbt_job(domain, {"customers": PROFILE, "supply": CATALOG}[domain])


@pytest.fixture(scope="module")
def dbt_run(reference_run: ReferenceRun, tmp_path_factory: pytest.TempPathFactory):
    """The reference run the test session shares (its dbt models included): its summary and instance (read
    only), and its lake, which this module's tests publish into, restored when they are done."""
    with restored(reference_run.lake) as lake:
        yield reference_run.summary, reference_run.instance, lake


@pytest.fixture(autouse=True)
def _lake(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests using the run read its lake (conftest's autouse fixture unsets the storage root per test)."""
    if "dbt_run" in request.fixturenames:
        lake = request.getfixturevalue("dbt_run")[2]
        for name, value in request.getfixturevalue("reference_run").env(lake).items():
            monkeypatch.setenv(name, value)


def _asset(defs: dg.Definitions, key: tuple[str, str, str]) -> dg.AssetsDefinition:
    return next(a for a in defs.assets if dg.AssetKey(list(key)) in a.keys)  # type: ignore[union-attr]


def test_dbt_gold_assets_carry_the_contract_checks_freshness_owners_and_schema() -> None:
    mesh = load_mesh(REPO)
    for key, sources, dbt_tests in [
        (PROFILE, {("customers", "silver", "customers"), ("customers", "gold", "nations")},
         {"unique_customer_profile_c_custkey", "not_null_customer_profile_c_custkey"}),
        (CATALOG, {("supply", "silver", "parts"), ("supply", "silver", "part_suppliers")},
         {"unique_part_catalog_p_partkey"}),
    ]:
        domain = mesh.domain(key[0])
        table = domain.table(key[1], key[2])
        assert table is not None and table.dbt_model == key[2]
        asset = _asset(build_domain_definitions(domain.path), key)
        spec = asset.specs_by_key[dg.AssetKey(list(key))]
        checks = {c.name: c for c in asset.check_specs}
        assert {"schema", *(r.name for r in table.rules)} | dbt_tests <= set(checks)
        assert all(checks[r.name].blocking == r.blocking for r in table.rules)
        assert spec.freshness_policy == freshness_policy(table, mesh.settings, domain.timezone)
        assert spec.freshness_policy is not None
        assert spec.owners == [f"team:{domain.product_of(table).team}"] and spec.group_name == key[0]
        assert "dbt" in spec.kinds and spec.tags["mesh/layer"] == "gold"
        # dbt sources stay keyed as the ports they read: one lineage graph across domains
        assert {tuple(d.asset_key.path) for d in spec.deps} >= sources
        columns = [(c.name, c.type) for c in spec.metadata["dagster/column_schema"].columns]
        assert columns == [(c.name, c.physical_type) for c in table.columns]


def test_dbt_model_is_audited_and_published_as_a_port_snapshot(dbt_run) -> None:
    summary, instance, lake = dbt_run
    status = {a.key: a.status for a in summary.assets}  # customers' labels read sales, which did not run
    assert status["customers/gold/customer_profile"] == status["supply/gold/part_catalog"] == "materialized"
    event = instance.get_latest_materialization_event(dg.AssetKey(list(PROFILE)))
    metadata = event.asset_materialization.metadata
    current = Port(str(lake), PROFILE).current()
    assert metadata["snapshot"].value == current["snapshot"] and current["rows"] == 1500
    # the shared publishing code wrote its masked copy, for readers without a PII grant
    assert {"c_name", "c_phone", "c_address"} <= set(Port(str(lake), PROFILE).masked_columns(current["snapshot"]))
    assert metadata["dagster/row_count"].value == 1500
    lineage = metadata["dagster/column_lineage"].value.deps_by_column
    assert lineage["r_name"] == [dg.TableColumnDep(asset_key=dg.AssetKey(["customers", "gold", "nations"]),
                                                   column_name="r_name")]
    evaluations = {e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data.passed
                   for e in instance.all_logs(summary.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
                   if e.dagster_event.event_specific_data.asset_key == dg.AssetKey(list(PROFILE))}
    evaluations = {name: evaluations[name] for name in ("unique_customer_profile_c_custkey", "c_mktsegment_valid",
                                                        "schema")}
    assert evaluations == {"unique_customer_profile_c_custkey": True, "c_mktsegment_valid": True, "schema": True}
    # dbt ran on the manifest, without parsing the project again, and its messages are in the step's log
    messages = [e.user_message for e in instance.all_logs(summary.run_id)
                if e.step_key == "customers__gold__customer_profile" and e.user_message]
    assert any(m.startswith("dbt: ") and "mesh_snapshot model main.customer_profile" in m for m in messages), messages
    assert not any("partial parsing" in m.lower() for m in messages), messages
    # the rows were written once, by dbt, into the published snapshot: no DuckDB file, no step folder left
    snapshot = Port(str(lake), PROFILE).current_snapshot()
    assert [p.suffix for p in Path(snapshot.path).iterdir() if p.suffix in {".parquet", ".duckdb"}] == [".parquet"]
    assert not list((REPO / ".mesh" / "steps").glob("dbt-customer_profile-*"))


def test_every_step_and_dbt_parse_use_one_profile() -> None:
    """dbt reuses the parse state only while the profile stays the same: dbt/profiles.yml (used by `dbt parse`)
    is the profile each step writes."""
    assert yaml.safe_load((REPO / "dbt" / "profiles.yml").read_text()) == dbt_project.PROFILE


def test_two_domains_dbt_models_run_in_parallel_multiprocess_runs(dbt_run, instance) -> None:
    """Each step builds its model in a DuckDB file of its own: no "Could not set lock on file". The two runs are
    two processes, as two code locations' runs are, on the same persistent instance."""
    lake = dbt_run[2]
    ref = dg.serialize_value(instance.get_ref())
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the reference mesh's domains.tpch is not installed: the root
    runs = {name: subprocess.Popen([sys.executable, "-c", RUN_SCRIPT, ref, name], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent, env=env)
            for name in ("customers", "supply")}
    outputs = {name: process.communicate(timeout=600) for name, process in runs.items()}
    results = {}
    for name, (out, err) in outputs.items():
        assert runs[name].returncode == 0, err[-3000:]
        run_id, success = out.split()[-2:]
        results[name] = instance.get_run_by_id(run_id)
        assert success == "True", err[-3000:]
    for name, key in (("customers", PROFILE), ("supply", CATALOG)):
        assert Port(str(lake), key).current()["run_id"] == results[name].run_id  # this run published it
    starts = {name: [e.timestamp for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.STEP_START)]
              for name, r in results.items()}
    ends = {name: [e.timestamp for e in instance.all_logs(r.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)]
            for name, r in results.items()}
    assert max(min(s) for s in starts.values()) < min(max(e) for e in ends.values()), "the steps did not overlap"


RUN_SCRIPT = """
import sys
import dagster as dg
from dagster._core.instance import InstanceRef

with dg.DagsterInstance.from_ref(dg.deserialize_value(sys.argv[1], InstanceRef)) as instance:
    job = dg.build_reconstructable_job("test_dbt", "dbt_job", (sys.argv[2],), reconstructor_working_directory=".")
    config = {"execution": {"config": {"multiprocess": {"max_concurrent": 2}}}}
    with dg.execute_job(job, instance, run_config=config) as result:
        print(result.run_id, result.success)
"""


def _mesh_copy(tmp_path: Path) -> Path:
    root = tmp_path / "mesh"
    shutil.copytree(REPO / "domains", root / "domains", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "dbt", root / "dbt", ignore=shutil.ignore_patterns("logs"))
    shutil.copy(REPO / "mesh.yaml", root / "mesh.yaml")
    return root


def test_a_failing_dbt_test_blocks_publishing(dbt_run, instance, tmp_path: Path) -> None:
    lake = dbt_run[2]
    root = _mesh_copy(tmp_path)
    properties = root / "dbt" / "models" / "customers" / "customer_profile.yml"
    properties.write_text(properties.read_text().replace(
        "    data_tests:\n    - unique\n", "    data_tests:\n    - unique\n    - accepted_values:\n"
        "        arguments: {values: [1, 2, 3]}\n", 1))
    parse_project(root)
    before = Port(str(lake), PROFILE).current()["snapshot"]
    job = build_mesh_definitions(load_mesh(root), ["customers"]).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(list(PROFILE))],
                                    raise_on_error=False)
    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == ["accepted_values_customer_profile_c_custkey__1__2__3"]
    assert Port(str(lake), PROFILE).current()["snapshot"] == before  # the previous snapshot stays current


def test_dbt_connection_is_locked_down_to_the_ports_it_reads(dbt_run, instance, tmp_path: Path, monkeypatch
                                                             ) -> None:
    lake = dbt_run[2]
    root = _mesh_copy(tmp_path)
    model = root / "dbt" / "models" / "customers" / "customer_profile.sql"
    model.write_text(model.read_text().replace(
        "    c.c_comment,\n", "    (SELECT max(content) FROM read_text('/etc/passwd')) AS c_comment,\n"))
    with pytest.raises(MeshError, match=r"customer_profile.sql: line \d+: function read_text\(\) is not allowed"):
        build_mesh_definitions(load_mesh(root), ["customers"])
    # were the function allow-list bypassed, the model's connection still reads only the ports it reads
    monkeypatch.setattr("mesh_assets.sql.inputs.check_functions", lambda tree, origin=None: None)  # at load
    monkeypatch.setattr("mesh_assets.engine.write_audit_publish.check_sql", lambda sql, origin=None: None)  # at run
    parse_project(root)  # a step runs the manifest's model
    before = Port(str(lake), PROFILE).current()["snapshot"]
    failures = _profile_step_failures(root, instance)
    assert len(failures) == 1 and "dbt model customer_profile" in failures[0], failures
    assert "/etc/passwd" in failures[0] and "Permission Error" in failures[0], failures[0]
    assert Port(str(lake), PROFILE).current()["snapshot"] == before


def _profile_step_failures(root: Path, instance: dg.DagsterInstance) -> list[str]:
    """Materialize customer_profile (the dbt model) of the mesh at ``root`` into ``instance``; the messages of the
    steps that failed."""
    job = build_mesh_definitions(load_mesh(root), ["customers"]).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(list(PROFILE))],
                                    raise_on_error=False)
    return [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]


def test_a_model_changed_after_the_manifest_is_not_run_and_says_how_to_fix(dbt_run, tmp_path: Path) -> None:
    """A step runs the manifest's model: an edit not yet parsed fails the step with the file and the fix."""
    _, instance, lake = dbt_run
    root = _mesh_copy(tmp_path)
    model = root / "dbt" / "models" / "customers" / "customer_profile.sql"
    model.write_text(model.read_text() + "\n")
    before = Port(str(lake), PROFILE).current()["snapshot"]
    failures = _profile_step_failures(root, instance)
    assert len(failures) == 1 and "customer_profile.sql changed after the dbt manifest" in failures[0], failures
    assert "make dbt-manifest" in failures[0]
    assert Port(str(lake), PROFILE).current()["snapshot"] == before


@pytest.mark.parametrize(("file", "old", "new", "rule", "field", "words"), [
    ("dbt/models/supply/part_catalog.sql", "    p.p_container,\n", "", "dbt/dropped_column", "p_container",
     ["part_catalog", "p_container", "supply/gold/part_catalog"]),
    ("dbt/models/supply/part_catalog.sql", "    p.p_comment,\n", "    p.p_comment,\n    p.p_size * 2 AS twice,\n",
     "dbt/extra_column", "twice", ["part_catalog", "twice"]),
    ("domains/supply/products/part_catalog.yaml", "plus supplier_count and min_supplycost", "plus two offer columns",
     "dbt/contract_sync", "models[part_catalog]", ["part_catalog", "differs from the data contract"]),
    ("dbt/models/supply/_sources.yml", "asset_key: [supply, silver, parts]", "asset_key: [supply, silver, part]",
     "dbt/source", "sources[supply_silver].tables[parts]", ["silver.parts", "supply/silver/parts"]),
])
def test_mesh_validate_finds_a_dbt_model_out_of_line_with_its_contract(
        tmp_path: Path, file: str, old: str, new: str, rule: str, field: str, words: list[str]) -> None:
    root = _mesh_copy(tmp_path)
    path = root / file
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new, 1))
    errors = [f for f in validate(root).errors if f.domain == "supply"]
    assert [(f.rule, f.field) for f in errors] == [(rule, field)], [str(f) for f in errors]
    finding = errors[0]
    assert finding.file is not None and finding.line and finding.fix
    assert all(word in finding.message for word in words), finding.message


def test_a_model_reading_ref_is_refused_with_the_fix(tmp_path: Path) -> None:
    root = _mesh_copy(tmp_path)
    model = root / "dbt" / "models" / "supply" / "part_catalog.sql"
    model.write_text(model.read_text().replace("{{ source('supply_silver', 'parts') }}", "{{ ref('parts') }}"))
    errors = validate(root).errors
    assert any("part_catalog.sql" in f.message and "ref('parts')" in f.message and "source()" in f.message
               for f in errors), [str(f) for f in errors]
