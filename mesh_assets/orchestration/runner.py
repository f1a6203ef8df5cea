"""The command-line main job: materialize the whole mesh (or some domains) in dependency order in one
process, recorded in the Dagster instance at ``DAGSTER_HOME`` so the UI shows the result."""

from __future__ import annotations

import dataclasses
import graphlib
import json
import os
import socket
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import psutil
from dagster import DagsterInstance, DagsterRunStatus
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table as RichTable

from mesh_assets.contract.mesh import Mesh
from mesh_assets.engine.outcomes import CheckOutcome
from mesh_assets.engine.port_storage import PortStorage
from mesh_assets.engine.staleness import stale_inputs
from mesh_assets.engine.step_folders import clean_step_folders
from mesh_assets.errors import MeshError
from mesh_assets.orchestration.assets import RANGE_END_TAG, RANGE_START_TAG, kind_order
from mesh_assets.orchestration.definitions import build_mesh_definitions
from mesh_assets.orchestration.instance_config import get_instance, write_instance_config
from mesh_assets.orchestration.progress import StepEnd, listening
from mesh_assets.orchestration.sensors import landed_files

HOST_TAG, PROCESS_TAG = "mesh/host", "mesh/process"  # where a `mesh run` runs: host, "<pid>:<start time>"
# Dagster's run tags of a partition and of a partition range (what a backfill's single run carries)
PARTITION_TAG = "dagster/partition"


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
             console: Console | None = None, selection: str | None = None,
             partitions: tuple[str, str] | None = None) -> RunSummary:
    """Materialize every asset of ``domains`` (default: all), or those of them ``selection`` picks, in one Dagster
    run, in dependency order, with a progress bar.

    ``selection`` is a Dagster asset selection string (``AssetSelection.from_string``: ``key:``, ``tag:``,
    ``owner:``, ``group:``, ``+`` for upstream and downstream, ``and``/``or``/``not``); a step building several
    assets (a bronze table and its ``__rejects``) runs whole. Assets not run keep their ports as currently
    published. With ``partitions`` (first, last key), the partitioned assets build that range
    (:func:`plan_run`), widened to the partitions a changed input left stale (:func:`with_stale_partitions`);
    without it, every partition whose files have landed is built too, each contiguous range
    of them in one run (:func:`landed_ranges`; the unpartitioned assets in the run of the last range, but for
    those never published that a range reads), so a plain run builds the whole mesh from nothing
    (docs/partitions.md). The summary is then the runs' together: the last run's id, each asset's last status,
    its rows summed over the runs.

    Raises:
        MeshError: an unknown domain, a selection that does not parse or picks no asset, partitions no asset
            has, or contracts that do not load.
    """
    defs = _definitions(mesh, domains)
    if partitions is None:
        ranges = landed_ranges(mesh, domains, selection, defs)
        if ranges:
            summaries = [_run_once(mesh, instance, domains, console, selection, r,
                                   unpartitioned="all" if r == ranges[-1] else "first build", defs=defs)
                         for r in ranges]
            return summaries[0] if len(summaries) == 1 else _together(summaries)
    else:
        partitions = with_stale_partitions(mesh, domains, selection, partitions, defs, console)
    return _run_once(mesh, instance, domains, console, selection, partitions, defs=defs)


