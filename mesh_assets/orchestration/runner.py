"""The command-line main job: materialize the whole mesh (or some domains) in dependency order in one
process, recorded in the Dagster instance at ``DAGSTER_HOME`` so the UI shows the result."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psutil
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from mesh_assets.contract.mesh import Mesh
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.step_folders import clean_step_folders
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.definitions import build_mesh_definitions
from mesh_assets.orchestration.instance_config import get_instance, write_instance_config

HOST_TAG, PROCESS_TAG = "mesh/host", "mesh/process"  # where a `mesh run` runs: host, "<pid>:<start time>"
# Dagster's run tags of a partition and of a partition range (what a backfill's single run carries)
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG, RANGE_END_TAG = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
_WATCHED = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE,
            DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_CHECK_EVALUATION}


def dagster_home(root: Path) -> Path:
    """``DAGSTER_HOME`` (default ``<root>/.dagster``), created and given the mesh's instance configuration
    (``dagster.yaml``, with Postgres storage when ``MESH_POSTGRES_URL`` is set:
    :mod:`mesh_assets.orchestration.instance_config`); the variable is set for this process so Dagster finds the
    instance.

    Raises:
        MeshError: ``MESH_POSTGRES_URL`` is not a postgresql+psycopg2:// URL.
    """
    home = Path(os.environ.get("DAGSTER_HOME") or root / ".dagster").resolve()
    write_instance_config(root, home)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


@dataclass
class AssetSummary:
    """One row of the run summary: ``status`` is materialized, failed or skipped; ``seconds`` of its step;
    the failed checks apart by severity, each as ``name (N rows)``, ``name (observed V)`` (a rule measuring one
    value: SQL, row count) or ``name``: ``warnings`` (WARN, the asset was still published) and ``blocking``
    (ERROR, it was not)."""

    key: str
    status: str = "skipped"
    rows: int | None = None
    checks_passed: int = 0
    seconds: float | None = None
    warnings: list[str] = field(default_factory=list)
    blocking: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    """What one ``mesh run`` did: its Dagster ``run_id``, whether every asset materialized (``success``), one
    :class:`AssetSummary` per asset, and its wall time in ``seconds``."""

    run_id: str
    success: bool
    assets: list[AssetSummary]
    seconds: float

    def write_results(self, path: Path) -> None:
        """Write the run's results to ``path`` as JSON, replacing the file in one step (like dbt's
        ``run_results.json``; shape documented in docs/operations.md)::

            {"run_id": str, "success": bool, "seconds": float, "generated_at": ISO 8601 UTC,
             "results": [{"asset": "domain/layer/table", "status": "materialized" | "failed" | "skipped",
                          "rows": int | null, "seconds": float | null, "checks_passed": int,
                          "warnings": [str], "blocking": [str]}]}
        """
        body = {"run_id": self.run_id, "success": self.success, "seconds": round(self.seconds, 3),
                "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "results": [{"asset": a.key, "status": a.status, "rows": a.rows,
                             "seconds": round(a.seconds, 3) if a.seconds is not None else None,
                             "checks_passed": a.checks_passed, "warnings": a.warnings, "blocking": a.blocking}
                            for a in self.assets]}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, path)


def run_mesh(mesh: Mesh, instance: DagsterInstance, domains: list[str] | None = None,
             console: Console | None = None, partitions: tuple[str, str] | None = None) -> RunSummary:
    """Materialize every asset of ``domains`` (default: all) in one Dagster run with a progress bar.

    Assets outside ``domains`` are not run; their ports are read as currently published. Partitioned assets
    are run only with ``partitions`` (first, last partition key; the same key for one partition): the
    partitioned assets with those partitions, over that range in the one run, and the unpartitioned assets
    they need and that were never published, or that read them (:func:`partition_selection`;
    docs/partitions.md).

    Raises:
        MeshError: an unknown domain, contracts that do not load, or partitions no asset has.
    """
    console = console or Console(stderr=True)
    unknown = set(domains or []) - set(mesh.domain_names)
    if unknown:
        raise MeshError(f"unknown domain(s) {', '.join(sorted(unknown))}; the mesh has "
                        f"{', '.join(mesh.domain_names)}")
    defs = build_mesh_definitions(mesh, domains)
    job = defs.resolve_implicit_global_asset_job_def()
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable
            and (not domains or k.path[0] in domains)]
    tags: dict[str, str] = {}
    if partitions is None:
        keys = [k for k in keys if graph.get(k).partitions_def is None]
    else:
        storage = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
        never = {k for k in keys
                 if graph.get(k).partitions_def is None and storage.port(tuple(k.path)).current() is None}
        chosen = set(partition_selection(graph, keys, *partitions, never=never))
        steps_of = {k: set(a.keys) for a in defs.assets or [] for k in a.keys}  # type: ignore[union-attr]
        keys = [k for k in keys if steps_of.get(k, {k}) & chosen]  # a step's assets go together (rejects)
        tags = ({PARTITION_TAG: partitions[0]} if partitions[0] == partitions[1] else
                {RANGE_START_TAG: partitions[0], RANGE_END_TAG: partitions[1]})
    run_id = str(uuid.uuid4())
    fail_abandoned_runs(instance)
    clean_step_folders(mesh.settings)  # and the processes of steps killed with their run
    process = psutil.Process()
    tags.update({HOST_TAG: socket.gethostname(), PROCESS_TAG: f"{process.pid}:{process.create_time()}"})
    summaries = {k.to_user_string(): AssetSummary(k.to_user_string()) for k in keys}
    steps: dict[str, list[str]] = {}  # step key → asset keys it materializes
    for assets_def in defs.assets or []:
        for key in assets_def.keys:  # type: ignore[union-attr]
            if key.to_user_string() in summaries:
                steps.setdefault(assets_def.node_def.name, []).append(key.to_user_string())  # type: ignore[union-attr]
    started = time.monotonic()
    done = threading.Event()
    outcome: dict[str, object] = {}

    def execute() -> None:
        try:
            outcome["result"] = job.execute_in_process(
                instance=instance, run_id=run_id, raise_on_error=False, asset_selection=keys, tags=tags,
                # Progress is shown from the instance's events; Dagster's console log only warns.
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            done.set()

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("starting", total=len(keys))
        worker = threading.Thread(target=execute, name="mesh-run", daemon=True)
        worker.start()
        events = _EventReader(instance, run_id, summaries, steps)
        while not done.wait(0.5):
            events.update()
            running = [s.key for s in summaries.values() if s.status == "running"]
            finished = sum(s.status in ("materialized", "failed") for s in summaries.values())
            progress.update(task, completed=finished, description=", ".join(running) or "scheduling")
        worker.join()
        events.update()
        finished = sum(s.status in ("materialized", "failed") for s in summaries.values())
        progress.update(task, completed=finished, description="done")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    result = outcome["result"]
    success = bool(result.success) and all(s.status == "materialized"  # type: ignore[attr-defined]
                                           for s in summaries.values())
    return RunSummary(run_id, success, list(summaries.values()), time.monotonic() - started)


def partition_selection(graph, keys: list[dg.AssetKey], first: str, last: str,
                        never: set[dg.AssetKey] = frozenset()) -> list[dg.AssetKey]:  # type: ignore[assignment]
    """Of ``keys`` (in dependency order, of the asset graph ``graph``), the partitioned assets that have the
    partitions ``first`` and ``last`` (``first`` not after ``last``), the unpartitioned ones downstream of
    them, which read every partition, and the unpartitioned ones upstream of them among ``never`` (their ports
    never published: a first build); in the same order.

    Raises:
        MeshError: no selected asset has those partitions, or ``first`` comes after ``last``.
    """
    chosen: set[dg.AssetKey] = set()
    for key in keys:
        node = graph.get(key)
        partitions_def = node.partitions_def
        if partitions_def is not None:
            known = partitions_def.get_partition_keys()
            if first in known and last in known:
                if known.index(first) > known.index(last):
                    raise MeshError(f"--from {first} comes after --to {last}; give the earlier partition first")
                chosen.add(key)
        elif any(parent in chosen for parent in node.parent_keys):
            chosen.add(key)
    for key in reversed(keys):  # the first build of what the chosen partitions read
        node = graph.get(key)
        if key in never and node.partitions_def is None and any(c in chosen for c in node.child_keys):
            chosen.add(key)
    if not any(graph.get(k).partitions_def is not None for k in chosen):
        raise MeshError(f"no selected asset has the partition(s) {first}"
                        f"{'' if first == last else ' to ' + last}: a month's key is YYYY-MM, a day's YYYY-MM-DD, "
                        "within each table's partitioning start and end (docs/partitions.md)")
    return [k for k in keys if k in chosen]


def fail_abandoned_runs(instance: DagsterInstance) -> list[str]:
    """Mark as failed every ``mesh run`` of this host that the instance still shows in progress although its
    process is gone (killed, or the machine restarted), and return their run ids. The daemon's run monitoring
    does the same for runs it launched; ``mesh run`` executes in its own process, which nothing else watches."""
    host = socket.gethostname()
    abandoned = []
    running = dg.RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED], tags={HOST_TAG: host})
    for record in instance.get_run_records(running):
        run = record.dagster_run
        pid, _, started = run.tags.get(PROCESS_TAG, "").partition(":")
        try:
            alive = abs(psutil.Process(int(pid)).create_time() - float(started)) < 1
        except (ValueError, psutil.Error):
            alive = False
        if not alive:
            instance.report_run_failed(run, message=f"The process of this `mesh run` (pid {pid or '?'} on {host}) "
                                                    "ended without finishing the run; marked failed by the next one.")
            abandoned.append(run.run_id)
    return abandoned


class _EventReader:
    """Folds a run's events, read incrementally from the instance (the single source of truth), into each
    asset's summary; ``steps`` maps each step key to the asset keys it materializes."""

    def __init__(self, instance: DagsterInstance, run_id: str, summaries: dict[str, AssetSummary],
                 steps: dict[str, list[str]]):
        self.instance, self.run_id, self.summaries, self.steps = instance, run_id, summaries, steps
        self.cursor: str | None = None
        self.starts: dict[str, float] = {}

    def update(self) -> None:
        while True:
            page = self.instance.get_records_for_run(self.run_id, cursor=self.cursor, of_type=_WATCHED, limit=1000)
            for record in page.records:
                self._fold(record.event_log_entry)
            self.cursor = page.cursor
            if not page.has_more:
                return

    def _fold(self, entry) -> None:
        event = entry.dagster_event
        if event is None:
            return
        data = event.event_specific_data
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            summary = self.summaries.get(data.materialization.asset_key.to_user_string())
            if summary is not None:
                row_count = data.materialization.metadata.get("dagster/row_count")
                summary.rows = row_count.value if row_count is not None else None
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            summary = self.summaries.get(data.asset_key.to_user_string())
            if summary is not None and data.passed:
                summary.checks_passed += 1
            elif summary is not None:
                rows = getattr(data.metadata.get("failing_rows"), "value", None)
                observed = getattr(data.metadata.get("observed_value"), "value", None)
                name = data.check_name + (f" ({rows:,} row{'' if rows == 1 else 's'})" if isinstance(rows, int)
                                          else f" (observed {observed})" if observed is not None else "")
                (summary.blocking if data.severity == dg.AssetCheckSeverity.ERROR else summary.warnings).append(name)
        else:
            step = event.step_key or ""
            for key in self.steps.get(step, []):
                summary = self.summaries[key]
                if event.event_type == DagsterEventType.STEP_START:
                    summary.status = "running"
                    self.starts[step] = entry.timestamp
                else:
                    success = event.event_type == DagsterEventType.STEP_SUCCESS
                    summary.status = "materialized" if success else "failed"
                    if step in self.starts:
                        summary.seconds = entry.timestamp - self.starts[step]


