"""A gold table built by a dbt model: its asset through dagster-dbt, and its step (docs/dbt.md).

Load: dagster-dbt builds the model's asset spec and one asset check per dbt test from the manifest
(``build_dbt_specs``, what ``@dbt_assets`` uses), through :class:`MeshDbtTranslator`, which gives the model the
mesh's spec (key ``[domain, gold, table]``, group, owners, contract schema, freshness, automation) and leaves
sources keyed by their ``meta.dagster.asset_key``. The step's asset also carries the contract's checks, so it is
one multi-asset of its own rather than ``@dbt_assets`` itself, which takes no extra checks.

Step: dbt is one more engine of the one write–audit–publish (:class:`DbtEngine`, mesh_assets.engine). Its session
is a DuckDB step whose build (:func:`dbt_build`) runs the model: a private folder per step holds a DuckDB file in
which the model's inputs are views over the snapshots the framework registered (the masked copy where the access
rules mask columns); ``dbt build`` runs the model and its tests there, with a profile written for this step only,
so parallel steps and domains share no DuckDB file and cannot lock each other. The framework then audits and
publishes the built table like any other output: the dbt tests block publishing like the contract's checks.

No ``from __future__ import annotations``: Dagster reads the compute function's annotations at run time.
"""

import contextlib
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
import duckdb
import yaml
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from dagster_dbt.asset_utils import build_dbt_specs

from mesh_assets.contract_model import Table
from mesh_assets.dbt_project import dbt_executable, load_manifest, project_dir, project_yaml_files
from mesh_assets.duckdb_engine import DuckDBEngine, DuckDBStep
from mesh_assets.engine import BuildJob, Output, Sandbox
from mesh_assets.errors import ContractError, MeshError, TransformError, failure_class
from mesh_assets.mesh import Mesh
from mesh_assets.outcomes import CheckOutcome
from mesh_assets.ports import Snapshot
from mesh_assets.step_folders import new_step_folder
from mesh_assets.yaml_source import read_yaml_text

DBT_SELECT_TAG = "dagster_dbt/select"  # the op tag dagster-dbt reads the step's dbt selection from
PROFILE, TARGET = "mesh", "step"
BUILT = "built"  # the catalog the model's DuckDB file is attached as to the step's connection, read-only


class MeshDbtTranslator(DagsterDbtTranslator):
    """Maps the dbt models bound to data contracts to their mesh asset specs (``specs`` by dbt unique id).
    Sources keep dagster-dbt's key, their ``meta.dagster.asset_key``: they are other assets' ports."""

    def __init__(self, specs: Mapping[str, dg.AssetSpec]):
        super().__init__()
        self._mesh_specs = dict(specs)

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None
                       ) -> dg.AssetSpec:
        base = super().get_asset_spec(manifest, unique_id, project)
        spec = self._mesh_specs.get(unique_id)
        if spec is None:
            return base
        dbt_metadata = {k: v for k, v in base.metadata.items() if k.startswith("dagster_dbt/")}
        return spec.merge_attributes(metadata={**dbt_metadata, "dbt_model": unique_id}, kinds={"dbt"})


def model_unique_id(manifest: Mapping[str, Any], table: Table) -> str:
    """The unique id of the model bound to ``table``, in its domain's folder of the manifest.

    Raises:
        MeshError: the manifest has no such model (it is older than the model: run dbt parse again).
    """
    for unique_id, node in manifest.get("nodes", {}).items():
        if (node.get("resource_type") == "model" and node.get("name") == table.dbt_model
                and Path(node.get("original_file_path", "")).parts[1:2] == (table.domain,)):
            return unique_id
    raise MeshError(f"{table.contract_path}: the dbt manifest has no model {table.dbt_model} in "
                    f"models/{table.domain}/; run `make dbt-manifest` (dbt parse) after adding or moving a model")


