"""dbt as an engine of the one write–audit–publish (mesh_assets.engine.interface; docs/dbt.md).

:class:`DbtEngine`'s session is a DuckDB step whose build (:func:`dbt_build`) runs ``dbt build`` in the step's
process on the manifest the code location loads (no dbt process, no parsing), and writes the model straight into
a new staged snapshot of the port that the framework gives it (``BuildJob.stage``; the ``mesh_snapshot``
materialization, dbt/macros/mesh_snapshot.sql), on an in-memory DuckDB connection of its own, in which the mesh's
plugin (mesh_assets.engine.dbt_plugin) registers the model's inputs as views over the snapshots the framework
registered (the masked copy where the access rules mask columns) and locks file access down to them; nothing is
shared between steps, so parallel steps and domains cannot lock each other. dbt's tests run on the staged rows.
The framework then audits the staged snapshot in place and publishes or discards it like any other output: the
rows are written once, and the dbt tests block publishing like the contract's checks. dbt's messages go to the
step's log (``log``), not to the terminal.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import duckdb
import yaml
from dbt.adapters.duckdb.connections import DuckDBConnectionManager
from dbt.artifacts.schemas.manifest import WritableManifest
from dbt.cli.main import dbtRunner
from dbt.contracts.graph.manifest import Manifest
from dbt.contracts.graph.nodes import GenericTestNode

from mesh_assets.contract.dbt_project import (
    MANIFEST,
    PROFILE,
    load_manifest,
    newer_than_manifest,
    project_dir,
    project_yaml_files,
)
from mesh_assets.contract.mesh import Mesh
from mesh_assets.contract.model import Table
from mesh_assets.engine.dbt_plugin import StepConnection, dbt_step
from mesh_assets.engine.duckdb_engine import (PARTITIONS_FOLDER, DuckDBEngine, DuckDBStep, flatten_partitions,
                                              partition_value)
from mesh_assets.engine.interface import BuildJob, Output, Sandbox
from mesh_assets.engine.outcomes import CheckOutcome
from mesh_assets.engine.ports import Snapshot
from mesh_assets.engine.step_folders import new_step_folder
from mesh_assets.errors import ContractError, MeshError, TransformError, failure_class
from mesh_assets.yaml_source import read_yaml_text


class DbtEngine:
    """dbt as an engine of write–audit–publish (mesh_assets.engine.interface.Engine): a DuckDB step session whose
    build runs the table's dbt model into the staged snapshot (:class:`DbtStep`). ``duckdb`` gives the connections'
    limits; the snapshot summary records ``duckdb`` as the writer (dbt-duckdb)."""

    name: ClassVar[str] = "duckdb"

    def __init__(self, log: Callable[[str], None], mesh: Mesh, duckdb: DuckDBEngine):
        self.log, self.mesh, self.duckdb = log, mesh, duckdb

    @contextlib.contextmanager
    def open(self, table: Table, sandbox: Sandbox) -> Iterator["DbtStep"]:
        """A DuckDB step session confined to ``sandbox``, with a private folder for dbt's profile, target and
        log (mesh_assets.engine.step_folders: owned by this process, out of every sandbox's reach; the folders of
        killed steps are cleaned first), deleted when the session ends."""
        folder = new_step_folder(self.mesh.settings, f"dbt-{table.dbt_model}-")
        try:
            con = self.duckdb.connect(sandbox.storage_root, allowed_directories=sandbox.directories,
                                      allowed_files=sandbox.files, spill_directory=sandbox.spill)
            try:
                yield DbtStep(self, con, folder, sandbox)
            finally:
                self.duckdb.close(con, "__".join(table.key))
        finally:
            shutil.rmtree(folder, ignore_errors=True)


class DbtStep(DuckDBStep):
    """A DuckDB step session whose :meth:`build` runs the dbt model (:func:`dbt_build`) on the snapshots
    registered for the model's inputs, in the step's ``sandbox``, with ``folder`` as dbt's private folder."""

    def __init__(self, engine: DbtEngine, con: duckdb.DuckDBPyConnection, folder: Path, sandbox: Sandbox):
        super().__init__(engine.duckdb, con)
        self.dbt, self.folder, self.sandbox = engine, folder, sandbox
        self.registered: dict[tuple[str, str], Snapshot] = {}

    def register(self, schema: str, name: str, snapshot: Snapshot) -> None:
        super().register(schema, name, snapshot)
        self.registered[(schema, name)] = snapshot

    def build(self, job: BuildJob) -> Output:
        """Run the model and its tests (:func:`dbt_build`) into a new staged snapshot (``job.stage``): the
        output is that snapshot's Parquet files, already written, with their row count; the dbt tests' results
        are the build's outcomes.

        Raises:
            MeshError: ``job`` has no ``stage`` (the framework gives every build one).
            TransformError, TransientError: see :func:`dbt_build`.
        """
        if job.stage is None:
            raise MeshError(f"{'/'.join(job.table.key)}: a dbt model writes its own snapshot; the build needs "
                            "BuildJob.stage")
        inputs = [(ref.schema, ref.table, self.registered[(ref.schema, ref.table)]) for ref in job.inputs]
        staged = job.stage()
        outcomes, metadata = dbt_build(self.dbt.log, self.dbt.mesh, job.table, staged, inputs, self.engine,
                                       folder=self.folder, spill=self.sandbox.spill or str(self.folder),
                                       storage_root=self.sandbox.storage_root, windows=job.windows)
        relation = "SELECT * FROM read_parquet('" + staged.glob.replace("'", "''") + "')"
        rows = int(self.query(f"SELECT count(*) FROM ({relation})")[0][0])
        return Output(relation, job.sql, staged=staged, rows=rows, outcomes=tuple(outcomes), metadata=metadata)