def with_stale_partitions(mesh: Mesh, domains: list[str] | None, selection: str | None,
                          partitions: tuple[str, str], defs: dg.Definitions, console: Console | None = None
                          ) -> tuple[str, str]:
    """The range ``partitions`` (first, last key) widened to every partition of the selected time-partitioned
    tables built against an older version of an unpartitioned input whose contract says ``rebuild`` (the
    default; mesh_assets.engine.staleness), so a run never publishes a month joined with a new dimension beside
    months joined with the old one (static and multi partitions are one run each: ``mesh status`` lists theirs).
    ``partitions`` itself when there is none; a notice on ``console`` otherwise."""
    _, keys, _, _ = plan_run(mesh, domains, selection, partitions=None, unpartitioned="all", defs=defs)
    graph = defs.resolve_asset_graph()
    storage = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
    order: list[str] = []
    stale: dict[str, set[str]] = {}
    for key in keys:  # of time partitions: a range of static or multi partitions is not one run's
        partitions_def = graph.get(key).partitions_def
        table = (mesh.domain(key.path[0]).table(key.path[1], key.path[2])
                 if isinstance(partitions_def, dg.TimeWindowPartitionsDefinition) else None)
        if table is None:
            continue
        known = partitions_def.get_partition_keys()  # type: ignore[union-attr]
        order = known if len(known) > len(order) else order
        for found in stale_inputs(mesh, table, storage):
            if found.policy == "rebuild":
                stale.setdefault(found.input, set()).update(k for k in found.partitions if k in known)
    wanted = {k for keys_ in stale.values() for k in keys_} | set(partitions)
    if not stale or not set(partitions) <= set(order):
        return partitions
    widened = (min(wanted, key=order.index), max(wanted, key=order.index))
    if widened != partitions:
        (console or Console(stderr=True)).print(
            f"[yellow]note:[/] {', '.join(sorted(stale))} changed since partitions were built (onInputChange: "
            f"rebuild): the run covers {widened[0]} to {widened[1]} (docs/partitions.md)", highlight=False)
    return widened


def _definitions(mesh: Mesh, domains: list[str] | None) -> dg.Definitions:
    """The mesh's definitions of ``domains`` (default: all). Raises MeshError for an unknown domain."""
    unknown = set(domains or []) - set(mesh.domain_names)
    if unknown:
        raise MeshError(f"unknown domain(s) {', '.join(sorted(unknown))}; the mesh has "
                        f"{', '.join(mesh.domain_names)}")
    return build_mesh_definitions(mesh, domains)


def _together(summaries: list[RunSummary]) -> RunSummary:
    """One summary of consecutive runs (:func:`run_mesh`): the last run's id, success when every run succeeded,
    each asset's last status that is not ``skipped``, its rows summed, seconds and checks of its last step."""
    merged: dict[str, AssetSummary] = {}
    for summary in summaries:
        for asset in summary.assets:
            before = merged.get(asset.key)
            if before is None or asset.status != "skipped":
                rows = (before.rows or 0) + (asset.rows or 0) if before is not None and before.rows is not None \
                    and asset.rows is not None else asset.rows
                merged[asset.key] = dataclasses.replace(asset, rows=rows)
    return RunSummary(summaries[-1].run_id, all(s.success for s in summaries), list(merged.values()),
                      sum(s.seconds for s in summaries))