def summary_table(summary: RunSummary) -> RichTable:
    """The run summary as a table: asset, status, rows, checks passed, failed warnings (not blocking) and failed
    blocking checks, each counted and named, seconds."""
    table = RichTable(title=f"mesh run {summary.run_id} — {'succeeded' if summary.success else 'FAILED'} "
                            f"in {summary.seconds:.1f} s")
    for name, justify in (("asset", "left"), ("status", "left"), ("rows", "right"), ("checks passed", "right"),
                          ("warnings", "left"), ("blocking", "left"), ("seconds", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    styles = {"materialized": "green", "failed": "bold red", "skipped": "yellow", "running": "yellow"}
    for row in summary.assets:
        table.add_row(row.key, f"[{styles[row.status]}]{row.status}[/]",
                      f"{row.rows:,}" if row.rows is not None else "", str(row.checks_passed),
                      f"[yellow]{len(row.warnings)}: {escape(', '.join(row.warnings))}[/]" if row.warnings else "0",
                      f"[bold red]{len(row.blocking)}: {escape(', '.join(row.blocking))}[/]" if row.blocking else "0",
                      f"{row.seconds:.2f}" if row.seconds is not None else "")
    return table


def open_instance(root: Path) -> DagsterInstance:
    """The Dagster instance at ``DAGSTER_HOME`` (see :func:`dagster_home`).

    Raises:
        MeshError: a bad ``MESH_POSTGRES_URL``, or a Postgres server that cannot be reached.
    """
    dagster_home(root)
    return get_instance()