def dbt_build(log: Callable[[str], None], mesh: Mesh, table: Table, staged: Snapshot,
              inputs: Sequence[tuple[str, str, Snapshot]], engine: DuckDBEngine, *, folder: Path, spill: str,
              storage_root: str, windows: Mapping[str, str] | None = None
              ) -> tuple[list[CheckOutcome], dict[str, Any]]:
    """Build ``table``'s dbt model into the staged snapshot ``staged`` and run its dbt tests on it; return the
    tests' outcomes and the materialization metadata (``dbt_seconds``). ``inputs`` are the model's inputs as
    ``(schema, table, snapshot)`` (the snapshots the step reads: masked copies where masked); ``folder`` is
    the step's private folder (profile, dbt's target and log), ``spill`` a spill folder of the step's own,
    ``storage_root`` the ports' root. The caller creates, audits and publishes or discards ``staged``. Of a
    partitioned table, ``windows`` restricts each partitioned input (``"<schema>.<table>"``) to the rows of the
    step's partitions (a DuckDB predicate), and the model's rows are written one file per partition,
    ``part-<value>-<n>.parquet``, as the DuckDB engine writes them.

    dbt runs in this process (``dbtRunner``) on the manifest the code location loads (``dbt/target/
    manifest.json``): no dbt process to start, no parsing. Its ``mesh_snapshot`` materialization
    (dbt/macros/mesh_snapshot.sql) writes the rows once, into ``staged``, on dbt's in-memory DuckDB connection,
    which the mesh's plugin (mesh_assets.engine.dbt_plugin) gives the inputs as views, the engine's limits, and file
    access to the inputs' folders, ``staged``'s and ``spill`` only. dbt's messages go to the step's log.

    Raises:
        TransformError: the dbt project changed after its manifest was made (run ``make dbt-manifest``), cannot
            be read safely, or the model fails (dbt's message, file and fix).
        TransientError: the model failed on I/O, a lost connection or memory (mesh_assets.errors.is_transient).
    """
    name = "/".join(table.key)
    origin = str(table.transform.relative_to(mesh.root)) if table.transform else table.dbt_model
    changed = newer_than_manifest(mesh.root)
    if changed:
        raise TransformError(f"{name}: {changed[0]} changed after the dbt manifest was made; run `make "
                             "dbt-manifest` (dbt parse) so the step runs what the file says. Nothing was published")
    for path in project_yaml_files(mesh.root):  # what dbt is about to read: no alias bomb, no huge file
        try:
            read_yaml_text(path)
        except ContractError as exc:
            raise TransformError(f"{name}: the dbt project cannot be read safely: {exc}") from None
    manifest = load_dbt_manifest(mesh.root)
    (folder / "profiles.yml").write_text(yaml.safe_dump(PROFILE), encoding="utf-8")
    local = "://" not in storage_root or storage_root.startswith("file://")
    partitioning = table.partitioning
    step = StepConnection(inputs=tuple(inputs), location=staged.data_file, storage_root=storage_root,
                   windows=tuple((windows or {}).items()),
                   partition_by=partition_value(partitioning) if partitioning is not None else "",
                   partitions=f"{staged.path}/{PARTITIONS_FOLDER}" if partitioning is not None else "",
                   allowed_directories=(staged.path, *([] if local else [snapshot.path for *_, snapshot in inputs])),
                   allowed_files=tuple(f for *_, snapshot in inputs for f in snapshot.files) if local else (),
                   spill=spill, threads=engine.threads, memory_limit=engine.memory_limit, query_log=engine.query_log)
    result = _invoke(log, step, manifest, table.dbt_model or "", project_dir(mesh.root), folder)
    results = list(getattr(result.result, "results", None) or [])
    model = next((r for r in results if r.node.unique_id.startswith("model.")), None)
    if model is None or _status(model) != "success":
        message = ((model.message if model is not None else None) or
                   (str(result.exception) if result.exception else None) or _log_tail(folder / "target"))
        raise failure_class(message)(f"{name}: dbt model {table.dbt_model} ({origin}) failed: {message}. Nothing "
                                     "was published; the previous snapshot stays current")
    if partitioning is not None:
        flatten_partitions(staged)
    outcomes = [_outcome(r) for r in results if r.node.unique_id.startswith("test.")]
    return outcomes, {"dbt_seconds": round(float(model.execution_time or 0), 3)}