def _run_once(mesh: Mesh, instance: DagsterInstance, domains: list[str] | None, console: Console | None,
              selection: str | None, partitions: tuple[str, str] | None, unpartitioned: str = "needed",
              defs: dg.Definitions | None = None) -> RunSummary:
    """One Dagster run of :func:`plan_run`'s assets."""
    console = console or Console(stderr=True)
    defs, keys, steps, tags = plan_run(mesh, domains, selection, partitions, unpartitioned, defs=defs)
    job = defs.resolve_implicit_global_asset_job_def()
    run_id = str(uuid.uuid4())
    clean_step_folders(mesh.settings)  # and the processes of steps killed with their run
    process = psutil.Process()
    tags = {**tags, HOST_TAG: socket.gethostname(), PROCESS_TAG: f"{process.pid}:{process.create_time()}"}
    summaries = {k.to_user_string(): AssetSummary(k.to_user_string()) for k in keys}
    started = time.monotonic()
    board = _Board(summaries, steps)
    for run in abandoned_runs(instance):
        console.print(f"[yellow]warning:[/] {abandoned_message(run)}")
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("starting", total=len(keys))
        board.on_change = lambda running, finished: progress.update(
            task, completed=finished, description=", ".join(running) or "scheduling")
        # In this thread, SIGINT and SIGTERM reach the running step; the later ones stop (progress.run_interrupted).
        with listening(run_id, board):
            result = job.execute_in_process(
                instance=instance, run_id=run_id, raise_on_error=False, asset_selection=keys, tags=tags,
                # Progress is reported by the steps; Dagster's console log only warns.
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        board.settle(result.all_events)
        progress.update(task, completed=board.finished, description="done")
    success = bool(result.success) and all(s.status == "materialized" for s in summaries.values())
    return RunSummary(run_id, success, list(summaries.values()), time.monotonic() - started)


def landed_ranges(mesh: Mesh, domains: list[str] | None, selection: str | None,
                  defs: dg.Definitions | None = None) -> list[tuple[str, str]]:
    """The partitions a plain run builds: of the partitioned bronze tables among (or upstream of) the assets
    ``domains`` and ``selection`` pick, the partition keys of their landed files (the key read from each file's
    path, mesh_assets.contract.model.Source.partition_of) within their partitioning, as contiguous ranges
    ``(first, last)`` in order — of time partitions; a static or multi partition is a range of its own (its
    backfill policy: one run per partition), and a multi-partitioned table reading tables partitioned by its
    dimensions has the keys landed in each dimension it reads (every key of a dimension it reads no table of), and
    a table partitioned by another granularity than the partitioned tables it reads the partitions their landed
    ones map to (the weeks of the hours landed): time ranges first (a granularity's after those it reads), then
    static keys, then multi keys. Empty when no selected asset is partitioned or nothing
    has landed. ``defs``: the mesh's definitions of ``domains``, when already built.

    Raises:
        MeshError: as :func:`plan_run`.
    """
    defs, keys, _, _ = plan_run(mesh, domains, selection, partitions=None, unpartitioned="all", defs=defs)
    graph = defs.resolve_asset_graph()
    wanted, stack = set(), [k for k in keys if graph.get(k).partitions_def is not None]
    while stack:  # the partitioned assets and their partitioned ancestors
        key = stack.pop()
        if key not in wanted and graph.has(key) and graph.get(key).partitions_def is not None:
            wanted.add(key)
            stack.extend(graph.get(key).parent_keys)
    landed: list[tuple[dg.PartitionsDefinition, set[str]]] = []  # each partitions definition's landed keys

    def of(definition: dg.PartitionsDefinition) -> set[str]:
        found = next((keys_ for d, keys_ in landed if d == definition), None)
        if found is None:
            landed.append((definition, found := set()))
        return found

    for key in sorted(wanted, key=lambda k: k.path):
        domain, layer, name = key.path
        table = mesh.domain(domain).table(layer, name) if domain in mesh.domain_names else None
        if table is None or table.source is None or table.partitioning is None:
            continue
        definition = graph.get(key).partitions_def
        known = set(definition.get_partition_keys())  # type: ignore[union-attr]
        for path in landed_files(table, mesh.settings.landing_path):
            partition = table.source.partition_of(path, table.partitioning)
            if partition in known:
                of(definition).add(partition)  # type: ignore[arg-type]
    for key in graph.toposorted_asset_keys:  # a table partitioned by another granularity than the tables it reads
        definition = graph.get(key).partitions_def
        if key in wanted and isinstance(definition, dg.TimeWindowPartitionsDefinition):
            of(definition).update(_mapped_time_keys(graph, key, landed))
    for key in sorted(wanted, key=lambda k: k.path):  # a multi-partitioned table reading a table of one dimension
        definition = graph.get(key).partitions_def
        if not isinstance(definition, dg.MultiPartitionsDefinition):
            continue
        dimensions = {d.name: d.partitions_def for d in definition.partitions_defs}
        parents = [graph.get(p).partitions_def for p in graph.get(key).parent_keys if graph.has(p)]
        read = {name: set().union(*[of(single) for single in parents if single == dimension])
                for name, dimension in dimensions.items() if dimension in parents}  # each dimension's landed keys
        if read:  # the keys landed in every dimension read (a dimension no input has: all its keys)
            (first, firsts), (second, seconds) = [(n, read.get(n, set(d.get_partition_keys())))
                                                  for n, d in dimensions.items()]
            of(definition).update(dg.MultiPartitionKey({first: a, second: b}) for a in firsts for b in seconds)
    ranges: list[tuple[str, str]] = []
    order = _definitions_in_dependency_order(graph, wanted, [d for d, _ in landed])
    for definition, keys_ in sorted(landed, key=lambda d: (kind_order(d[0]), order.index(d[0]))):
        previous = None
        for index, partition in enumerate(definition.get_partition_keys()):
            if partition not in keys_:
                continue
            if ranges and previous == index - 1 and isinstance(definition, dg.TimeWindowPartitionsDefinition):
                ranges[-1] = (ranges[-1][0], partition)
            else:
                ranges.append((partition, partition))
            previous = index
    return ranges


def plan_run(mesh: Mesh, domains: list[str] | None, selection: str | None,
             partitions: tuple[str, str] | None = None, unpartitioned: str = "needed",
             defs: dg.Definitions | None = None
             ) -> tuple[dg.Definitions, list[dg.AssetKey], dict[str, list[str]], dict[str, str]]:
    """What a run of ``domains`` (default: all), ``selection`` (a Dagster asset selection string, or None for
    everything) and ``partitions`` materializes: the mesh's definitions, the asset keys in dependency order, each
    step's asset keys (``domain/layer/table``) among them, and the run's partition tags. A step building several
    assets (a bronze table and its ``__rejects``) is chosen whole.

    Partitioned assets are run only with ``partitions`` (first, last partition key; the same key for one
    partition): the partitioned assets with those partitions, over that range in the one run, and the
    unpartitioned assets they need and that were never published, or that read them
    (:func:`partition_selection`; docs/partitions.md). ``unpartitioned`` says which unpartitioned assets join
    them: ``needed`` (those), ``all`` (every one selected), ``first build`` (only the never-published ones the
    partitions read: a plain run's ranges before its last). Without ``partitions``, only the unpartitioned assets
    run (``all``: the partitioned ones are kept in the keys, for :func:`landed_ranges`). ``defs``: the mesh's
    definitions of ``domains``, when already built.

    Raises:
        MeshError: an unknown domain, a selection that does not parse or picks no asset, partitions no asset
            has, or contracts that do not load.
    """
    defs = defs or _definitions(mesh, domains)
    graph = defs.resolve_asset_graph()
    chosen = select_assets(defs, selection) if selection else None
    steps: dict[str, list[str]] = {}  # step key → asset keys it materializes
    for assets_def in defs.assets or []:
        for key in assets_def.keys:  # type: ignore[union-attr]
            steps.setdefault(assets_def.node_def.name, []).append(key.to_user_string())  # type: ignore[union-attr]
    if chosen is not None:  # whole steps: a step cannot build part of its assets
        chosen |= {k for keys in steps.values() if chosen & set(keys) for k in keys}
    keys = [k for k in graph.toposorted_asset_keys if graph.get(k).is_materializable
            and (not domains or k.path[0] in domains) and (chosen is None or k.to_user_string() in chosen)]
    if selection and not keys:
        within = f" of --domain {', '.join(domains)}" if domains else ""
        raise MeshError(f"--select {selection!r} picks no asset{within}; {_SELECTION_HELP}")
    tags: dict[str, str] = {}
    if partitions is None:
        keys = [k for k in keys if unpartitioned == "all" or graph.get(k).partitions_def is None]
    else:
        storage = PortStorage(root=mesh.settings.storage_url, catalog_uri=mesh.settings.catalog.uri)
        never = {k for k in keys
                 if graph.get(k).partitions_def is None and storage.port(tuple(k.path)).current() is None}
        chosen_keys = set(partition_selection(graph, keys, *partitions, never=never))
        if unpartitioned == "all":
            chosen_keys |= {k for k in keys if graph.get(k).partitions_def is None}
        elif unpartitioned == "first build":
            chosen_keys = {k for k in chosen_keys if graph.get(k).partitions_def is not None or k in never}
        steps_of = {k: set(a.keys) for a in defs.assets or [] for k in a.keys}  # type: ignore[union-attr]
        keys = [k for k in keys if steps_of.get(k, {k}) & chosen_keys]  # a step's assets go together (rejects)
        tags = ({PARTITION_TAG: partitions[0]} if partitions[0] == partitions[1] else
                {RANGE_START_TAG: partitions[0], RANGE_END_TAG: partitions[1]})
    names = {k.to_user_string() for k in keys}
    return defs, keys, {step: [k for k in assets if k in names] for step, assets in steps.items()}, tags


def _mapped_time_keys(graph, key: dg.AssetKey, landed: list[tuple[dg.PartitionsDefinition, set[str]]]
                      ) -> set[str]:
    """The partitions of the time-partitioned asset ``key`` that the landed partitions (``landed``: each
    partitions definition's keys) of its time-partitioned parents of another granularity map to (Dagster's
    ``TimeWindowPartitionMapping``: the hours landed → the weeks holding them)."""
    definition = graph.get(key).partitions_def
    found: set[str] = set()
    for parent in graph.get(key).parent_keys:
        theirs = graph.get(parent).partitions_def if graph.has(parent) else None
        keys_ = next((k for d, k in landed if d == theirs), None)
        if isinstance(theirs, dg.TimeWindowPartitionsDefinition) and theirs != definition and keys_:
            subset = dg.TimeWindowPartitionMapping().get_downstream_partitions_for_partitions(
                theirs.subset_with_partition_keys(sorted(keys_)), theirs, definition)
            found.update(subset.get_partition_keys())
    return found


def _definitions_in_dependency_order(graph, wanted: set[dg.AssetKey], definitions: list[dg.PartitionsDefinition]
                                     ) -> list[dg.PartitionsDefinition]:
    """``definitions`` ordered so that the runs of one come after those of the definitions whose assets (of
    ``wanted``) its assets read: the hours before the weeks built from them. Their order as given where the
    reads go both ways."""
    after: dict[int, set[int]] = {i: set() for i in range(len(definitions))}
    for key in wanted:
        mine = graph.get(key).partitions_def
        for parent in graph.get(key).parent_keys:
            theirs = graph.get(parent).partitions_def if parent in wanted else None
            if mine in definitions and theirs in definitions and theirs != mine:
                after[definitions.index(mine)].add(definitions.index(theirs))
    try:
        return [definitions[i] for i in graphlib.TopologicalSorter(after).static_order()]
    except graphlib.CycleError:
        return definitions


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
                if first != last and isinstance(partitions_def, dg.MultiPartitionsDefinition):
                    raise MeshError(f"--from {first} --to {last}: {key.to_user_string()} is partitioned by time and "
                                    "a static set, built one partition per run; give --partition, once per "
                                    "partition (docs/partitions.md)")
                chosen.add(key)
        elif any(parent in chosen for parent in node.parent_keys):
            chosen.add(key)
    for key in reversed(keys):  # the first build of what the chosen partitions read
        node = graph.get(key)
        if key in never and node.partitions_def is None and any(c in chosen for c in node.child_keys):
            chosen.add(key)
    if not any(graph.get(k).partitions_def is not None for k in chosen):
        raise MeshError(f"no selected asset has the partition(s) {first}"
                        f"{'' if first == last else ' to ' + last}: a month's key is YYYY-MM, a day's (and a "
                        "week's, its first day) YYYY-MM-DD, an hour's YYYY-MM-DDTHH, within each table's "
                        "partitioning start and end; a static partition's its value (EUROPE); "
                        "a time and static partition's both, joined by | in the order of the column names "
                        "(1992-01|EUROPE) (docs/partitions.md)")
    return [k for k in keys if k in chosen]


_SELECTION_HELP = ("write a Dagster asset selection over keys domain/layer/table, e.g. "
                   "'key:\"shop/gold/order_totals\"', '+key:\"shop/gold/*\"' (with its upstream), 'group:shop', "
                   "'tag:mesh/layer=gold', 'owner:\"team:shop-team\"' (docs/operations.md)")


def select_assets(defs: dg.Definitions, selection: str) -> set[str]:
    """The asset keys (``domain/layer/table``) of ``defs`` that the Dagster asset selection string ``selection``
    picks (``dg.AssetSelection.from_string``).

    Raises:
        MeshError: ``selection`` does not parse (the message gives the syntax with examples).
    """
    with warnings.catch_warnings():  # the selection functions' own beta parameters, not the user's concern
        warnings.simplefilter("ignore", dg.BetaWarning)
        try:
            picked = dg.AssetSelection.from_string(selection).resolve(defs.resolve_asset_graph())
        except Exception as exc:  # Dagster's parse errors have no public class
            raise MeshError(f"--select {selection!r} is not an asset selection ({str(exc).splitlines()[0]}); "
                            f"{_SELECTION_HELP}") from None
    return {k.to_user_string() for k in picked}


def abandoned_runs(instance: DagsterInstance) -> list[dg.DagsterRun]:
    """The ``mesh run`` runs of this host that the instance still shows in progress although their process is
    gone: killed with SIGKILL, by the out-of-memory killer, or the machine restarted (SIGINT and SIGTERM let
    Dagster end the run itself). Dagster 1.13 has no public instance method to mark a run failed, so they are
    only reported (docs/operations.md, "Recovery from a crash")."""
    host = socket.gethostname()
    running = dg.RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED], tags={HOST_TAG: host})
    abandoned = []
    for record in instance.get_run_records(running):
        run = record.dagster_run
        pid, _, started = run.tags.get(PROCESS_TAG, "").partition(":")
        try:
            alive = abs(psutil.Process(int(pid)).create_time() - float(started)) < 1
        except (ValueError, psutil.Error):
            alive = False
        if not alive:
            abandoned.append(run)
    return abandoned


