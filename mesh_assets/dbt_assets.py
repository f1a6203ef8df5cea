"""A gold table built by a dbt model: its asset through dagster-dbt, and its step (docs/dbt.md).

Load: dagster-dbt builds the model's asset spec and one asset check per dbt test from the manifest
(``build_dbt_specs``, what ``@dbt_assets`` uses), through :class:`MeshDbtTranslator`, which gives the model the
mesh's spec (key ``[domain, gold, table]``, group, owners, contract schema, freshness, automation) and leaves
sources keyed by their ``meta.dagster.asset_key``. The step's asset also carries the contract's checks, so it is
one multi-asset of its own rather than ``@dbt_assets`` itself, which takes no extra checks.

Step (:func:`dbt_build`): dbt builds the model straight into a new staged snapshot of the port (the
``mesh_snapshot`` materialization, dbt/macros/mesh_snapshot.sql) on an in-memory DuckDB connection of its own, in
which the mesh's plugin registers the model's inputs as views over their ports' current snapshots (the masked copy
where the access rules mask columns) and locks file access down to them; nothing is shared between steps, so
parallel steps and domains cannot lock each other. dbt's tests run on the staged rows. The framework then audits
the staged snapshot in place and publishes it like any other output (``materialize_table``): the dbt tests block
publishing like the contract's checks. Every step uses the same dbt profile, so dbt reuses the parse state of
``dbt parse`` (dbt/target/partial_parse.msgpack) instead of parsing the project again.

No ``from __future__ import annotations``: Dagster reads the compute function's annotations at run time.
"""

import contextlib
import io
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import sqlglot
import yaml
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from dagster_dbt.asset_utils import build_dbt_specs

from mesh_assets.access import runtime_access
from mesh_assets.contracts import Table
from mesh_assets.dbt_plugin import write_step_file
from mesh_assets.dbt_project import PROFILE, dbt_executable, load_manifest, project_dir, project_yaml_files
from mesh_assets.errors import ContractError, MeshError, TransformError, failure_class
from mesh_assets.mesh import Mesh
from mesh_assets.outcomes import CheckOutcome
from mesh_assets.sql_inputs import InputRef
from mesh_assets.sql_functions import FunctionNotAllowed, check_sql
from mesh_assets.step_folders import new_spill_folder, new_step_folder
from mesh_assets.yaml_source import read_yaml_text
from resources import DuckDBEngine, PortStorage

DBT_SELECT_TAG = "dagster_dbt/select"  # the op tag dagster-dbt reads the step's dbt selection from


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
                    inputs: list[InputRef], producers: dict[tuple[str, str, str], Path],
                    step: Callable[..., Iterator[Any]], retry_policy: dg.RetryPolicy | None) -> dg.AssetsDefinition:
    """The asset of ``table``, built by its dbt model: ``spec`` and ``check_specs`` are the mesh's (from the
    contract), the dbt tests of the model are added as asset checks, and ``step`` (the write–audit–publish step
    of mesh_assets.assets) runs with :func:`dbt_build` as its builder, under ``retry_policy`` like every step.

    Raises:
        MeshError: no manifest, or the manifest lacks the model.
    """
    manifest = load_manifest(mesh.root)
    unique_id = model_unique_id(manifest, table)
    translator = MeshDbtTranslator({unique_id: spec})
    specs, dbt_checks = build_dbt_specs(translator=translator, manifest=manifest, select=unique_id.split(".")[-1],
                                        exclude="", selector="", io_manager_key=None, project=None)

    @dg.multi_asset(name="__".join(table.key), specs=specs, check_specs=[*check_specs, *dbt_checks],
                    op_tags={DBT_SELECT_TAG: unique_id.split(".")[-1]}, retry_policy=retry_policy)
    def _dbt_model(context: dg.AssetExecutionContext, duckdb: DuckDBEngine, ports: PortStorage):
        def build(engine: DuckDBEngine, storage: PortStorage):
            return dbt_build(context, mesh, table, inputs, producers, engine, storage)

        yield from step(context, duckdb, ports, build)

    return _dbt_model