@functools.lru_cache(maxsize=2)
def _writable_manifest(path: str, _mtime: int) -> Any:
    return WritableManifest.read_and_check_versions(path)


def load_dbt_manifest(root: Path) -> Any:
    """dbt's ``Manifest`` of the mesh's dbt project, from ``dbt/target/manifest.json`` (read once per process
    and file version; a new ``Manifest`` each call, as dbt fills in the nodes it compiles). A generic test
    (``test_metadata``) is made a ``GenericTestNode`` again: read back from JSON, dbt takes it for a singular
    test and cannot compile it.

    Raises:
        MeshError: the manifest is missing or unreadable; the message says how to make it.
    """
    path = project_dir(root) / MANIFEST
    raw = load_manifest(root)
    try:
        manifest = Manifest.from_writable_manifest(_writable_manifest(str(path), path.stat().st_mtime_ns))
    except (OSError, ValueError) as exc:
        raise MeshError(f"{path}: the dbt manifest is missing or unreadable ({type(exc).__name__}); make it with "
                        "`make dbt-manifest` or `mesh dbt parse` (runs dbt parse)") from None
    for unique_id, node in raw.get("nodes", {}).items():
        if node.get("resource_type") == "test" and node.get("test_metadata"):
            manifest.nodes[unique_id] = GenericTestNode.from_dict(node)
    return manifest


def _invoke(log: Callable[[str], None], step: StepConnection, manifest: Any, model: str, project: Path,
            folder: Path) -> Any:
    """``dbt build --select <model>`` in this process on ``manifest`` with the step's profile and target in
    ``folder``; dbt's messages at info level and above go to the step's log. Returns dbt's ``dbtRunnerResult``.
    dbt-duckdb keeps its DuckDB environment for the process: it is closed after the build, so the next step
    gets a connection of its own."""
    def to_step_log(event: Any) -> None:
        if event.info.level in ("info", "warn", "error") and event.info.msg:
            log(f"dbt: {event.info.msg}")

    target = folder / "target"
    args = ["build", "--select", model, "--project-dir", str(project), "--profiles-dir", str(folder),
            "--target-path", str(target), "--log-path", str(target), "--log-level", "none",
            "--log-level-file", "info", "--no-write-json", "--no-populate-cache", "--no-version-check",
            "--no-send-anonymous-usage-stats"]
    try:
        with dbt_step(step):
            DuckDBConnectionManager.close_all_connections()
            return dbtRunner(manifest=manifest, callbacks=[to_step_log]).invoke(args)
    finally:
        with contextlib.suppress(Exception):  # none open when dbt stopped before connecting
            DuckDBConnectionManager.env().close()
        DuckDBConnectionManager.close_all_connections()


def _status(result: Any) -> str:
    """A dbt node result's status as dbt writes it in run_results.json (``success``, ``pass``, ``warn``…)."""
    return str(getattr(result.status, "value", result.status))


def _outcome(result: Any) -> CheckOutcome:
    """A dbt test's result as a check outcome of the step, named as dagster-dbt names its asset check (the test
    node's name): passed when dbt says ``pass``; blocking unless dbt says ``warn`` (the test's severity)."""
    status = _status(result)
    name = result.node.name
    metadata = {"status": status, **({} if result.failures is None else
                                     {"dagster_dbt/failed_row_count": result.failures})}
    blocking = status != "warn"
    return CheckOutcome(name, status == "pass", blocking, "error" if blocking else "warning",
                        result.message or f"dbt test {name}", metadata)


def _log_tail(target: Path) -> str:
    """The last error lines of dbt's log in ``target`` (when run_results.json says nothing)."""
    log = target / "dbt.log"
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()[-5:] if log.is_file() else []
    return " ".join(lines) or "dbt did not run; see the step's log"