def dbt_model_asset(mesh: Mesh, table: Table, spec: dg.AssetSpec, check_specs: list[dg.AssetCheckSpec],
                    step: Callable[..., Iterator[Any]], retry_policy: dg.RetryPolicy | None) -> dg.AssetsDefinition:
    """The asset of ``table``, built by its dbt model: ``spec`` and ``check_specs`` are the mesh's (from the
    contract), the dbt tests of the model are added as asset checks, and ``step(context, engine)`` (the
    write–audit–publish step of mesh_assets.assets) runs on a :class:`DbtEngine`, under ``retry_policy`` like
    every step.

    Raises:
        MeshError: no manifest, or the manifest lacks the model.
    """
    manifest = load_manifest(mesh.root)
    unique_id = model_unique_id(manifest, table)
    translator = MeshDbtTranslator({unique_id: spec})
    specs, dbt_checks = build_dbt_specs(translator=translator, manifest=manifest, select=unique_id.split(".")[-1],
                                        exclude="", selector="", io_manager_key=None, project=None)

    @dg.multi_asset(name="__".join(table.key), specs=specs, check_specs=[*check_specs, *dbt_checks],
                    op_tags={DBT_SELECT_TAG: unique_id.split(".")[-1]}, retry_policy=retry_policy,
                    required_resource_keys={"duckdb", "ports"})
    def _dbt_model(context: dg.AssetExecutionContext):
        yield from step(context, DbtEngine(context, mesh, context.resources.duckdb))

    return _dbt_model


class DbtEngine:
    """dbt as an engine of write–audit–publish (mesh_assets.engine.Engine): a DuckDB step session whose build
    runs the table's dbt model (:class:`DbtStep`). ``duckdb`` gives the connections' limits; the pointer records
    ``duckdb`` as the writer (dbt-duckdb)."""

    name: ClassVar[str] = "duckdb"

    def __init__(self, context: dg.AssetExecutionContext, mesh: Mesh, duckdb: DuckDBEngine):
        self.context, self.mesh, self.duckdb = context, mesh, duckdb

    @contextlib.contextmanager
    def open(self, table: Table, sandbox: Sandbox) -> Iterator["DbtStep"]:
        """A DuckDB step session confined to ``sandbox`` and the step's private folder (mesh_assets.step_folders:
        owned by this process, out of every other sandbox's reach; the folders of killed steps are cleaned
        first), which is deleted afterwards unless the engine records its statements for ``mesh bench``."""
        folder = new_step_folder(self.mesh.settings, f"dbt-{table.dbt_model}-")
        try:
            con = self.duckdb.connect(sandbox.storage_root, allowed_directories=[*sandbox.directories, str(folder)],
                                      allowed_files=sandbox.files, spill_directory=sandbox.spill)
            try:
                yield DbtStep(self, con, folder)
            finally:
                self.duckdb.close(con, "__".join(table.key))
        finally:
            if not self.duckdb.query_log:  # `mesh bench` replays the step's statements, which attach the model
                shutil.rmtree(folder, ignore_errors=True)


class DbtStep(DuckDBStep):
    """A DuckDB step session whose :meth:`build` runs the dbt model; the relations registered for the model's
    inputs become views in the model's DuckDB file."""

    def __init__(self, engine: DbtEngine, con: duckdb.DuckDBPyConnection, folder: Path):
        super().__init__(engine.duckdb, con)
        self.dbt, self.folder = engine, folder
        self.registered: dict[tuple[str, str], Snapshot] = {}

    def register(self, schema: str, name: str, snapshot: Snapshot) -> None:
        super().register(schema, name, snapshot)
        self.registered[(schema, name)] = snapshot

    def build(self, job: BuildJob) -> Output:
        """Run the model and its tests (:func:`dbt_build`) and attach its DuckDB file read-only: the output is
        the model's table, the dbt tests' results are the build's outcomes."""
        inputs = [(ref.schema, ref.table, self.registered[(ref.schema, ref.table)]) for ref in job.inputs]
        database, outcomes, metadata = dbt_build(self.dbt.context, self.dbt.mesh, job.table, self.folder, inputs,
                                                 self.engine)
        self.con.execute(f"ATTACH '{str(database).replace(chr(39), chr(39) * 2)}' AS {BUILT} (READ_ONLY)")
        return Output(f'SELECT * FROM {BUILT}.main."{job.table.dbt_model}"', job.sql, outcomes=tuple(outcomes),
                      metadata=metadata)