def abandoned_message(run: dg.DagsterRun) -> str:
    """What to do about ``run``, an abandoned run (:func:`abandoned_runs`)."""
    pid = run.tags.get(PROCESS_TAG, "").partition(":")[0] or "?"
    return (f"run {run.run_id} is still shown in progress, but its `mesh run` process (pid {pid} on "
            f"{run.tags.get(HOST_TAG, '?')}) is gone; its ports are safe. Until it ends, automation does not start "
            "its assets again: terminate it in the Dagster UI (Runs, Terminate, force termination), or let the "
            "daemon's run monitoring fail it (dagster.yaml run_monitoring.max_runtime_seconds)")


class _Board:
    """Folds the steps' reports (mesh_assets.orchestration.progress) into each asset's summary; ``steps`` maps
    each step key to the asset keys it materializes. ``on_change(running assets, finished count)`` is called at
    each report."""

    def __init__(self, summaries: dict[str, AssetSummary], steps: dict[str, list[str]]):
        self.summaries, self.steps = summaries, steps
        self.starts: dict[str, float] = {}
        self.interrupted = False
        self.on_change: Callable[[list[str], int], None] = lambda running, finished: None

    @property
    def finished(self) -> int:
        return sum(s.status in ("materialized", "failed") for s in self.summaries.values())

    def started(self, step: str) -> None:
        self.starts[step] = time.monotonic()
        for key in self.steps.get(step, []):
            summary = self.summaries[key]
            summary.status, summary.rows, summary.checks_passed = "running", None, 0
            summary.warnings, summary.blocking = [], []
        self._changed()

    def ended(self, step: str, end: StepEnd) -> None:
        self.interrupted = self.interrupted or end.interrupted
        seconds = time.monotonic() - self.starts[step] if step in self.starts else None
        for key in self.steps.get(step, []):
            summary = self.summaries[key]
            summary.status, summary.seconds = "materialized" if end.published else "failed", seconds
            summary.rows = end.rows.get(key)
        summary = self.summaries.get(end.asset)
        for outcome in end.outcomes if summary is not None else []:
            if outcome.passed:
                summary.checks_passed += 1
            else:
                (summary.blocking if outcome.blocking else summary.warnings).append(_failed_check(outcome))
        self._changed()

    def settle(self, events: list[dg.DagsterEvent]) -> None:
        """Mark failed the assets of every step Dagster failed outside its body (a resource that could not start,
        an extra not installed), which reported nothing."""
        for event in events:
            if event.is_step_failure:
                for key in self.steps.get(event.step_key or "", []):
                    self.summaries[key].status = "failed"

    def _changed(self) -> None:
        self.on_change([s.key for s in self.summaries.values() if s.status == "running"], self.finished)


def _failed_check(outcome: CheckOutcome) -> str:
    """A failed check as the summary names it: ``name (N rows)``, ``name (observed V)`` or ``name``."""
    rows, observed = outcome.metadata.get("failing_rows"), outcome.metadata.get("observed_value")
    return outcome.name + (f" ({rows:,} row{'' if rows == 1 else 's'})" if isinstance(rows, int)
                           and not isinstance(rows, bool) else f" (observed {observed})" if observed is not None
                           else "")


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