@contextlib.contextmanager
def dbt_build(context: dg.AssetExecutionContext, mesh: Mesh, table: Table, inputs: list[InputRef],
              producers: dict[tuple[str, str, str], Path], engine: DuckDBEngine, storage: PortStorage
              ) -> Iterator[Any]:
    """Build ``table``'s dbt model straight into a new staged snapshot of its port and run its dbt tests on it;
    yield the ``StagedBuild`` for the framework to audit in place and publish (or discard). The rows are
    written once, by dbt's ``mesh_snapshot`` materialization (dbt/macros/mesh_snapshot.sql), on dbt's in-memory
    DuckDB connection, which the mesh's plugin (mesh_assets.dbt_plugin) gives the step's inputs as views and
    locks down to them, the staged snapshot's folder and a spill folder of its own. The profile is the same in
    every step (``PROFILE``), so dbt reuses the parse state of ``dbt parse``. dbt's output goes to the step's log.

    The step's private folder (mesh_assets.step_folders: the profile, the plugin's step file, dbt's target;
    owned by this process, out of every sandbox's reach; the folders of killed steps are cleaned first) is
    deleted afterwards, and the staged snapshot with it when anything raises.

    Raises:
        AccessError: an input may no longer be read.
        TransformError: an input has no published snapshot, the model calls a function off the allow-list, or
            the model fails (dbt's message, file and fix).
        TransientError: the model failed on I/O, a lost connection or memory (mesh_assets.errors.is_transient).
    """
    from mesh_assets.materialize import StagedBuild, input_snapshots

    origin = str(table.transform.relative_to(mesh.root)) if table.transform else table.dbt_model
    sql = (table.transform_sql() or "").strip().rstrip(";")
    try:  # again at run: the model may have changed since the definitions were loaded
        check_sql(sql, origin)
    except (FunctionNotAllowed, sqlglot.errors.SqlglotError) as exc:
        raise TransformError(f"{'/'.join(table.key)}: {exc}. Nothing was published") from None
    access = runtime_access(table.domain, inputs, producers, mesh.settings.governance)
    snapshots = list(input_snapshots(table, inputs, storage, access))
    for path in project_yaml_files(mesh.root):  # what dbt is about to read: no alias bomb, no huge file
        try:
            read_yaml_text(path)
        except ContractError as exc:
            raise TransformError(f"{'/'.join(table.key)}: the dbt project cannot be read safely: {exc}") from None
    port = storage.port(table.key)
    staged = port.new_snapshot(context.run.run_id)
    folder = new_step_folder(mesh.settings, f"dbt-{table.dbt_model}-")
    spill = new_spill_folder(mesh.settings)
    try:
        write_step_file(folder, inputs=[(ref.schema, ref.table, snapshot.glob) for ref, snapshot in snapshots],
                        location=staged.data_file, storage_root=storage.root,
                        allowed_directories=[staged.path, *(snapshot.path for _, snapshot in snapshots)],
                        spill=str(spill), threads=engine.threads, memory_limit=engine.memory_limit)
        (folder / "profiles.yml").write_text(yaml.safe_dump(PROFILE), encoding="utf-8")
        dbt = DbtCliResource(project_dir=str(project_dir(mesh.root)), profiles_dir=str(folder),
                             dbt_executable=dbt_executable())
        with _to_step_log(context):
            invocation = dbt.cli(["build"], context=context, raise_on_error=False, target_path=folder / "target")
            outcomes = [_outcome(event) for event in invocation.stream() if isinstance(event, dg.AssetCheckResult)]
        try:
            results = invocation.get_artifact("run_results.json").get("results", [])
        except (OSError, ValueError):  # dbt stopped before running anything (project or profile error)
            results = []
        model = next((r for r in results if r.get("unique_id", "").startswith("model.")), None)
        if model is None or model.get("status") != "success":
            message = (model or {}).get("message") or _log_tail(folder / "target")
            raise failure_class(message)(f"{'/'.join(table.key)}: dbt model {table.dbt_model} ({origin}) failed: "
                                         f"{message}. Nothing was published; the previous snapshot stays current")
        yield StagedBuild(staged, sql, origin, tuple(outcomes),
                          {"dbt_seconds": round(float(model.get("execution_time") or 0), 3)})
    except BaseException:
        port.discard(staged.id)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(spill, ignore_errors=True)


@contextlib.contextmanager
def _to_step_log(context: dg.AssetExecutionContext) -> Iterator[None]:
    """Send what dagster-dbt prints of dbt's events (one line each, on ``sys.stdout``) to the step's log, at info
    level: the run's event log and the UI have them; the terminal of ``mesh run`` shows its own progress only."""

    class StepLog(io.TextIOBase):
        def __init__(self) -> None:
            self.pending = ""

        def write(self, text: str) -> int:
            *lines, self.pending = (self.pending + text).split("\n")
            for line in lines:
                if line.strip():
                    context.log.info(f"dbt: {line}")
            return len(text)

    log = StepLog()
    with contextlib.redirect_stdout(log):
        yield
    log.write("\n")


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