def dbt_build(context: dg.AssetExecutionContext, mesh: Mesh, table: Table, folder: Path,
              inputs: list[tuple[str, str, Snapshot]], engine: DuckDBEngine
              ) -> tuple[Path, list[CheckOutcome], dict[str, Any]]:
    """Build ``table``'s dbt model and its tests in a DuckDB file in the step's private ``folder``, whose views
    ``<schema>.<name>`` are over the ``inputs``' snapshots; return the file, the dbt tests' outcomes and the
    materialization metadata (``dbt_seconds``).

    Raises:
        TransformError: the model fails (dbt's message, file and fix).
        TransientError: the model failed on I/O, a lost connection or memory (mesh_assets.errors.is_transient).
    """
    database = folder / f"{PROFILE}.duckdb"
    allowed = [str(folder)]
    con = duckdb.connect(str(database))
    try:
        for schema, name, snapshot in inputs:
            engine.register_view(con, schema, name, snapshot.glob)
            allowed.append(snapshot.path)
    finally:
        con.close()
    _write_profile(folder, database, engine, allowed)
    for path in project_yaml_files(mesh.root):  # what dbt is about to read: no alias bomb, no huge file
        try:
            read_yaml_text(path)
        except ContractError as exc:
            raise TransformError(f"{'/'.join(table.key)}: the dbt project cannot be read safely: {exc}") from None
    dbt = DbtCliResource(project_dir=str(project_dir(mesh.root)), profiles_dir=str(folder),
                         dbt_executable=dbt_executable())
    invocation = dbt.cli(["build"], context=context, raise_on_error=False, target_path=folder / "target")
    outcomes = [_outcome(event) for event in invocation.stream() if isinstance(event, dg.AssetCheckResult)]
    try:
        results = invocation.get_artifact("run_results.json").get("results", [])
    except (OSError, ValueError):  # dbt stopped before running anything (project or profile error)
        results = []
    model = next((r for r in results if r.get("unique_id", "").startswith("model.")), None)
    origin = str(table.transform.relative_to(mesh.root)) if table.transform else table.dbt_model
    if model is None or model.get("status") != "success":
        message = (model or {}).get("message") or _log_tail(folder / "target")
        raise failure_class(message)(f"{'/'.join(table.key)}: dbt model {table.dbt_model} ({origin}) failed: "
                                     f"{message}. Nothing was published; the previous snapshot stays current")
    return database, outcomes, {"dbt_seconds": round(float(model.get("execution_time") or 0), 3)}


def _write_profile(folder: Path, database: Path, engine: DuckDBEngine, allowed: list[str]) -> None:
    """The step's dbt profile: its DuckDB file, the engine's limits, the mesh's plugin (file lockdown)."""
    config = {k: v for k, v in {"threads": engine.threads, "memory_limit": engine.memory_limit,
                                "temp_directory": engine.temp_directory}.items() if v}
    plugin = {"allowed_directories": allowed}
    profile = {PROFILE: {"target": TARGET, "outputs": {TARGET: {
        "type": "duckdb", "path": str(database), "schema": "main", "threads": 1, "config_options": config,
        "plugins": [{"module": "mesh_assets.dbt_plugin", "config": plugin}]}}}}
    (folder / "profiles.yml").write_text(yaml.safe_dump(profile), encoding="utf-8")


def _outcome(event: dg.AssetCheckResult) -> CheckOutcome:
    """A dbt test's result as a check outcome of the step (blocking when the test's severity is error)."""
    blocking = event.severity == dg.AssetCheckSeverity.ERROR
    return CheckOutcome(event.check_name or "", event.passed, blocking, "error" if blocking else "warning",
                        event.description or f"dbt test {event.check_name}", dict(event.metadata))


def _log_tail(target: Path) -> str:
    """The last error lines of dbt's log in ``target`` (when run_results.json says nothing)."""
    log = target / "dbt.log"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:] if log.is_file() else []
    return " ".join(lines) or "dbt did not run; see the step's log"
